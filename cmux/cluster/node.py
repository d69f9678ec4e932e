"""The node daemon (`cmux node`): this host's bridge to the cluster.

One per host and data root (an flock in state/run/, a verified pid file
``node.pid``), started by the monitor when cmux.toml has a [cluster] section.
It reaches NATS only through cmux/cluster/nats.py and decides only through
cmux/cluster/bridge.py (and, for the other hosts, cmux/cluster/view.py).
Eight threads, each blocking in the kernel or on NATS when there is nothing
to do:

- outgoing: woken by inotify on the mailboxes and the registry. Keeps the
  spool markers (a box of an agent that lives elsewhere), publishes every
  spooled file to CMUX_MAIL with ``Nats-Msg-Id`` = the message id and moves
  it to sent/ only after its PubAck; mirrors this host's registry records
  (with ``host``) into KV CMUX_AGENTS.
- incoming: a durable pull consumer ``mail-<host>`` on this host's mail
  subjects, explicit acks: each message is fsynced into its recipient's
  new/ (cmux/mail/arrivals.py, which drops a duplicate id) and acked only then.
- agents: a watch of CMUX_AGENTS, so a remote agent's box becomes a spool
  as soon as it is registered anywhere.
- heartbeat: every ``heartbeat`` seconds CMUX_HOSTS[<host>] = load, agents,
  version, seen, every; this host's new events to CMUX_EVENTS.
- hosts: a watch of CMUX_HOSTS; every heartbeat it judges the other hosts
  (view.decide: silent 3 beats -> unreachable, past host_timeout -> lost),
  keeps that in state/cluster/hosts.json, moves this registry's records of a
  silent host's agents, and tells a lost worker's parent here once (by mail,
  kind notice; who was told is kept in the same file).
- housekeeping: every minute, and at most every prune.PRUNE_EVERY s, the
  spools' sent/ files older than ``[cluster] keep_sent`` go (prune.py).
- journal out / in (cmux/cluster/node_journal.py, deciding through
  cmux/cluster/journal.py): every entry of this host's
  daily files not published yet to CMUX_JOURNAL (``Nats-Msg-Id`` = its
  content id, noted in a ledger only after its PubAck), woken by inotify on
  journal/; and a durable pull consumer ``journal-<host>`` applying the other
  hosts' entries to this host's files, acked only once the entry is there.

Invariants: a spooled file leaves new/ only after JetStream stored it; a
delivery is acked only after its message is durably in the Maildir (or
already was, or is in deadletter/). Any step may die at any point: the next
node publishes again (the id makes JetStream drop the repeat) and gets
unacked mail again (the store drops what it already has). A NATS outage
only delays: every loop retries.
"""

from __future__ import annotations

import json
import logging
import os
import select
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cmux import __version__, events, watch
from cmux.cluster import bridge, prune, view
from cmux.cluster.nats import Delivery, Nats, Settings
from cmux.cluster.node_journal import JournalLoops
from cmux.config import Config
from cmux.errors import ClusterError, ConfigError, SessionError
from cmux.fsutil import atomic_write, locked, read_json
from cmux.mail import maildir, store
from cmux.paths import HUMAN, SUPERVISOR

log = logging.getLogger(__name__)

PUBLISH_BATCH = 256
FETCH_WAIT = 2.0  # seconds one pull request waits for a message (idle: one request per)
FETCH_BATCH = 64  # also the consumer's max_ack_pending: what one node holds unacked
RETRY = 0.2  # seconds between tries while NATS is away


@dataclass(frozen=True)
class NodeSettings:
    host: str
    project: str
    nats: Settings
    heartbeat: float = 2.0
    host_timeout: float = 60.0
    # Seconds before an unacked delivery (its node died) comes again.
    ack_wait: float = 5.0
    # Seconds a spool's sent/ file is kept ([cluster] keep_sent, in hours).
    keep_sent: float = prune.KEEP_SENT_HOURS * 3600
    # Copies of each stream and bucket this node makes ([cluster] replicas).
    replicas: int = 1


