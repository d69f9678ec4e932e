"""The merge queue on disk: ``state/merge/queue.json``.

One JSON file, read and written whole, atomically and durably, under
``state/merge/.queue.lock`` (:func:`editing`), shared by the merger daemon
and the commands that queue, cancel and list. A state changes only through
:func:`Entry.move`, which stamps the time and keeps the history.

Invariants:

- An agent has at most one *active* entry (queued, testing, waiting); asking
  again returns it (with the newer head while it is only queued).
- Entries are decided in the order they were queued (``n``); a decided entry
  (landed, conflict, failed, cancelled) never changes state again.
- ``candidate`` is set before trunk is moved to it, so a merger killed between
  the two finds out on restart which one happened (:mod:`cmux.merge.merger`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from cmux.errors import CmuxError
from cmux.fsutil import locked, read_json, write_json
from cmux.paths import DataRoot

State = Literal["queued", "testing", "waiting", "landed", "conflict", "failed", "cancelled"]
ACTIVE: tuple[State, ...] = ("queued", "testing", "waiting")
REFUSED: tuple[State, ...] = ("conflict", "failed")
DECIDED: tuple[State, ...] = ("landed", "conflict", "failed", "cancelled")
KEPT = 200  # decided entries kept in the file (the newest)


class QueueError(CmuxError):
    """A merge request that cannot be queued (or cancelled) as asked."""

    exit_code = 2


@dataclass
class Entry:
    n: int
    agent: str
    branch: str
    head: str
    trunk: str
    state: State = "queued"
    since: float = field(default_factory=time.time)
    queued_at: float = field(default_factory=time.time)
    by: str = "human"
    reason: str = ""
    conflicts: list[str] = field(default_factory=list)
    check: str | None = None
    output: str | None = None  # the failing check's log, under the data root
    base: str | None = None  # trunk's tip it was last tested on
    candidate: str | None = None  # the tested commit trunk is being moved to
    landed: str | None = None
    kept: str | None = None  # refs/cmux/merged/<agent>/<n>: the original head
    runs: int = 0  # check runs this entry took part in
    tests: int = 0  # times it was built and tested
    notified: bool = False
    history: list[list[Any]] = field(default_factory=list)  # [state, time, reason]

    def move(self, state: State, reason: str = "", now: float | None = None) -> None:
        """Change state (stamped, kept in ``history``); a decided entry stays so."""
        if self.state in DECIDED:
            raise QueueError(f"merge #{self.n} of {self.agent} is {self.state} already")
        self.state = state
        self.since = time.time() if now is None else now
        self.reason = reason
        self.history = [*self.history, [state, round(self.since, 3), reason]][-20:]

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    def to_dict(self) -> dict[str, Any]:
        # Not dataclasses.asdict: its deep copy was ~20 ms of every write of
        # a full queue file (KEPT entries), and a queue edit is on every step.
        d = dict(self.__dict__)
        d["conflicts"] = list(self.conflicts)
        d["history"] = [list(h) for h in self.history]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Entry:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass
class Queue:
    entries: list[Entry] = field(default_factory=list)
    next_n: int = 1

    def active(self) -> list[Entry]:
        """Active entries in queue order."""
        return sorted((e for e in self.entries if e.active), key=lambda e: e.n)

    def queued(self) -> list[Entry]:
        return [e for e in self.active() if e.state == "queued"]

    def of(self, agent: str) -> Entry | None:
        """``agent``'s active entry, else its newest one."""
        mine = [e for e in self.entries if e.agent == agent]
        live = [e for e in mine if e.active]
        pick = live or mine
        return max(pick, key=lambda e: e.n) if pick else None

    def get(self, n: int) -> Entry | None:
        return next((e for e in self.entries if e.n == n), None)

    def position(self, entry: Entry) -> int | None:
        """1 for the entry being tested or first in line; None once decided."""
        line = self.active()
        return line.index(entry) + 1 if entry in line else None

    def add(self, *, agent: str, branch: str, head: str, trunk: str, by: str) -> Entry:
        e = Entry(n=self.next_n, agent=agent, branch=branch, head=head, trunk=trunk, by=by)
        e.history = [["queued", round(e.since, 3), ""]]
        self.next_n += 1
        self.entries.append(e)
        self._trim()
        return e

    def _trim(self) -> None:
        decided = sorted((e for e in self.entries if not e.active), key=lambda e: e.n)
        drop = {e.n for e in decided[:-KEPT]} if len(decided) > KEPT else set()
        self.entries = [e for e in self.entries if e.n not in drop]

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": 1,
            "next_n": self.next_n,
            "entries": [e.to_dict() for e in sorted(self.entries, key=lambda e: e.n)],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Queue:
        entries = [Entry.from_dict(e) for e in d.get("entries", []) if isinstance(e, dict)]
        nxt = max([int(d.get("next_n", 1)), *(e.n + 1 for e in entries)])
        return cls(entries=entries, next_n=nxt)


def queue_dir(data: DataRoot) -> Path:
    return data.state_dir / "merge"


def queue_file(data: DataRoot) -> Path:
    return queue_dir(data) / "queue.json"


def load(data: DataRoot) -> Queue:
    """The queue as it is on disk (an empty one when there is none).

    An unreadable file is an error, never an empty queue: forgetting it
    would drop what people asked for."""
    try:
        raw = read_json(queue_file(data))
    except FileNotFoundError:
        return Queue()
    except (OSError, ValueError) as exc:
        raise QueueError(
            f"the merge queue {queue_file(data)} cannot be read: {exc}",
            "look at the file; move it aside to start an empty queue",
        ) from None
    if not isinstance(raw, dict):
        raise QueueError(f"the merge queue {queue_file(data)} is not a JSON object")
    return Queue.from_dict(raw)


@contextlib.contextmanager
def editing(data: DataRoot) -> Iterator[Queue]:
    """Read, change and write the queue under its lock (durably: a landed
    entry must not come back as queued after a power cut)."""
    with locked(queue_dir(data) / ".queue.lock"):
        q = load(data)
        yield q
        save(data, q)


def save(data: DataRoot, q: Queue) -> None:
    """Write the queue now, durably: inside :func:`editing` only (the lock)."""
    write_json(queue_file(data), q.to_dict(), durable=True)


def agent_states(data: DataRoot) -> dict[str, str]:
    """Each agent's queue state (its newest entry), for `cmux status`:
    ``queued #2``, ``testing``, ``landed`` ...; {} without a queue."""
    try:
        queue = load(data)
    except QueueError:
        return {}
    out: dict[str, str] = {}
    for e in sorted(queue.entries, key=lambda e: e.n):
        pos = queue.position(e)
        out[e.agent] = f"{e.state} #{pos}" if e.state == "queued" and pos else e.state
    return out
