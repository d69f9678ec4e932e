"""The node daemon's two journal loops: this host's entries out to
CMUX_JOURNAL, the other hosts' in to this host's daily files. The rules and
the ledgers that make both exactly-once are in cmux/cluster/journal.py; this
module only reads the files, talks to NATS (through the node's connection)
and acts in the order those rules give.

- outgoing: woken by inotify on journal/ (or every ``heartbeat`` s), publishes
  every entry not in the ``published`` ledger with ``Nats-Msg-Id`` = its
  content id, and notes each in the ledger only after its PubAck.
  Then, once a daily file has settled, a tombstone for each entry deleted
  from it by hand (publish_deletions).
- incoming: a durable pull consumer ``journal-<host>``, explicit acks; each
  delivery is acked only once its entry is in this host's files (or needs not
  be: this host's own, applied before, or not an entry).
"""

from __future__ import annotations

import logging
import select
import time
from typing import TYPE_CHECKING

from cmux import watch
from cmux.cluster import bridge, prune
from cmux.cluster import journal as jsync
from cmux.cluster.nats import Delivery
from cmux.errors import ClusterError
from cmux.journal import store as jstore

if TYPE_CHECKING:
    from cmux.cluster.node import Node

log = logging.getLogger(__name__)

PUBLISH_BATCH = 256  # entries per publish_many
FETCH_WAIT = 2.0  # seconds one pull request waits (idle: one request per)
FETCH_BATCH = 64  # also the consumer's max_ack_pending
RETRY = 0.2  # seconds between tries while NATS is away
SETTLE_NS = 2_000_000_000  # a daily file changed this recently may be mid-save