project_id = view.project_id  # the short id of the trunk repository (or [cluster] project)


def settings_for(
    cfg: Config,
    *,
    url: str | None = None,
    host: str | None = None,
    project: str | None = None,
    token: str | None = None,
    ack_wait: float | None = None,
) -> NodeSettings:
    """The node's settings: the arguments, else cmux.toml's [cluster]."""
    sec = cfg.section("cluster")
    url = url or sec.get("nats")
    if not url:
        raise ConfigError(
            "no NATS server: cmux.toml has no [cluster] nats = ...",
            'add [cluster] nats = "nats://HOST:4222" (docs/CLUSTER.md), or pass --nats',
        )
    name = host or view.host_name(cfg)
    proj = project or view.project_id(cfg)
    for what, value in (("host", name), ("project", proj)):
        if not bridge.valid_token(str(value)):
            raise ConfigError(
                f"[cluster] {what} {value!r} cannot name a NATS subject",
                "use letters, digits, '-' or '_' (up to 64)",
            )
    nats = replace(view.nats_settings(cfg, url=str(url), token=token), name=f"cmux-node-{name}")
    return NodeSettings(
        host=str(name),
        project=str(proj),
        nats=nats,
        heartbeat=float(sec.get("heartbeat", 2.0)),
        host_timeout=float(sec.get("host_timeout", 60.0)),
        ack_wait=float(ack_wait or sec.get("ack_wait", 5.0)),
        keep_sent=float(sec.get("keep_sent", prune.KEEP_SENT_HOURS)) * 3600,
        replicas=int(sec.get("replicas", 1)),
    )


@dataclass
class _Mirror:
    """What this node last put into CMUX_AGENTS (key -> the JSON put)."""

    put: dict[str, bytes] = field(default_factory=dict)


