"""The journal on every host: what the node daemon publishes to CMUX_JOURNAL
and what it applies from it, as pure functions, beside the two small ledgers
that make both exactly-once. No NATS here (cmux/cluster/node.py does the I/O).

An entry's id is :func:`cmux.journal.store.entry_id`, a hash of its content,
so every host computes the same id for the same entry. The node keeps, under
``state/cluster/journal/``:

- ``published``: ids never to publish from here: this host's entries after
  their PubAck, and the entries it applied from other hosts (as they read
  back from its own files);
- ``applied``: the ids of other hosts' entries already in this host's files.

The rules:

- Publish (:func:`to_publish`) every entry of the daily files whose id is not
  in ``published``, oldest first; its id goes into ``published`` only after
  JetStream's PubAck (killed before, the next node publishes it again with the
  same ``Nats-Msg-Id``: JetStream drops the repeat within its duplicate
  window, every receiver's ``applied`` after it).
- Apply (:func:`decide_apply`) an entry of another host unless its id is in
  ``applied`` (an entry written here coming back is skipped by its host; one
  whose very block is already in the day's file is not appended again).
  The entry's id as it reads back here goes into ``published`` before the
  append (so it is never sent back as this host's), the origin id
  into ``applied`` after it, and only then is the delivery acked. Killed in
  between, the delivery comes again and the append finds its block already in
  the file (:func:`cmux.journal.store.append_entry`): one copy.
- An edit: an entry edited by hand here has a new content id, so it is
  published again, with ``nth`` (store.occurrences); a receiver holding an
  entry of that heading (store.heading_key) replaces it with the new
  version in place (:func:`cmux.journal.store.put_entry`) rather than
  appending it beside the old.
- A deletion (:func:`deletions`, :func:`tombstone`): an entry gone by hand
  from a settled daily file travels as a tombstone naming its content id;
  a receiver removes that exact version (:func:`cmux.journal.store.remove_entry`).
- A fact of MEMORY.md (:func:`facts_to_publish`): each line `journal
  remember` stored, once, id ``mem-<hash>``; a receiver adds it to its own
  (:func:`cmux.journal.store.remember_stored`), ``published`` first.
- Compaction (:func:`stale`, :meth:`Ledger.drop`): the ids of entries no
  longer in the files are forgotten, so the ledgers follow the files' size.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cmux.errors import StorageError, UsageError
from cmux.journal import store
from cmux.journal.store import Entry
from cmux.paths import DataRoot

_FIELDS = ("date", "time", "agent", "title", "tags", "body")


class Ledger:
    """A set of ids kept in an append-only file, one id a line, fsynced.

    A torn last line (a crash mid-write) is ignored. Thread-safe.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self.ids: set[str] = set()
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            text = ""
        lines = text.split("\n")
        self.ids = {line for line in lines[:-1] if line}  # the last is '' or torn

    def __contains__(self, entry_id: object) -> bool:
        return entry_id in self.ids

    def add(self, ids: Iterable[str]) -> None:
        with self._lock:
            new = [i for i in dict.fromkeys(ids) if i not in self.ids]
            if not new:
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":  # a torn last line: cut it
                    os.ftruncate(fd, os.pread(fd, size, 0).rfind(b"\n") + 1)
                os.write(fd, "".join(f"{i}\n" for i in new).encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            self.ids.update(new)

    def snapshot(self) -> set[str]:
        with self._lock:
            return set(self.ids)

    def drop(self, ids: set[str]) -> int:
        """Forget ``ids``: the file rewritten without them (atomically,
        fsynced); how many went."""
        from cmux.fsutil import atomic_write

        with self._lock:
            gone = self.ids & ids
            if not gone:
                return 0
            keep = self.ids - gone
            atomic_write(self.path, "".join(f"{i}\n" for i in sorted(keep)), durable=True)
            self.ids = keep
            return len(gone)


def stale(ledger: set[str], entries: Iterable[Entry], facts: Iterable[str] = ()) -> set[str]:
    """The ids a ledger may forget: those of no entry in this host's files
    (nor of a fact in its MEMORY.md, ``facts``: its lines).

    ``ledger`` must be read before ``entries`` (so an id noted while the
    files were read is never among them). What goes is the id of an entry
    edited or deleted by hand here, or replaced by another host's edit, and
    of one applied whose text reads back otherwise here: each can only come
    back as a repeat no one sends (a delivery is acked once applied, and a
    block already in its file is not appended again). So a ledger holds
    about as many ids as the files hold entries, whatever the time."""
    return ledger - {store.entry_id(e) for e in entries} - {fact_id(f) for f in facts}


def ledgers(data: DataRoot) -> tuple[Ledger, Ledger]:
    """(published, applied) of this data root."""
    base = data.state_dir / "cluster" / "journal"
    return Ledger(base / "published"), Ledger(base / "applied")


# -- publishing -------------------------------------------------------------------------


@dataclass(frozen=True)
class Outgoing:
    id: str
    payload: bytes


def payload(entry: Entry, host: str, nth: int = 0) -> bytes:
    """What travels: the entry's fields, its id, the host it was written on
    (or last edited on), and ``nth``: which of its day's entries with its
    heading it is (store.occurrences), so an edit replaces that one."""
    d = {k: getattr(entry, k) for k in _FIELDS}
    return json.dumps({"id": store.entry_id(entry), "host": host, "entry": d, "nth": nth}).encode()


def to_publish(entries: Iterable[Entry], published: Ledger | set[str], host: str) -> list[Outgoing]:
    """The entries not published yet (nor applied from elsewhere), in the
    order given (the files' order: oldest first), each id once. An entry
    edited by hand is one of these: its content, so its id, is new."""
    entries = list(entries)
    out: dict[str, Outgoing] = {}
    for e, nth in zip(entries, store.occurrences(entries), strict=True):
        i = store.entry_id(e)
        if i not in published and i not in out:
            out[i] = Outgoing(i, payload(e, host, nth))
    return list(out.values())


# -- applying ---------------------------------------------------------------------------

Decision = Literal["apply", "delete", "remember", "own", "have", "bad"]

FACT = "mem-"  # the Nats-Msg-Id of a MEMORY.md fact: this, then a hash of its line


def fact_id(stored: str) -> str:
    return FACT + hashlib.sha256(stored.encode("utf-8")).hexdigest()[:32]


def facts_to_publish(
    stored: Iterable[str], published: Ledger | set[str], host: str
) -> list[Outgoing]:
    """The facts of this host's MEMORY.md not published yet (nor had from
    elsewhere): only lines as `journal remember` stores them (``fact (who,
    day)``); prose and facts written otherwise by hand stay on their host."""
    out: dict[str, Outgoing] = {}
    for line in stored:
        if not store.STORED_FACT.match(line):
            continue
        i = fact_id(line)
        if i not in published and i not in out:
            out[i] = Outgoing(i, json.dumps({"fact": line, "host": host}).encode())
    return list(out.values())


DELETED = "del-"  # the Nats-Msg-Id of a deletion: this, then the id of the version deleted


def tombstone(entry: Entry, host: str) -> Outgoing:
    """What travels when an entry is deleted by hand: the day and the content
    id of the version deleted (every host that deletes it sends the same
    message id, so JetStream drops the repeats)."""
    eid = store.entry_id(entry)
    raw = json.dumps({"deleted": eid, "date": entry.date, "host": host}).encode()
    return Outgoing(DELETED + eid, raw)


def deletions(before: Iterable[Entry], after: list[Entry]) -> list[Entry]:
    """The entries of ``before`` (what reads of a daily file showed) gone
    from ``after`` (a settled read of it now): neither their content is
    there nor, for an entry with a heading key, an entry of that heading
    (that is an edit in place, which travels as the new version)."""
    ids = {store.entry_id(e) for e in after}
    keys = {k for k in map(store.heading_key, after) if k}
    out = []
    for e in before:
        k = store.heading_key(e)
        if store.entry_id(e) not in ids and not (k and k in keys):
            out.append(e)
    return out


@dataclass(frozen=True)
class Incoming:
    decision: Decision
    id: str = ""
    host: str = ""
    entry: Entry | None = None
    reason: str = ""
    nth: int = 0
    day: str = ""  # of a deletion
    fact: str = ""  # a MEMORY.md line


def decide_apply(raw: bytes, msg_id: str | None, me: str, applied: Ledger | set[str]) -> Incoming:
    """What to do with one delivery of CMUX_JOURNAL.

    ``own``: written on this host (skip); ``have``: applied here before
    (skip; not ``published``, which holds the id before the append is done);
    ``bad``: not an entry, or its id is not its content's (skip, logged);
    ``apply``: another host's entry this host does not hold yet.
    Every decision but ``apply`` is acked at once.
    """
    try:
        d = json.loads(raw)
        if isinstance(d, dict) and "deleted" in d:
            return _decide_delete(d, msg_id, me)
        if isinstance(d, dict) and "fact" in d:
            return _decide_fact(d, msg_id, me, applied)
        host, e = d["host"], d["entry"]
        entry = Entry(**{k: e[k] for k in _FIELDS})
        texts = [host] + [getattr(entry, k) for k in _FIELDS if k != "tags"]
        if not all(isinstance(t, str) for t in texts):
            raise TypeError("a field is not text")
        if not (isinstance(entry.tags, list) and all(isinstance(t, str) for t in entry.tags)):
            raise TypeError("tags are not a list of text")
        nth = d.get("nth", 0)  # absent from a node before edits travelled
        if not isinstance(nth, int) or isinstance(nth, bool) or not 0 <= nth < 100_000:
            raise TypeError(f"nth {nth!r} is not a small whole number")
    except (ValueError, KeyError, TypeError) as exc:
        return Incoming("bad", msg_id or "", reason=f"not a journal entry: {exc}")
    eid = store.entry_id(entry)
    if msg_id != eid or d.get("id") != eid:
        return Incoming("bad", eid, host, reason=f"its id {msg_id!r} is not its content's {eid}")
    if host == me:
        return Incoming("own", eid, host, entry, nth=nth)
    if eid in applied:
        return Incoming("have", eid, host, entry, nth=nth)
    return Incoming("apply", eid, host, entry, nth=nth)


def _decide_fact(
    d: dict[str, object], msg_id: str | None, me: str, applied: Ledger | set[str]
) -> Incoming:
    line, host = d.get("fact"), d.get("host")
    if not (isinstance(line, str) and isinstance(host, str)):
        return Incoming("bad", msg_id or "", reason="not a fact: a field is not text")
    if msg_id != fact_id(line) or not store.STORED_FACT.match(line):
        return Incoming("bad", msg_id or "", host, reason=f"not a fact as stored: {line[:80]!r}")
    if host == me:
        return Incoming("own", msg_id, host, fact=line)
    return Incoming("have" if msg_id in applied else "remember", msg_id, host, fact=line)


def _decide_delete(d: dict[str, object], msg_id: str | None, me: str) -> Incoming:
    eid, day, host = d.get("deleted"), d.get("date"), d.get("host")
    if not (isinstance(eid, str) and isinstance(day, str) and isinstance(host, str)):
        return Incoming("bad", msg_id or "", reason="not a deletion: a field is not text")
    if msg_id != DELETED + eid or not store.DAILY_NAME.match(f"{day}.md"):
        return Incoming("bad", eid, host, reason=f"a deletion of {eid} on {day!r} as {msg_id!r}")
    return Incoming("own" if host == me else "delete", eid, host, day=day)


def apply(
    data: DataRoot, items: list[Incoming], published: Ledger, applied: Ledger
) -> tuple[list[Incoming], Exception | None]:
    """Carry out a batch of ``apply`` decisions, in the order the module's
    docstring gives, one fsync of each ledger for the whole batch: (those
    now in this host's files, the error that stopped the rest, if any).
    The index follows on the next search."""
    todo = list({(i.decision, i.id): i for i in items}.values())
    todo = [
        i
        for i in todo
        if i.decision in ("delete", "remember") or (i.entry and i.decision == "apply")
    ]
    published.add(store.entry_id(store.as_written(i.entry)) for i in todo if i.entry)
    published.add(i.id for i in todo if i.decision == "remember")
    done: list[Incoming] = []
    error: Exception | None = None
    for item in todo:  # in stream order: a version, then its deletion, or again
        try:
            if item.decision == "delete":
                store.remove_entry(data, item.day, item.id)
            elif item.decision == "remember":
                try:
                    store.remember_stored(data, item.fact)
                except UsageError:
                    pass  # over budget here with no fact to drop: it never fits, skip it
            else:
                assert item.entry is not None
                store.put_entry(data, item.entry, item.nth)
        except (OSError, StorageError, UsageError) as exc:
            error = exc
            break
        done.append(item)
    applied.add(i.id for i in done if i.decision in ("apply", "remember"))
    return done, error
