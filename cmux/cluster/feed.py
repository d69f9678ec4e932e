"""The other hosts as they change, for a long-lived reader on this host: the
dashboard's live stream (cmux/dashboard/live.py), the watchdogs
(cmux/health/watchdog.py) and the monitor window (cmux/monitor.py, which
redraws when :attr:`TeamFeed.revision` moves).

A :class:`TeamFeed` keeps one NATS connection in a thread of its own: a
watch of CMUX_AGENTS (the other hosts' records, kept in :attr:`records`) and
a core subscription to the events subjects (each other host's events as its
node publishes them to CMUX_EVENTS). What changes is queued for
:meth:`drain`; ``on_change`` is called after each change (the dashboard's
wake-up). Nothing here blocks its caller: connecting, and connecting again
after NATS went away, happen in the feed's thread, every ``RETRY`` s.

Invariants: only other hosts' records and events are kept (this host's are
in its own files); the queue is bounded (``QUEUE_MAX``: a reader that does
not drain loses the oldest, never grows without end); after a reconnect
the watch is made again, so :attr:`records` is whole again within a round
trip. Imported only with ``[cluster] nats`` (it imports cmux/cluster/nats.py).
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cmux.cluster import bridge, view
from cmux.errors import ClusterError

if TYPE_CHECKING:
    from cmux.agents.registry import Agent
    from cmux.cluster.nats import Nats
    from cmux.config import Config

log = logging.getLogger(__name__)

RETRY = 5.0  # seconds between tries while NATS does not answer
WAIT = 1.0  # seconds one wait on the watch blocks (a stop is seen within it)
QUEUE_MAX = 10000

Change = tuple[str, Any]  # ("agent", name) or ("event", the event with its "host")


class TeamFeed:
    def __init__(
        self,
        cfg: Config,
        *,
        on_change: Callable[[], None] | None = None,
        connect: Callable[[Config], Nats] = view.connect,
    ) -> None:
        self.cfg = cfg
        self.me = view.host_name(cfg)
        self.subject = ""  # the events subjects: known once the thread asked (it may run git)
        self.on_change = on_change
        self._connect = connect
        self.records: dict[str, bytes] = {}  # CMUX_AGENTS of the other hosts: key -> value
        self.connected = False
        self.revision = 0  # counts the changes of other hosts' records (never drained)
        self._changes: collections.deque[Change] = collections.deque(maxlen=QUEUE_MAX)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> TeamFeed:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="team-feed", daemon=True)
            self._thread.start()
        return self

    def stop(self, wait: float = WAIT + 1) -> None:
        """Ask the thread to end (within ``WAIT`` s), waiting for it up to ``wait`` s."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(wait)

    def drain(self) -> list[Change]:
        """What changed since the last call, oldest first."""
        with self._lock:
            out = list(self._changes)
            self._changes.clear()
        return out

    def agents(self, local: list[Agent]) -> list[Agent]:
        """``local`` with the other hosts' agents, as `cmux status` shows them
        (view.merge, then view.overlay with this host's view of the hosts)."""
        with self._lock:
            remote = dict(self.records)
        return view.overlay(view.merge(local, remote, self.me), view.read_view(self.cfg.data))

    # -- the thread -----------------------------------------------------------------------

    def _push(self, change: Change) -> None:
        """Queue ``change``; wake the reader only when the queue was empty (it
        drains all at once: a burst of a hundred events is one wake-up)."""
        with self._lock:
            first = not self._changes
            self._changes.append(change)
        if first and self.on_change is not None:
            self.on_change()

    def _run(self) -> None:
        while not self._stop.is_set():
            conn = None
            try:
                if not self.subject:
                    self.subject = f"cmux.{view.project_id(self.cfg)}.events.*"
                conn = self._connect(self.cfg)
                while not self._stop.is_set():
                    self._follow(conn)  # back after a reconnect: watch again
            except ClusterError as exc:
                log.info("the other hosts: %s; trying again in %.0f s", exc.message, RETRY)
            except Exception:
                log.exception("the team feed failed; starting it again")
            finally:
                self.connected = False
                if conn is not None:
                    conn.close()
            self._stop.wait(RETRY)

    def _follow(self, conn: Nats) -> None:
        """Until a stop or a reconnect (then the caller makes it all again)."""
        reconnects = conn.reconnects
        sub = conn.subscribe(self.subject)
        with self._lock:
            self.records.clear()  # the watch gives every key's value again
        try:
            watch = conn.kv_watch(bridge.AGENTS_KV)
        except ClusterError:
            sub.stop()
            raise
        pump = threading.Thread(target=self._events, args=(sub,), name="team-events", daemon=True)
        self.connected = True
        pump.start()
        try:
            while not self._stop.is_set() and conn.reconnects == reconnects:
                entry = watch.next(WAIT)
                if entry is None:
                    continue
                pair = bridge.split_key(entry.key)
                if pair is None or pair[0] == self.me:
                    continue
                with self._lock:
                    if entry.value is None:
                        self.records.pop(entry.key, None)
                    else:
                        self.records[entry.key] = entry.value
                    self.revision += 1
                self._push(("agent", pair[1]))
        finally:
            watch.stop()
            sub.stop()
            sub.queue.put(None)  # type: ignore[arg-type]  # ends the pump
            pump.join(WAIT)

    def _events(self, sub: Any) -> None:
        while True:
            got = sub.queue.get()
            if got is None:
                return
            for e in view.payload_events(got.value or b""):  # several to a message
                if e.get("host") and e.get("host") != self.me:
                    self._push(("event", e))
