"""The live stream: what changed in the registry and the event log, pushed
to every open page (GET /api/stream, Server-Sent Events).

One thread per dashboard (started by the first page that subscribes) blocks
in the kernel on cmux/watch.py (the registry's directory and state/, where
events.jsonl is appended), so an idle dashboard costs nothing. A wake-up
is coalesced: the thread gathers what else lands within ``COALESCE``
seconds, then sends one batch: an ``agent`` event per agent whose record
or mail changed (its status row, with
``cells`` and ``preview``), each new event-log line as ``event`` (the newest
``EVENTS_CAP`` of the batch), and each new or moved message as ``mail`` (the
newest ``MAIL_CAP``). 100 messages a second thus become a few batches a
second of bounded size. While a page is open, the panes of busy agents are
read every ``PREVIEW_EVERY`` seconds for their preview (a pane has no file
to watch); with no page open nothing is read.

With [cluster] nats, the other hosts come in through a
:class:`cmux.cluster.feed.TeamFeed` started with the thread: a change of
another host's record in CMUX_AGENTS sends that agent's row, each event its
node publishes is sent as ``event`` (with its ``host``); the feed wakes the
thread as a file does. Its rows show no pane: it is on its own host.

Invariant: a subscriber that cannot keep up loses the oldest batches (its
queue is bounded), never slows the thread or the other subscribers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import select
import threading
import time
from typing import Any

from cmux import events
from cmux.config import Config
from cmux.dashboard import pages, views

log = logging.getLogger(__name__)

COALESCE = 0.15
EVENTS_CAP = 200  # = the rows a page keeps
MAIL_CAP = 200
PREVIEW_EVERY = 2.0
QUEUE_MAX = 64  # batches a subscriber may fall behind
TRAILS_KEPT = 20000
MAIL_EVENTS = ("send", "deliver", "read")
ROW_EVENTS = (*MAIL_EVENTS, "hold", "release", "claim")  # they change an agent's mail counts

Batch = list[tuple[str, dict[str, Any]]]


class Hub:
    """The watcher thread and the subscribers' queues."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.subs: dict[asyncio.Queue[Batch | None], asyncio.AbstractEventLoop] = {}
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None
        self.stop_r, self.stop_w = os.pipe()
        self.stopping = False
        self.trails: dict[str, dict[str, str | None]] = {}
        self.tmux = views.reader(cfg)  # the pages' and the stream's pane reads
        self.previews: dict[str, str] = {}  # the last preview sent, per agent
        self.looked: dict[str, float] = {}  # when its pane was last read
        self.states: dict[str, str] = {}  # its state then
        self.feed: Any = None  # the other hosts' (cmux/cluster/feed.py), with [cluster] nats

    # -- subscribers (called on the event loop) --------------------------------------

    def subscribe(self) -> asyncio.Queue[Batch | None]:
        q: asyncio.Queue[Batch | None] = asyncio.Queue(QUEUE_MAX)
        with self.lock:
            self.subs[q] = asyncio.get_running_loop()
        self.start()  # the first page to subscribe starts the thread
        self._poke()
        return q

    def unsubscribe(self, q: asyncio.Queue[Batch | None]) -> None:
        with self.lock:
            self.subs.pop(q, None)

    def start(self) -> None:
        if self.thread is None and not self.stopping:
            self.thread = threading.Thread(target=self._run, name="dashboard-live", daemon=True)
            self.thread.start()

    def close(self) -> None:
        self.stopping = True
        self._poke()
        if self.thread is not None:
            self.thread.join(timeout=3)
        if self.feed is not None:
            self.feed.stop()
        with self.lock:
            subs = list(self.subs.items())
        for q, loop in subs:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_put, q, None)
        self.tmux.close_control()

    def _poke(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self.stop_w, b"x")

    def publish(self, batch: Batch) -> None:
        if not batch:
            return
        with self.lock:
            subs = list(self.subs.items())
        for q, loop in subs:
            with contextlib.suppress(RuntimeError):  # its loop is closed
                loop.call_soon_threadsafe(_put, q, batch)

    # -- the thread -------------------------------------------------------------------

    def _run(self) -> None:
        from cmux import watch

        d = self.cfg.data
        watcher = watch.open_watcher()
        if self.cfg.section("cluster").get("nats"):  # one machine: not even the import
            from cmux.cluster.feed import TeamFeed

            self.feed = TeamFeed(self.cfg, on_change=self._poke).start()
        try:
            d.agents_dir.mkdir(parents=True, exist_ok=True)
            watcher.add(d.agents_dir, "files")
            watcher.add(d.state_dir, "files")
            try:
                offset = os.path.getsize(d.events_path)
            except OSError:
                offset = 0
            self.trails = views.trails(views.tail_events(d))
            last_preview = 0.0
            while not self.stopping:
                timeout = None
                if self.subs:
                    timeout = max(0.0, last_preview + PREVIEW_EVERY - time.monotonic())
                ready, _, _ = select.select([watcher.fileno(), self.stop_r], [], [], timeout)
                if self.stopping:
                    return
                if self.stop_r in ready:
                    with contextlib.suppress(BlockingIOError, OSError):
                        os.read(self.stop_r, 512)
                changed: set[str] = set()
                everything = False
                new_events: list[dict[str, Any]] = []
                if self.feed is not None and self.stop_r in ready and self.subs:
                    # Woken by the feed: what else comes within COALESCE goes
                    # in the same batch (another host's events come in bursts).
                    select.select([], [], [], COALESCE)
                far = self.feed.drain() if self.feed is not None else []
                if watcher.fileno() in ready and not self.subs:
                    # Nobody looks: only keep up with the log's end (one stat).
                    watcher.read()
                    with contextlib.suppress(OSError):
                        offset = os.path.getsize(d.events_path)
                    continue
                if watcher.fileno() in ready:
                    deadline = time.monotonic() + COALESCE
                    while True:
                        for ev in watcher.read():
                            if ev.overflow:
                                everything = True
                            elif ev.folder == str(d.agents_dir) and _record(ev.name):
                                changed.add(ev.name[: -len(".json")])
                        left = deadline - time.monotonic()
                        if left <= 0:
                            break
                        select.select([watcher.fileno()], [], [], left)
                    batch_events, offset = self._new_events(offset)
                    new_events = batch_events
                if not self.subs:
                    continue
                for kind, what in far:
                    if kind == "agent":
                        changed.add(str(what))
                    else:
                        new_events.append(what)
                for line in new_events:
                    if line.get("event") in ROW_EVENTS and line.get("agent"):
                        changed.add(str(line["agent"]))
                busy: set[str] = set()
                if time.monotonic() - last_preview >= PREVIEW_EVERY:
                    last_preview = time.monotonic()
                    busy = self._busy()
                try:
                    self.publish(self._batch(changed, everything, new_events, busy))
                except Exception:
                    log.exception("building a live batch failed")
        except Exception:
            log.exception("the live stream stopped")
        finally:
            watcher.close()

    def _new_events(self, offset: int) -> tuple[list[dict[str, Any]], int]:
        try:
            size = os.path.getsize(self.cfg.data.events_path)
        except OSError:
            return [], 0
        if size < offset:
            offset = 0  # the log was replaced
        batch, offset = events.read(self.cfg.data, offset=offset)
        for ev in batch:
            kind = {"send": "sent", "deliver": "delivered", "read": "read"}.get(
                str(ev.get("event"))
            )
            mid = ev.get("id")
            if kind and mid:
                t = self.trails.setdefault(
                    str(mid), {"sent": None, "delivered": None, "read": None}
                )
                if t[kind] is None:
                    t[kind] = str(ev.get("ts") or "")
        if len(self.trails) > TRAILS_KEPT:
            for k in list(self.trails)[: len(self.trails) - TRAILS_KEPT]:
                del self.trails[k]
        return batch, offset

    def _busy(self) -> set[str]:
        from cmux.agents import registry

        return {
            a.name
            for a in registry.list_agents(self.cfg.data)
            if a.state in ("busy", "starting", "waiting") and not a.host
        }

    def _batch(
        self, changed: set[str], everything: bool, new: list[dict[str, Any]], busy: set[str]
    ) -> Batch:
        out: Batch = []
        names = None if everything else sorted(changed | busy)
        if names is None or names:
            rows = views.status(self.cfg, names=names, reconcile=False, feed=self.feed)
            now = time.monotonic()
            # A pane is read again only when its agent's state moved, or
            # PREVIEW_EVERY after the last look: mail at 100/s reads no more.
            stale = [
                r
                for r in rows
                if r["state"] != self.states.get(r["name"])
                or now - self.looked.get(r["name"], 0.0) >= PREVIEW_EVERY
            ]
            shots = {**self.previews, **views.previews(self.cfg, stale, self.tmux)}
            for r in stale:
                self.looked[r["name"]] = now
                self.states[r["name"]] = str(r["state"])
            for r in rows:
                shot = shots.get(r["name"], "")
                only_looked = r["name"] in busy and r["name"] not in changed and not everything
                if only_looked and self.previews.get(r["name"]) == shot:
                    continue  # only its preview was looked at, and it is the same
                self.previews[r["name"]] = shot
                out.append(
                    ("agent", {**r, "cells": pages.cells(r, shot), "alert": pages.is_alert(r)})
                )
        mail: list[dict[str, Any]] = []
        seen: set[str] = set()
        for ev in reversed(new):
            mid = ev.get("id")
            if ev.get("event") not in MAIL_EVENTS or not mid or mid in seen:
                continue
            seen.add(str(mid))
            if len(mail) >= MAIL_CAP:
                break
            row = self._mail_row(str(ev.get("agent") or ""), str(mid))
            if row is not None:
                mail.append(row)
        for ev in new[-EVENTS_CAP:]:
            out.append(("event", ev))
        for row in reversed(mail):
            out.append(("mail", row))
        return out

    def _mail_row(self, to: str, mid: str) -> dict[str, Any] | None:
        from cmux.mail import store
        from cmux.paths import valid_name

        if not valid_name(to):
            return None
        m = store.find(self.cfg.data, to, mid)
        return None if m is None else views.mail_row(m, self.trails.get(mid))


def _record(name: str) -> bool:
    """A registry record's file name (not a lock or a temporary file)."""
    return name.endswith(".json") and not name.startswith(".")


def _put(q: asyncio.Queue[Batch | None], batch: Batch | None) -> None:
    """On the subscriber's loop: queue ``batch``; a full queue drops its oldest."""
    while True:
        try:
            q.put_nowait(batch)
            return
        except asyncio.QueueFull:
            with contextlib.suppress(asyncio.QueueEmpty):
                q.get_nowait()