class JournalLoops:
    """The journal's part of one node: its ledgers and what it last read of
    each daily file (so a scan re-reads only the files that changed)."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.published, self.applied = jsync.ledgers(node.data)
        self._day_files: dict[str, tuple[tuple[int, int, int], list[jstore.Entry]]] = {}
        self._compacted: float | None = None  # when compact last ran (monotonic)
        # Per daily file: every entry its reads showed since the last look for
        # deletions (by id; and the read last counted), and that look's read.
        self._seen: dict[str, tuple[dict[str, jstore.Entry], tuple[int, int, int] | None]] = {}
        self._looked: dict[str, tuple[int, int, int]] = {}
        self._memory: tuple[tuple[int, int, int] | None, list[str]] = (None, [])

    def outgoing(self) -> None:
        w = watch.open_watcher()
        try:
            self.node.data.journal_dir.mkdir(parents=True, exist_ok=True)
            w.add(self.node.data.journal_dir, "files")
            while not self.node.stopping.is_set():
                busy = self.publish()
                if busy:
                    continue
                ready, _, _ = select.select([w.fileno()], [], [], self.node.s.heartbeat)
                if ready:
                    w.read()
        finally:
            w.close()

    def entries(self) -> list[jstore.Entry]:
        """Every entry of the daily files, oldest first; a file re-read only
        when its size, mtime or inode changed, and under the journal lock (a
        half-written entry read would travel as an entry of its own)."""
        out: list[jstore.Entry] = []
        seen: dict[str, tuple[tuple[int, int, int], list[jstore.Entry]]] = {}
        for path in jstore.daily_files(self.node.data):
            try:
                st = path.stat()
                key = (st.st_size, st.st_mtime_ns, st.st_ino)
                cached = self._day_files.get(path.name)
                if cached and cached[0] == key:
                    entries = cached[1]
                else:
                    entries = jstore.parse_file_settled(self.node.data, path)
            except FileNotFoundError:
                continue
            seen[path.name] = (key, entries)
            out.extend(entries)
        self._day_files = seen
        return out

    def facts(self) -> list[str]:
        """The fact lines of MEMORY.md, read again only when it changed."""
        path = self.node.data.memory_file
        try:
            st = path.stat()
        except FileNotFoundError:
            return []
        key = (st.st_size, st.st_mtime_ns, st.st_ino)
        if self._memory[0] != key:
            self._memory = (key, jstore.facts(jstore.memory(self.node.data)))
        return self._memory[1]

    def publish(self) -> bool:
        """One batch of this host's new journal entries to CMUX_JOURNAL; True
        when more is waiting."""
        items = jsync.to_publish(self.entries(), self.published, self.node.me)
        self._note_reads()
        items += jsync.facts_to_publish(self.facts(), self.published, self.node.me)
        batch = items[:PUBLISH_BATCH]
        if not batch:
            return self.publish_deletions()
        if not self._send(batch, "journal entries"):
            return True
        self.published.add(it.id for it in batch)
        return len(items) > len(batch)

    def _send(self, items: list[jsync.Outgoing], what: str) -> bool:
        """``items`` published to CMUX_JOURNAL, each with its id; False after
        a failure (logged, and RETRY waited out before the caller tries again)."""
        assert self.node.nats is not None
        subject = bridge.journal_subject(self.node.s.project)
        try:
            self.node.nats.publish_many([(subject, it.payload, it.id) for it in items])
        except ClusterError as exc:
            log.info("publishing %d %s: %s; trying again", len(items), what, exc.message)
            self.node.stopping.wait(RETRY)
            return False
        return True

    def _note_reads(self) -> None:
        """Every entry each new read of a daily file showed, kept until the
        next look for deletions (every round's read, whatever it publishes)."""
        for name, (key, entries) in dict(self._day_files).items():
            seen = self._seen.setdefault(name, ({}, None))
            if seen[1] != key:
                for e in entries:
                    seen[0].setdefault(jstore.entry_id(e), e)
                self._seen[name] = (seen[0], key)

    def publish_deletions(self) -> bool:
        """Tombstones of the entries deleted by hand from a daily file:
        jsync.deletions between every entry any read of it showed since the
        last look and a read of it now, looked at only once the file has not
        changed for ``SETTLE_NS`` (a file read mid-save must never count as
        entries deleted; among those seen, a torn entry that travelled is
        one to delete). What was deleted while no node ran does not travel,
        nor a whole file removed. False (nothing more waiting), or True
        after a failure, to retry."""
        now = time.time_ns()
        out: list[jsync.Outgoing] = []
        looked = {}
        files = dict(self._day_files)
        for name, (key, entries) in files.items():
            seen = self._seen.get(name, ({}, None))
            if self._looked.get(name) != key and now - key[1] >= SETTLE_NS:
                gone = jsync.deletions(seen[0].values(), entries)
                out += [jsync.tombstone(e, self.node.me) for e in gone]
                looked[name] = key
        if out:
            if not self._send(out, "deletions"):
                return True
            log.info("published the deletion of %d journal entries", len(out))
        for name, key in looked.items():
            self._looked[name] = key
            self._seen[name] = ({jstore.entry_id(e): e for e in files[name][1]}, key)
        for name in [n for n in self._seen if n not in files]:
            del self._seen[name]
            self._looked.pop(name, None)
        return False

    def incoming(self) -> None:
        assert self.node.nats is not None
        consumer = None
        while not self.node.stopping.is_set():
            try:
                if consumer is None:
                    consumer = self.node.nats.pull(
                        bridge.JOURNAL_STREAM,
                        f"journal-{self.node.me}",
                        bridge.journal_subject(self.node.s.project),
                        ack_wait=self.node.s.ack_wait,
                        max_ack_pending=FETCH_BATCH,
                    )
                got = consumer.fetch(batch=FETCH_BATCH, timeout=FETCH_WAIT)
                if got:
                    self.apply(got)
                self.compact(time.monotonic())
            except ClusterError as exc:
                log.info("journal: %s; trying again", exc.message)
                self.node.stopping.wait(RETRY)

    def compact(self, now: float) -> int:
        """At most every prune.PRUNE_EVERY s, both ledgers forget the ids of
        entries no longer in the files (jsync.stale). Run in the thread that
        applies, so never between an apply's ``published`` note and its
        append. How many ids went."""
        if not prune.due(self._compacted, now):
            return 0
        self._compacted = now
        published, applied = self.published.snapshot(), self.applied.snapshot()
        try:
            entries, facts = self.entries(), self.facts()
            n = self.published.drop(jsync.stale(published, entries, facts))
            n += self.applied.drop(jsync.stale(applied, entries, facts))
        except OSError as exc:
            log.info("compacting the journal ledgers: %s", exc)
            return 0
        if n:
            log.info("journal ledgers: %d ids of entries no longer in the files dropped", n)
        return n

    def apply(self, batch: list[Delivery]) -> None:
        """Other hosts' entries into this host's daily files, then the acks of
        those there now and of those that need not be (own, had, not entries)."""
        assert self.node.nats is not None
        batch = sorted(batch, key=lambda d: d.stream_seq)
        items = [jsync.decide_apply(d.data, d.msg_id, self.node.me, self.applied) for d in batch]
        for d, item in zip(batch, items, strict=True):
            if item.decision == "bad":
                log.warning("journal message %s dropped: %s", d.stream_seq, item.reason)
        done, error = jsync.apply(self.node.data, items, self.published, self.applied)
        if error is not None:
            log.warning("could not apply a journal entry: %s; it comes again", error)
        ok = {i.id for i in done}
        acks = [
            d
            for d, item in zip(batch, items, strict=True)
            if item.decision not in ("apply", "delete", "remember") or item.id in ok
        ]
        if acks:
            self.node.nats.ack_all(acks)
