"""state/events.jsonl: the append-only log of everything that happened.

One JSON object per line, written with a single append so concurrent writers
never tear a line. ``cmux events`` reads it; tests assert on it.

Written on ``tools/mailbox send``: ``record`` encodes with cmux/fastjson.py
(``json`` costs a new process ~15 ms), the same text json.dumps gives.
"""

from __future__ import annotations

import time

from cmux import fastjson
from cmux.fsutil import append_line

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

    from cmux.paths import DataRoot


def now_iso() -> str:
    """RFC 3339, UTC, milliseconds (without importing datetime: hot path)."""
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


def record(data: DataRoot, event: str, agent: str | None = None, **fields: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"ts": now_iso(), "event": event}
    if agent is not None:
        entry["agent"] = agent
    entry.update({k: v for k, v in fields.items() if v is not None})
    append_line(data.events_path, fastjson.dumps(entry, default=str))
    return entry


def record_many(data: DataRoot, entries: list[tuple[str, str | None, dict[str, Any]]]) -> None:
    """:func:`record` for several events (event, agent, fields) in one append:
    one write(2) for a batch (the node daemon notes each message of a publish
    or a fetch), the lines in order, each as :func:`record` would write it."""
    if not entries:
        return
    ts = now_iso()
    lines = []
    for event, agent, fields in entries:
        entry: dict[str, Any] = {"ts": ts, "event": event}
        if agent is not None:
            entry["agent"] = agent
        entry.update({k: v for k, v in fields.items() if v is not None})
        lines.append(fastjson.dumps(entry, default=str))
    append_line(data.events_path, "\n".join(lines))


def read(data: DataRoot, *, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """Events from byte ``offset``; returns them and the offset to read on from.

    A line being written at the moment (no newline yet) is left for next time;
    a malformed line is skipped rather than stopping the reader.
    """
    import json

    path = data.events_path
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            chunk = fh.read()
    except FileNotFoundError:
        return [], offset
    out: list[dict[str, Any]] = []
    end = chunk.rfind(b"\n")
    if end < 0:
        return [], offset
    for raw in chunk[: end + 1].splitlines():
        try:
            out.append(json.loads(raw))
        except ValueError:
            continue
    return out, offset + end + 1


def follow(data: DataRoot, *, offset: int = 0, poll: float = 0.2) -> Iterator[dict[str, Any]]:
    """Yield events appended after byte ``offset`` (``cmux events --follow``)."""
    while True:
        batch, offset = read(data, offset=offset)
        yield from batch
        if not batch:
            time.sleep(poll)
