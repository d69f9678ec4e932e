"""The message: one JSON file, schema v1 (see mailbox/README.md)."""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

from cmux.events import now_iso

KINDS = ("message", "task", "done", "blocked", "status", "notice")
_lock = threading.Lock()
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
    pass


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
        return json.dumps(self.as_dict(), ensure_ascii=False)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Message) and other.as_dict() == self.as_dict()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Message(id={self.id!r}, from={self.sender!r}, to={self.to!r}, kind={self.kind!r})"

    @classmethod
    def from_json(cls, raw: bytes | str) -> Message:
        try:
            d: Any = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise MalformedMessage(f"not JSON: {exc}") from None
        if not isinstance(d, dict):
            raise MalformedMessage("not a JSON object")
        if d.get("v") != 1:
            raise MalformedMessage(f"unsupported version {d.get('v')!r}")
        for key in ("id", "to", "from", "body"):
            if not isinstance(d.get(key), str):
                raise MalformedMessage(f"field {key!r} missing or not a string")
        kind = d.get("kind", "message")
        if kind not in KINDS:
            raise MalformedMessage(f"unknown kind {kind!r}")
        depth = d.get("depth", 0)
        if not isinstance(depth, int) or depth < 0:
            raise MalformedMessage("depth must be a whole number >= 0")
        return cls(
            to=d["to"],
            body=d["body"],
            sender=d["from"],
            kind=kind,
            subject=str(d.get("subject") or ""),
            depth=depth,
            reply_to=d.get("reply_to"),
            id=d["id"],
            ts=str(d.get("ts") or ""),
        )
