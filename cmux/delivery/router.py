"""The router daemon: delivers each message into its recipient's pane.

One message's way: ``store.send`` links it into new/; the watcher
(cmux/watch.py) wakes the router; the recipient's worker asks the policy
(``policy.decide``: deliver, defer to the Stop hook, or hold), then claims
each message (``claims.claim_each``), renders it (cmux/mail/render.py), types
it (cmux/delivery/typist.py) and marks it delivered (``claims.mark_delivered``).

Event-driven: the watcher wakes it when a file lands in a mailbox's new/ or
an agent's registry record changes; every wake-up rescans the mailboxes
concerned, and start-up scans them all (and again every 30 s), so a missed
event costs nothing. Held mail is rechecked twice a second while anything is
held; otherwise the router sleeps in the kernel and costs no CPU.

It types through one persistent tmux control-mode client (``Tmux.open_control``),
not a tmux process per command: a delivery costs two tmux round trips of
~0.1 ms instead of three forks of ~3 ms.

One router per data root (an flock that dies with its holder, so a killed
router never leaves a stale lock). One pane at a time, each under its own
lock; different panes in parallel.
"""

from __future__ import annotations

import logging
import os
import select
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

from cmux import events, watch
from cmux.agents import registry, screen
from cmux.agents.adapters import base as adapters
from cmux.agents.adapters import capabilities
from cmux.agents.registry import Agent
from cmux.config import Config
from cmux.delivery import policy
from cmux.delivery.typist import type_into
from cmux.errors import CmuxError, SessionError, TmuxError, UnknownAgent
from cmux.fsutil import locked
from cmux.mail import claims, maildir, store
from cmux.mail.deadletter import quarantine
from cmux.mail.message import Message
from cmux.mail.render import render
from cmux.paths import DEADLETTER, HUMAN
from cmux.tmux import Pane, Tmux

log = logging.getLogger(__name__)

FULL_SCAN = 30.0  # seconds between safety scans of every mailbox
HELD_RECHECK = 0.5  # seconds between looks at held mail while any is held
COALESCE = 0.001  # after a wake-up, gather what else lands within this time
# Claude Code runs its SessionStart hook (-> idle) before it draws its input
# box, most visibly while a resumed conversation loads: keys typed then are
# lost. For this long after an incarnation starts, a Claude pane that shows no
# input box yet is held; past it, the screen is not waited on any more.
INPUT_BOX_GRACE = 30.0