class Node:
    def __init__(
        self,
        cfg: Config,
        settings: NodeSettings,
        *,
        connect: Callable[[Settings], Nats] = Nats.connect,
    ) -> None:
        self.cfg = cfg
        self.data = cfg.data
        self.s = settings
        self.me = settings.host
        self._connect = connect
        self.nats: Nats | None = None
        self.stopping = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._remote: dict[str, bytes] = {}  # CMUX_AGENTS of other hosts: key -> value
        self._remote_lock = threading.Lock()
        self._mirror = _Mirror()
        self.published = 0
        self.received = 0
        self.journal = JournalLoops(self)
        self.ready = threading.Event()
        # The other hosts' heartbeats: host -> when this host last heard it
        # change (its own clock), and the interval the host beats at.
        self._heard: dict[str, float] = {}
        self._every: dict[str, float] = {}
        self._floor = 0.0  # no host counts as silent from before NATS answered again
        self._started = 0.0  # when NATS first answered (run): a host never heard is silent since
        self._pruned: float | None = None  # when housekeeping last ran (monotonic)

    # -- life ----------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask every loop to end (safe from a signal handler)."""
        self.stopping.set()
        self.wake()

    def wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass

    def _connected(self) -> Nats:
        """Connect, retrying until it works or the node stops; the streams and buckets made."""
        while not self.stopping.is_set():
            try:
                conn = self._connect(self.s.nats)
                try:
                    p, r = self.s.project, self.s.replicas
                    subjects = {
                        bridge.MAIL_STREAM: f"cmux.{p}.mail.>",
                        bridge.EVENTS_STREAM: f"cmux.{p}.events.>",
                        bridge.JOURNAL_STREAM: f"cmux.{p}.journal",
                    }
                    for name, lim in prune.STREAMS.items():
                        conn.ensure_stream(
                            name, [subjects[name]], duplicate_window=lim.duplicate_window,
                            max_age=lim.max_age, max_msgs=lim.max_msgs, replicas=r,
                        )  # fmt: skip
                    conn.ensure_kv(bridge.AGENTS_KV, replicas=r)
                    conn.ensure_kv(bridge.HOSTS_KV, replicas=r)
                except ClusterError:
                    conn.close()
                    raise
                return conn
            except ClusterError as exc:
                log.warning("NATS at %s: %s; trying again", self.s.nats.url, exc.message)
                self.stopping.wait(1.0)
        raise SessionError("the node stopped before NATS answered")

    def run(self) -> None:
        """Until :meth:`stop`: connect, then run the five loops."""
        self.nats = self._connected()
        self._started = time.time()
        threads = [
            threading.Thread(target=self._guard(f), name=f.__name__, daemon=True)
            for f in (
                self._incoming,
                self._agents,
                self._heartbeat,
                self._hosts,
                self._housekeeping,
                self.journal.outgoing,
                self.journal.incoming,
            )
        ]
        for t in threads:
            t.start()
        try:
            self._guard(self._outgoing)()
        finally:
            self.stop()
            for t in threads:
                t.join(5)
            self.nats.close()

    def _guard(self, loop: Callable[[], None]) -> Callable[[], None]:
        """Run ``loop`` again after an unexpected error, until the node stops."""

        def run() -> None:
            while not self.stopping.is_set():
                try:
                    loop()
                except Exception:
                    log.exception("%s failed; starting it again", loop.__name__)
                    self.stopping.wait(RETRY)

        run.__name__ = loop.__name__
        return run

    # -- outgoing: spools, publishing, the registry mirror --------------------------------

    def _outgoing(self) -> None:
        w = watch.open_watcher()
        try:
            self.data.mailbox_dir.mkdir(parents=True, exist_ok=True)
            self.data.agents_dir.mkdir(parents=True, exist_ok=True)
            w.add(self.data.mailboxes_path, "dirs")
            w.add(self.data.agents_dir, "files")
            agents_dir = str(self.data.agents_dir)
            changed, spools = True, {}
            while not self.stopping.is_set():
                if changed:  # a record, a new box, another host's agent, or a heartbeat
                    spools = self.refresh()
                    for agent in spools:
                        w.add(maildir.new_dir(self.data, agent), "files")
                busy = self.publish(spools)
                changed = False
                if busy:
                    continue  # more than a batch waiting: go on at once
                ready, _, _ = select.select([w.fileno(), self._wake_r], [], [], self.s.heartbeat)
                if not ready or self._wake_r in ready:
                    changed = True
                    if ready:
                        os.read(self._wake_r, 4096)
                if w.fileno() in ready:
                    for e in w.read():
                        if e.overflow or e.folder in (agents_dir, self.data.mailboxes_path):
                            changed = True
        finally:
            w.close()

    def _local_records(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        try:
            files = list(self.data.agents_dir.glob("*.json"))
        except OSError:
            return out
        for p in files:
            try:
                rec = read_json(p)
            except (OSError, ValueError):
                continue
            if isinstance(rec, dict) and isinstance(rec.get("name"), str):
                out[rec["name"]] = rec
        return out

    def refresh(self) -> dict[str, str]:
        """Spool markers and the registry mirror brought up to date; the spools."""
        records = self._local_records()
        with self._remote_lock:
            remote_keys = list(self._remote)
        where = bridge.locations(self.me, records, remote_keys)
        markers = bridge.spool_markers(self.data)
        mark, unmark = bridge.spool_changes(self.me, where, markers)
        for agent, host in mark.items():
            bridge.mark_spool(self.data, agent, host)
            markers[agent] = host
        for agent in unmark:
            bridge.unmark_spool(self.data, agent)
            markers[agent] = None
        self._mirror_records(records)
        return {a: h for a, h in markers.items() if h}

    def _mirror_records(self, records: dict[str, dict[str, Any]]) -> None:
        """Put this host's own agents into CMUX_AGENTS (each host writes only its own)."""
        assert self.nats is not None
        want: dict[str, bytes] = {}
        for name, rec in records.items():
            host = rec.get("host") or self.me
            if host != self.me:
                continue
            want[bridge.agent_key(self.me, name)] = json.dumps(
                {**rec, "host": self.me}, sort_keys=True
            ).encode()
        if SUPERVISOR in records and not records[SUPERVISOR].get("host"):
            # The person reads their inbox where the supervisor lives.
            want[bridge.agent_key(self.me, HUMAN)] = json.dumps(
                {"name": HUMAN, "host": self.me}
            ).encode()
        for key, value in want.items():
            if self._mirror.put.get(key) != value:
                try:
                    self.nats.kv_put(bridge.AGENTS_KV, key, value)
                    self._mirror.put[key] = value
                except ClusterError as exc:
                    log.info("mirror of %s: %s", key, exc.message)
        for key in [k for k in self._mirror.put if k not in want]:
            try:
                self.nats.kv_delete(bridge.AGENTS_KV, key)
                del self._mirror.put[key]
            except ClusterError as exc:
                log.info("removing %s: %s", key, exc.message)

    def publish(self, spools: dict[str, str]) -> bool:
        """One batch of spooled mail to CMUX_MAIL; True when more is waiting."""
        assert self.nats is not None
        before = f"{time.time_ns():016x}"
        pending = {a: store.pending(self.data, a) for a in spools}
        items = bridge.to_publish(spools, pending, before)
        batch, out = items[:PUBLISH_BATCH], []
        for item in batch:
            raw = bridge.read_spooled(self.data, item)
            if raw is not None:
                subject = bridge.mail_subject(self.s.project, item.host, item.agent)
                out.append((item, subject, raw))
        if not out:
            return False
        try:
            self.nats.publish_many(
                [(subj, raw, item.name.removesuffix(maildir.SUFFIX)) for item, subj, raw in out],
                lanes=[bridge.lane(raw) for _, _, raw in out],
            )
        except ClusterError as exc:
            log.info("publishing %d: %s; trying again", len(out), exc.message)
            self.stopping.wait(RETRY)
            return True
        bridge.mark_sent_many(self.data, [item for item, _, _ in out])
        maildir.note_many(
            self.data,
            [
                (
                    "cluster-sent",
                    item.agent,
                    {"id": item.name.removesuffix(maildir.SUFFIX), "host": item.host},
                )
                for item, _, _ in out
            ],
        )
        self.published += len(out)
        return len(items) > len(batch)

    # -- incoming: this host's mail ---------------------------------------------------------

    def _incoming(self) -> None:
        assert self.nats is not None
        consumer = None
        recovering, reconnects = True, self.nats.reconnects
        last: int | None = None  # the highest consumer sequence taken since recovering
        while not self.stopping.is_set():
            try:
                if consumer is None:
                    consumer = self.nats.pull(
                        bridge.MAIL_STREAM,
                        f"mail-{self.me}",
                        bridge.mail_filter(self.s.project, self.me),
                        ack_wait=self.s.ack_wait,
                        max_ack_pending=FETCH_BATCH,
                    )
                if self.nats.reconnects != reconnects:
                    recovering, reconnects = True, self.nats.reconnects
                first = 1  # how many to ask for while waiting
                if recovering:
                    if consumer.pending()[1]:
                        # Deliveries are out unacked that this node does not
                        # hold: a node before it died holding them, or they
                        # were lost with a connection (and a pull request the
                        # server still answers for up to FETCH_WAIT). Let them
                        # all time out first, so they come again before any
                        # later message and each sender's order holds. The
                        # server hands them out in no particular order: all of
                        # them (at most FETCH_BATCH are ever out) in one
                        # fetch, sorted in take().
                        self.stopping.wait(self.s.ack_wait + FETCH_WAIT + 0.2)
                        first = FETCH_BATCH
                    # Numbered from what the server delivered by now: one
                    # lost from here on is a gap, even the very next one.
                    recovering, last = False, consumer.delivered()
                    self.ready.set()
                # Wait for one (at once when it comes), then take what else
                # is there in one go: its files first, then its acks.
                got = consumer.fetch(batch=first, timeout=FETCH_WAIT)
                while got and self.nats.reconnects == reconnects:
                    seqs = [d.consumer_seq for d in got]
                    if bridge.deliveries_lost(last, seqs):
                        # One went astray between servers: left unacked, these
                        # come again with it, in order, after the wait above.
                        log.info("a delivery was lost before %s; waiting for it", min(seqs))
                        recovering = True
                        break
                    self.take(got)
                    last = max([*seqs, last or 0])
                    got = consumer.fetch(batch=FETCH_BATCH, timeout=0.01)
                # Fetched over a new connection, some may be behind ones lost
                # with the old: left unacked, they come again in order after
                # the wait of the next round.
            except ClusterError as exc:
                log.info("receiving: %s; trying again", exc.message)
                recovering = True
                self.stopping.wait(RETRY)

    def take(self, batch: list[Delivery]) -> None:
        """Deliveries, in stream order: each into the Maildir (fsynced), then,
        the ack rule, the acks of those stored (or there already)."""
        assert self.nats is not None
        batch = sorted(batch, key=lambda d: d.stream_seq)
        agents = [bridge.subject_agent(d.subject, self.s.project, self.me) for d in batch]
        outcomes = bridge.receive_batch(
            self.data, [(a, d.msg_id, d.data) for a, d in zip(agents, batch, strict=True)]
        )
        acks, notes = [], []
        for d, agent, outcome in zip(batch, agents, outcomes, strict=True):
            if not bridge.decide_ack(outcome):
                log.warning("could not store %s for %s; it comes again", d.msg_id, agent)
                continue  # not acked: delivered again after ack_wait
            acks.append(d)
            if outcome == "stored":
                self.received += 1
                notes.append(("cluster-received", agent, {"id": d.msg_id, "seq": d.stream_seq}))
        maildir.note_many(self.data, notes)
        if acks:
            self.nats.ack_all(acks)

    # -- the other hosts' agents ------------------------------------------------------------

    def _agents(self) -> None:
        assert self.nats is not None
        w = self.nats.kv_watch(bridge.AGENTS_KV)
        try:
            while not self.stopping.is_set():
                entry = w.next(FETCH_WAIT)
                if entry is None:
                    continue
                pair = bridge.split_key(entry.key)
                if pair is None or pair[0] == self.me:
                    continue
                with self._remote_lock:
                    if entry.value is None:
                        self._remote.pop(entry.key, None)
                    else:
                        self._remote[entry.key] = entry.value
                self.wake()
        finally:
            w.stop()

    def remote_agents(self) -> dict[str, str]:
        """Agent -> host, of the other hosts' agents this node knows."""
        with self._remote_lock:
            pairs = [bridge.split_key(k) for k in self._remote]
        return {p[1]: p[0] for p in pairs if p}

    # -- the other hosts: up, unreachable, lost -------------------------------------------

    def _hosts(self) -> None:
        """Watch CMUX_HOSTS; every heartbeat, judge the other hosts (:meth:`judge`)."""
        assert self.nats is not None
        w = self.nats.kv_watch(bridge.HOSTS_KV)
        reconnects = self.nats.reconnects
        try:
            next_judge = time.monotonic()
            while not self.stopping.is_set():
                entry = w.next(max(0.01, min(self.s.heartbeat, next_judge - time.monotonic())))
                if entry is not None and entry.key != self.me and entry.value is not None:
                    self.heard(entry.key, entry.value, time.time())
                if time.monotonic() < next_judge:
                    continue
                next_judge = time.monotonic() + self.s.heartbeat
                if not self.nats.connected:
                    continue  # this host cannot hear anyone: it judges no one
                if self.nats.reconnects != reconnects:
                    # Back after an outage: silence counts from now, on a new
                    # watch (the old one may have died with the connection).
                    reconnects, self._floor = self.nats.reconnects, time.time()
                    w.stop()
                    w = self.nats.kv_watch(bridge.HOSTS_KV)
                self.judge(time.time())
        finally:
            w.stop()

    def heard(self, host: str, value: bytes, now: float) -> None:
        """A heartbeat of ``host``: heard now, or, for one from before this node
        watched (the first value of a key), when it says it was sent if earlier."""
        try:
            beat = json.loads(value)
        except ValueError:
            beat = {}
        if not isinstance(beat, dict):
            beat = {}
        at = now
        if host not in self._heard and isinstance(beat.get("seen"), (int, float)):
            at = min(now, float(beat["seen"]))
        self._heard[host] = at
        every = beat.get("every")
        self._every[host] = float(every) if isinstance(every, (int, float)) else self.s.heartbeat

    def judge(self, now: float) -> dict[str, view.HostState]:
        """Decide each host's state (view.decide), keep it in the view file,
        move this registry's records of a silent host's agents, and tell the
        parent here of each worker lost, once."""
        from cmux.agents import registry

        local = {a.name: a for a in registry.list_agents(self.data)}
        # A host that never beat is judged too: silent from one host_timeout
        # after this node began (or the newest of its agents was placed there).
        expected = view.unheard(
            local.values(), self._heard, self.me, since=self._started, grace=self.s.host_timeout
        )
        heard = {h: max(t, self._floor) for h, t in {**expected, **self._heard}.items()}
        every = {**{h: self.s.heartbeat for h in expected}, **self._every}
        states = view.decide(heard, now, heartbeat=every, host_timeout=self.s.host_timeout)
        doc = view.read_state(self.data)
        told = set(doc.get("told", []))
        with self._remote_lock:
            remote = dict(self._remote)
        for a in local.values():
            if a.host and a.host != self.me and a.host in states:
                self._move(a, states[a.host], remote.get(bridge.agent_key(a.host, a.name)))
        for mark, parent, agent, host in view.lost_notices(states, remote, local, told, self.me):
            never = "" if host in self._heard else " (it never beat)"
            body = (
                f"{agent} on host {host} is lost: that host has not been heard for "
                f"{now - heard[host]:.0f} s{never} (past [cluster] host_timeout). What it pushed "
                f"(cmux/{agent} on the trunk) stays; spawn it again to go on."
            )
            try:
                store.send(self.cfg, to=parent, body=body, sender="cmux", kind="notice")
            except Exception as exc:  # a full disk: tell it at the next judgement
                log.warning("telling %s that %s is lost: %s", parent, agent, exc)
                continue
            told.add(mark)
            events.record(self.data, "agent-lost", agent, host=host, parent=parent)
            view.write_state(self.data, {**doc, "told": sorted(told)})
        before = {h: v.get("state") for h, v in doc.get("hosts", {}).items()}
        for h, st in states.items():
            if before.get(h, "up") != st:
                events.record(self.data, f"host-{st}", host=h, silent=round(now - heard[h], 1))
        if before != states or set(doc.get("told", [])) != told:
            hosts = {h: {"state": st, "heard": heard[h]} for h, st in sorted(states.items())}
            view.write_state(self.data, {"hosts": hosts, "told": sorted(told)})
        return states

    def _move(self, a: Any, state: view.HostState, there: bytes | None) -> None:
        """This registry's record of an agent on another host, as that host is."""
        from cmux.agents import registry

        try:
            if state != "up":
                if a.state in registry.LIVE:
                    registry.transition(
                        self.data, a.name, "unreachable", reason=f"host {a.host} is silent",
                        strict=False, only_from={a.state},
                    )  # fmt: skip
                    a = registry.get(self.data, a.name)
                if state == "lost" and a.state == "unreachable":
                    registry.transition(
                        self.data, a.name, "lost", reason=f"host {a.host} gone past host_timeout",
                        strict=False, only_from={"unreachable"},
                    )  # fmt: skip
            elif a.state in registry.ASTRAY and there is not None:
                # Back: the state its host's record says, unless `cmux hosts`
                # took a newer one meanwhile (place.take_report).
                from cmux.remote.place import take_report

                rec = json.loads(there)
                if not isinstance(rec, dict):
                    return
                got = take_report(a, rec.get("state"), rec.get("since"), rec.get("incarnation"))
                if got is not None and got[0] != a.state:
                    registry.transition(
                        self.data, a.name, got[0], reason=f"as host {a.host} reports",
                        strict=False, only_from={a.state}, if_since=a.since, there_since=got[1],
                    )  # fmt: skip
        except (ClusterError, ValueError, OSError) as exc:
            log.info("moving %s: %s", a.name, exc)

    # -- heartbeat and events ---------------------------------------------------------------

    def _heartbeat(self) -> None:
        assert self.nats is not None
        offset_file = self.data.state_dir / "cluster" / "events.offset"
        offset = _read_offset(offset_file)
        while not self.stopping.is_set():
            try:
                self.nats.kv_put(bridge.HOSTS_KV, self.me, self.beat())
                offset = self._publish_events(offset, offset_file)
            except ClusterError as exc:
                log.info("heartbeat: %s", exc.message)
            self.stopping.wait(self.s.heartbeat)

    def _housekeeping(self) -> None:
        """Its own thread, so that a big prune never delays a heartbeat."""
        while not self.stopping.is_set():
            self.housekeeping(time.monotonic())
            self.stopping.wait(60.0)

    def housekeeping(self, now: float) -> None:
        """At most every prune.PRUNE_EVERY s: the spools' old sent/ files go
        (prune.prune_sent). Nothing here needs NATS."""
        if not prune.due(self._pruned, now):
            return
        self._pruned = now
        try:  # every box: one that was a spool keeps its sent/ when its agent moves here
            n = prune.prune_sent(
                self.data, maildir.box_names(self.data), time.time_ns(), self.s.keep_sent
            )
        except OSError as exc:
            log.info("pruning sent/: %s", exc)
            return
        if n:
            log.info("pruned %d sent/ files older than %.0f h", n, self.s.keep_sent / 3600)

    def beat(self) -> bytes:
        records = self._local_records()
        mine = [r for r in records.values() if (r.get("host") or self.me) == self.me]
        return json.dumps(
            {
                "load": os.getloadavg()[0],
                "agents": sum(1 for r in mine if r.get("state") not in ("exited", "killed")),
                "version": __version__,
                "seen": time.time(),
                "every": self.s.heartbeat,
            }
        ).encode()

    def _publish_events(self, offset: int, offset_file: Path) -> int:
        """This host's new events to CMUX_EVENTS, many to a message (bridge.events_chunks;
        id: host, the byte offset the read began at, and the chunk's lines)."""
        assert self.nats is not None
        batch, end = events.read(self.data, offset=offset)
        if not batch:
            return end
        subject = bridge.events_subject(self.s.project, self.me)
        lines = [json.dumps({**e, "host": self.me}).encode() for e in batch]
        self.nats.publish_many(
            [
                (subject, payload, f"{self.me}:{offset}:{mid}")
                for payload, mid in bridge.events_chunks(lines)
            ]
        )
        offset_file.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(offset_file, f"{end}\n")
        return end


def _read_offset(path: Path) -> int:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return 0


def run(cfg: Config, settings: NodeSettings) -> None:
    """Entry point of `cmux node`: one per data root."""
    import signal

    from cmux import pidfile

    run_dir = cfg.data.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    with locked(run_dir / "node.lock", blocking=False) as got:
        if not got:
            raise SessionError(
                f"a node daemon is already running for {cfg.data.root}",
                "one per host and data root; `cmux stop` ends it",
            )
        node = Node(cfg, settings)
        signal.signal(signal.SIGTERM, lambda *_: node.stop())
        signal.signal(signal.SIGHUP, lambda *_: node.stop())
        try:
            pidfile.write(run_dir / "node.pid")
            events.record(cfg.data, "node-start", pid=os.getpid(), host=settings.host)
            node.run()
        finally:
            pidfile.remove(run_dir / "node.pid")
            events.record(cfg.data, "node-stop", pid=os.getpid(), host=settings.host)
