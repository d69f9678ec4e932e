"""The message: one JSON file, schema v1 (see mailbox/README.md)."""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from dataclasses import asdict, dataclass, field
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
    return f"{ns:016x}-{os.getpid():x}-{secrets.token_hex(3)}"


class MalformedMessage(ValueError):
    pass


@dataclass
class Message:
    to: str
    body: str
    sender: str
    kind: str = "message"
    subject: str = ""
    depth: int = 0
    reply_to: str | None = None
    id: str = field(default_factory=new_id)
    ts: str = field(default_factory=now_iso)
    v: int = 1

    def to_json(self) -> str:
        d = asdict(self)
        d["from"] = d.pop("sender")
        return json.dumps(d, ensure_ascii=False)

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