class Router:
    def __init__(self, cfg: Config, tmux: Tmux, *, workers: int = 8) -> None:
        self.cfg = cfg
        self.data = cfg.data
        self.tmux = tmux
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="deliver")
        self._lock = threading.Lock()
        self._running: set[str] = set()
        self._dirty: set[str] = set()
        self._requeue: set[str] = set()  # boxes whose stale claims to put back
        self.held: set[str] = set()
        self._arrivals: dict[str, str] = {}  # a watched new/ -> its box
        self.stopping = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)

    def stop(self) -> None:
        """Ask the loop to end (safe from a signal handler)."""
        self.stopping.set()
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass

    # -- scheduling ------------------------------------------------------------

    def boxes(self) -> list[str]:
        return [n for n in store.recipients(self.data) if n not in (HUMAN, DEADLETTER)]

    def schedule(self, names: Iterable[str]) -> None:
        for name in names:
            with self._lock:
                if name in self._running:
                    self._dirty.add(name)
                    continue
                self._running.add(name)
            self.pool.submit(self._work, name)

    def _work(self, name: str) -> None:
        while True:
            try:
                with self._lock:
                    stale = name in self._requeue
                    self._requeue.discard(name)
                if stale:
                    # In this box's own worker, so never one of our claims in flight.
                    claims.unclaim_all(self.data, name, older_than=claims.STALE_CLAIM)
                self.deliver_agent(name)
            except Exception:
                log.exception("delivering to %s failed", name)
            with self._lock:
                if name in self._dirty and not self.stopping.is_set():
                    self._dirty.discard(name)
                    continue
                self._running.discard(name)
                return

    def _hold(self, name: str, reason: str) -> None:
        with self._lock:
            self.held.add(name)
        store.set_hold(self.data, name, reason)

    def _release(self, name: str) -> None:
        with self._lock:
            was = name in self.held
            self.held.discard(name)
        if was or store.hold_reason(self.data, name):
            store.set_hold(self.data, name, None)

    def held_names(self) -> set[str]:
        with self._lock:
            return set(self.held)

    def idle(self) -> bool:
        with self._lock:
            return not self._running

    # -- one recipient ---------------------------------------------------------

    def dialog_on_screen(self, pane: Pane, agent: Agent | None = None) -> str | None:
        """What the pane's screen shows that would take typed keys as an answer
        (or lose them: no input box yet, early in ``agent``'s incarnation)."""
        try:
            text = self.tmux.capture(pane.pane_id)
        except TmuxError:
            return None
        adapter = adapters.for_agent(agent) if agent is not None else None
        reading = adapter.read_screen(text) if adapter else screen.classify(text)
        if reading.dialog:
            return adapter.describe(reading) if adapter else screen.DESCRIPTION.get(reading.screen)
        early = agent is not None and time.time() - agent.created < INPUT_BOX_GRACE
        return "no input box yet" if early and reading.screen == screen.Screen.UNKNOWN else None

    def _typed_where(self, pane: Pane, agent: Agent) -> Callable[[str], str]:
        adapter = adapters.for_agent(agent)

        def where(tail: str) -> str:
            try:
                return adapter.typed_where(self.tmux.capture(pane.pane_id), tail)
            except TmuxError:
                return "sent"  # the pane is gone: nothing more to watch

        return where

    def deliver_agent(self, name: str) -> None:
        if maildir.remote_host(self.data, name):
            return  # the agent lives on another host: the node daemon's spool (docs/CLUSTER.md)
        if not store.pending(self.data, name):
            self._release(name)
            return
        try:
            agent: Agent | None = registry.get(self.data, name)
        except UnknownAgent:
            agent = None
        if agent is None:
            self.deadletter_box(name, f"unknown recipient {name!r}: no agent of that name")
            return
        if agent.host:
            return  # it lives on another host: its mail waits here, the spool its node sends
        pane = self.tmux.pane(agent.pane_id) if agent.pane_id else None
        decision = policy.decide(
            agent, pane, lambda: self.dialog_on_screen(pane, agent) if pane else None
        )
        if isinstance(decision, policy.Defer):
            return
        if isinstance(decision, policy.Hold):
            self._hold(name, decision.reason)
            return
        self._release(name)
        assert pane is not None
        for loaded in claims.claim_each(self.data, name):
            if not self.type_message(agent, pane, loaded.path, loaded.msg):
                return

    def type_message(self, agent: Agent, pane: Pane, path: str, msg: Message) -> bool:
        """Type one claimed message; True when delivered. On any failure the
        message leaves cur/ at once: back to new/ (to retry) or, if it is
        the message itself that cannot be rendered, to deadletter."""
        try:
            text = render(msg, self.data, agent.profile)
        except (ValueError, UnicodeError) as exc:
            quarantine(self.data, agent.name, path, f"cannot be rendered: {exc}")
            return True
        except (CmuxError, OSError) as exc:
            # e.g. a full disk while writing a large body's file: retry later.
            claims.requeue(self.data, agent.name, path)
            self._hold(agent.name, f"delivery failed: {getattr(exc, 'message', exc)}")
            return False
        t0 = time.monotonic()
        boxed = capabilities.for_agent(agent).screen_checked
        try:
            typed = type_into(
                self.tmux,
                pane.pane_id,
                text,
                buffer=f"cmux-{msg.id}",
                settle=capabilities.for_agent(agent).settle,  # between text and Enter
                probe=self._typed_where(pane, agent) if boxed else None,
                after_redraw=capabilities.for_agent(agent).reenter_after_redraw,
            )
        except TmuxError as exc:
            # The pane went away under us: put the message back, hold the rest.
            claims.requeue(self.data, agent.name, path)
            self._hold(agent.name, f"typing failed: {exc.message}")
            return False
        except (ValueError, UnicodeError) as exc:
            quarantine(self.data, agent.name, path, f"cannot be typed: {exc}")
            return True
        except BaseException:
            claims.requeue(self.data, agent.name, path)
            raise
        try:
            claims.mark_delivered(path)
        except OSError:
            pass  # still in cur/ unmarked: delivered again later (at least once)
        maildir.note(
            self.data,
            "deliver",
            agent.name,
            id=msg.id,
            sender=msg.sender,
            kind=msg.kind,
            via=typed.via,
            retries=typed.enter_retries or None,
            ms=round((time.monotonic() - t0) * 1000, 1),
        )
        return True

    def deadletter_box(self, name: str, reason: str) -> None:
        for fname in claims.deadletter_all(self.data, name, reason):
            notify(
                self.cfg,
                f"Message {fname} could not be delivered: {reason}. "
                f"It is in mailbox/deadletter/ with the reason beside it.",
            )

    # -- the loop ---------------------------------------------------------------

    def recover(self) -> None:
        """At start: claimed but never delivered goes back to new/."""
        for name in self.boxes():
            claims.unclaim_all(self.data, name)

    def scan_all(self) -> None:
        """Every box, and in each put back claims that nobody finished."""
        names = self.boxes()
        with self._lock:
            self._requeue.update(names)
        self.schedule(names)
        claims.unclaim_all(self.data, HUMAN, older_than=claims.STALE_CLAIM)

    def run(self) -> None:
        self.data.agents_dir.mkdir(parents=True, exist_ok=True)
        self.data.mailbox_dir.mkdir(parents=True, exist_ok=True)
        self.recover()
        watcher = watch.open_watcher()
        self.tmux.open_control(self.cfg.session_name)
        try:
            self._loop(watcher)
        finally:
            self.pool.shutdown(wait=True)
            self.tmux.close_control()
            watcher.close()

    def _watch_all(self, watcher: watch.Watcher) -> set[str]:
        """Watch the mailbox root, the registry, every mailbox (for a new/
        made later) and its new/; returns the boxes whose new/ was not
        watched before."""
        watcher.add(self.data.mailbox_dir, "dirs")
        watcher.add(self.data.agents_dir, "files")
        added = set()
        for name in maildir.box_names(self.data):
            if name == HUMAN:
                continue
            watcher.add(maildir.box(self.data, name), "dirs")
            new = maildir.new_dir(self.data, name)
            if watcher.add(new, "files"):
                self._arrivals[str(new)] = name
                added.add(name)
        return added

    def _changed(self, watcher: watch.Watcher) -> set[str]:
        """The boxes concerned by what the watcher reports now: mail landed in
        their new/, or their agent's registry record changed."""
        names: set[str] = set()
        rescan = False
        agents = str(self.data.agents_dir)
        for ev in watcher.read():
            if ev.overflow:
                rescan = True
            elif ev.folder == agents:
                if ev.name.endswith(".json") and not ev.name.startswith("."):
                    names.add(ev.name[:-5])
            elif ev.folder in self._arrivals:
                names.add(self._arrivals[ev.folder])
            else:
                rescan = True  # a new mailbox, or a new/ inside one
        if rescan:
            names |= self._watch_all(watcher)
        return names - {HUMAN, DEADLETTER}

    def _loop(self, watcher: watch.Watcher) -> None:
        self._watch_all(watcher)
        self.scan_all()
        last_full = time.monotonic()
        poller = select.poll()
        poller.register(watcher.fileno(), select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        while not self.stopping.is_set():
            now = time.monotonic()
            wait = max(0.0, last_full + FULL_SCAN - now)
            if self.held_names():
                wait = min(wait, HELD_RECHECK)
            ready = poller.poll(wait * 1000)
            if self.stopping.is_set():
                break
            names: set[str] = set()
            if ready:
                time.sleep(COALESCE)  # a burst of sends wakes us once, not per file
                names = self._changed(watcher)
            now = time.monotonic()
            if now - last_full >= FULL_SCAN:
                self._watch_all(watcher)  # (again, if the folders were replaced)
                self.scan_all()
                last_full = now
                continue
            # A registry change may release held mail, so held boxes too.
            self.schedule(names | self.held_names())


def notify(cfg: Config, text: str) -> None:
    """Tell the person (and the supervisor's mailbox when it exists)."""
    try:
        store.send(cfg, to=HUMAN, body=text, sender="cmux", kind="notice")
    except CmuxError:
        log.exception("could not notify the human")


def run(cfg: Config) -> None:
    """Entry point of `cmux router`: one instance per data root."""
    import signal

    from cmux import pidfile

    cfg.data.run_dir.mkdir(parents=True, exist_ok=True)
    with locked(cfg.data.run_dir / "router.lock", blocking=False) as got:
        if not got:
            pid = (
                (cfg.data.run_dir / "router.pid").read_text().strip()
                if (cfg.data.run_dir / "router.pid").exists()
                else "?"
            )
            raise SessionError(f"a router is already running for {cfg.data.root} (pid {pid})")
        router = Router(cfg, Tmux.for_config(cfg))
        # The handlers before the pid file: a SIGTERM that comes earlier ends
        # the process with nothing written; any later one goes through the
        # `finally` that removes the file.
        signal.signal(signal.SIGTERM, lambda *_: router.stop())
        signal.signal(signal.SIGHUP, lambda *_: router.stop())
        try:
            pidfile.write(cfg.data.run_dir / "router.pid")
            events.record(cfg.data, "router-start", pid=os.getpid())
            router.run()
        finally:
            pidfile.remove(cfg.data.run_dir / "router.pid")
            events.record(cfg.data, "router-stop", pid=os.getpid())
