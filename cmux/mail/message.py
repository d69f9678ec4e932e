"""The message: one JSON file, schema v1 (see mailbox/README.md).

On the send path: no ``re``, ``typing`` or ``json`` (cmux/fastjson.py), see
docs/PERFORMANCE.md.
"""

from __future__ import annotations

import os
import time
from _thread import allocate_lock  # threading.Lock itself; `threading` costs ~1 ms

from cmux import fastjson
from cmux.events import now_iso
from cmux.paths import valid_name  # the rule for ``from`` and ``to`` (and a mailbox's name)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

KINDS = ("message", "task", "done", "blocked", "status", "notice")
_ALNUM = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
# Message ids: what new_id() makes, or any id of a safe charset: a letter or
# digit, then up to 127 letters, digits, '.', '_' or '-'. An id names files
# (<id>.json, large/<id>.txt), so no '/', no ':' (the Maildir flags), no
# control characters, and it cannot start with '.' nor hold '..'.
_ID_CHARS = _ALNUM | frozenset("._-")
ID_MAX = 128
# The time of sending, RFC 3339 (printed as it is by `mailbox read`, `cmux
# inbox`): up to 64 letters, digits, ':', '.', '+', ' ' or '-'.
_TS_CHARS = _ALNUM | frozenset(":.+ -")
TS_MAX = 64
_lock = allocate_lock()
_last_ns = 0


def new_id() -> str:
    """Sortable unique id: 16 hex digits of nanoseconds, then pid and randomness.

    Ids sort by creation time; within one process they strictly increase.
    """
    global _last_ns
    with _lock:
        ns = max(time.time_ns(), _last_ns + 1)
        _last_ns = ns
    return f"{ns:016x}-{os.getpid():x}-{os.urandom(3).hex()}"


class MalformedMessage(ValueError):
    """A message file that breaks the schema (mailbox/README.md); the text says how."""


def valid_id(msg_id: object) -> bool:
    """True for an id that may name a file (see _ID_CHARS), with no '..' anywhere."""
    return (
        isinstance(msg_id, str)
        and 0 < len(msg_id) <= ID_MAX
        and msg_id[0] in _ALNUM
        and _ID_CHARS.issuperset(msg_id)
        and ".." not in msg_id
    )


def valid_ts(ts: str) -> bool:
    """True for a time of sending as the schema allows it (see _TS_CHARS)."""
    return len(ts) <= TS_MAX and _TS_CHARS.issuperset(ts)


def check_paths(msg: Message) -> None:
    """Raise MalformedMessage unless ``to`` and ``id`` may name files: call
    before building any path from a message."""
    if not valid_name(msg.to) or not valid_id(msg.id):
        raise MalformedMessage(f"message {msg.id[:80]!r} to {msg.to[:40]!r}: invalid id or name")


def _utf8(key: str, value: str) -> None:
    """A JSON string may hold a lone surrogate (\\ud800) that no UTF-8 file,
    pane or terminal can carry: refuse it on load."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise MalformedMessage(f"field {key!r} holds an invalid surrogate") from None


class Message:
    """One message (schema v1). A plain class: see config.Profile."""

    __slots__ = ("body", "depth", "id", "kind", "reply_to", "sender", "subject", "to", "ts", "v")

    def __init__(
        self,
        to: str,
        body: str,
        sender: str,
        kind: str = "message",
        subject: str = "",
        depth: int = 0,
        reply_to: str | None = None,
        id: str | None = None,
        ts: str | None = None,
        v: int = 1,
    ) -> None:
        self.to = to
        self.body = body
        self.sender = sender
        self.kind = kind
        self.subject = subject
        self.depth = depth
        self.reply_to = reply_to
        self.id = id or new_id()
        self.ts = ts or now_iso()
        self.v = v

    def as_dict(self) -> dict[str, Any]:
        """The JSON object as stored (``sender`` is written as ``from``)."""
        return {
            "v": self.v,
            "id": self.id,
            "ts": self.ts,
            "from": self.sender,
            "to": self.to,
            "kind": self.kind,
            "subject": self.subject,
            "body": self.body,
            "depth": self.depth,
            "reply_to": self.reply_to,
        }

    def to_json(self) -> str:
        return fastjson.dumps(self.as_dict())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Message) and other.as_dict() == self.as_dict()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Message(id={self.id!r}, from={self.sender!r}, to={self.to!r}, kind={self.kind!r})"

    @classmethod
    def from_json(cls, raw: bytes | str) -> Message:
        try:
            d: Any = fastjson.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise MalformedMessage(f"not JSON: {exc}") from None
        if not isinstance(d, dict):
            raise MalformedMessage("not a JSON object")
        if d.get("v") != 1:
            raise MalformedMessage(f"unsupported version {d.get('v')!r}")
        for key in ("id", "to", "from", "body"):
            if not isinstance(d.get(key), str):
                raise MalformedMessage(f"field {key!r} missing or not a string")
        if not valid_id(d["id"]):
            raise MalformedMessage(f"id {d['id'][:80]!r} is not a valid message id")
        for key in ("to", "from"):
            if not valid_name(d[key]):
                raise MalformedMessage(f"{key!r} {d[key][:80]!r} is not a valid agent name")
        kind = d.get("kind", "message")
        if kind not in KINDS:
            raise MalformedMessage(f"unknown kind {kind!r}")
        depth = d.get("depth", 0)
        if not isinstance(depth, int) or isinstance(depth, bool) or depth < 0:
            raise MalformedMessage("depth must be a whole number >= 0")
        reply_to = d.get("reply_to")
        if reply_to is not None and not valid_id(reply_to):
            raise MalformedMessage("reply_to must be null or a valid message id")
        subject, ts = d.get("subject") or "", d.get("ts") or ""
        if not isinstance(subject, str) or not isinstance(ts, str):
            raise MalformedMessage("subject and ts must be strings")
        if not valid_ts(ts):
            raise MalformedMessage(f"ts {ts[:80]!r} is not an RFC 3339 time")
        _utf8("body", d["body"])
        _utf8("subject", subject)
        _utf8("ts", ts)
        return cls(
            to=d["to"],
            body=d["body"],
            sender=d["from"],
            kind=kind,
            subject=subject,
            depth=depth,
            reply_to=reply_to,
            id=d["id"],
            ts=ts,
        )
