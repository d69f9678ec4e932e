"""The router daemon: delivers each message into its recipient's pane.

Event-driven: watchfiles (inotify) wakes it when a file lands in a mailbox's
new/ or an agent's registry record changes; every wake-up rescans the
mailboxes concerned, and start-up scans them all, so a missed event costs
nothing. Held mail is rechecked twice a second while anything is held;
otherwise the router sleeps in the kernel and costs no CPU.

One router per data root (an flock that dies with its holder, so a killed
router never leaves a stale lock). One pane at a time, each under its own
lock; different panes in parallel.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from cmux import events
from cmux.agents import registry
from cmux.agents.registry import Agent
from cmux.config import Config
from cmux.errors import CmuxError, SessionError, TmuxError, UnknownAgent
from cmux.fsutil import atomic_write, locked
from cmux.mail import store
from cmux.mail.deliver import render, type_into
from cmux.mail.message import Message
from cmux.paths import DEADLETTER, HUMAN
from cmux.tmux import Pane, Tmux

log = logging.getLogger(__name__)

DEFER = "defer"  # not held: the agent's Stop hook will take the mail
SETTLE = {"claude": 0.05}
FULL_SCAN = 30.0  # seconds between safety scans of every mailbox


class Router:
    def __init__(self, cfg: Config, tmux: Tmux, *, workers: int = 8) -> None:
        self.cfg = cfg
        self.data = cfg.data
        self.tmux = tmux
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="deliver")
        self._lock = threading.Lock()
        self._running: set[str] = set()
        self._dirty: set[str] = set()
        self.held: set[str] = set()
        self.stopping = threading.Event()

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

    def hold_reason(self, name: str, agent: Agent | None, pane: Pane | None) -> str | None:
        if agent is None:
            return "no such agent"
        if agent.state in ("exited", "killed"):
            return f"{name} has {agent.state}"
        if agent.state == "starting":
            return f"{name} is starting"
        if pane is None or pane.dead:
            return f"{name}'s pane is not there"
        if pane.in_mode:
            return f"{name}'s pane is in copy mode"
        if agent.state == "waiting":
            return f"{name} is waiting for a permission answer"
        dialog = self.dialog_on_screen(agent, pane)
        if dialog:
            return f"{name}'s pane shows {dialog}"
        if agent.profile == "claude" and agent.state == "busy":
            return DEFER
        return None

    def dialog_on_screen(self, agent: Agent, pane: Pane) -> str | None:
        try:
            from cmux.agents import screen
        except ImportError:
            return None
        if agent.profile not in ("claude",) and not getattr(screen, "CHECK_ALL", False):
            return None
        try:
            text = self.tmux.capture(pane.pane_id)
        except TmuxError:
            return None
        return screen.dialog(text)

    def deliver_agent(self, name: str) -> None:
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
        pane = self.tmux.pane(agent.pane_id) if agent.pane_id else None
        reason = self.hold_reason(name, agent, pane)
        if reason == DEFER:
            return
        if reason:
            self._hold(name, reason)
            return
        self._release(name)
        assert pane is not None
        for loaded in store.take(self.data, name):
            if not self.type_message(agent, pane, loaded.path, loaded.msg):
                return

    def type_message(self, agent: Agent, pane: Pane, path: Path, msg: Message) -> bool:
        text = render(msg, self.data)
        t0 = time.monotonic()
        try:
            typed = type_into(
                self.tmux,
                pane.pane_id,
                text,
                buffer=f"cmux-{msg.id}",
                settle=SETTLE.get(agent.profile, 0.0),
            )
        except TmuxError as exc:
            # The pane went away under us: put the message back, hold the rest.
            os.rename(path, path.parent.parent / "new" / path.name)
            self._hold(agent.name, f"typing failed: {exc.message}")
            return False
        store.mark_delivered(path)
        events.record(
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
        for fname in store.pending(self.data, name):
            path = store.claim(self.data, name, fname)
            if path is None:
                continue
            raw = path.read_bytes()
            store.deadletter(self.data, fname, raw, reason, original_to=name)
            path.unlink(missing_ok=True)
            notify(
                self.cfg,
                f"Message {fname} could not be delivered: {reason}. "
                f"It is in mailbox/deadletter/ with the reason beside it.",
            )

    # -- the loop ---------------------------------------------------------------

    def recover(self) -> None:
        """At start: claimed but never delivered goes back to new/."""
        for name in self.boxes():
            store.unclaim_all(self.data, name)

    def scan_all(self) -> None:
        self.schedule(self.boxes())

    def names_from_changes(self, changes: Iterable[tuple[object, str]]) -> set[str]:
        names: set[str] = set()
        mroot = str(self.data.mailbox_dir) + os.sep
        aroot = str(self.data.agents_dir) + os.sep
        for _, path in changes:
            if path.startswith(mroot):
                parts = path[len(mroot) :].split(os.sep)
                if len(parts) >= 2 and parts[1] == "new":
                    names.add(parts[0])
            elif path.startswith(aroot):
                base = os.path.basename(path)
                if base.endswith(".json") and not base.startswith("."):
                    names.add(base[:-5])
        return {n for n in names if n not in (HUMAN, DEADLETTER)}

    def run(self) -> None:
        import watchfiles

        self.data.agents_dir.mkdir(parents=True, exist_ok=True)
        self.data.mailbox_dir.mkdir(parents=True, exist_ok=True)
        self.recover()
        self.scan_all()
        last_full = time.monotonic()
        for changes in watchfiles.watch(
            self.data.mailbox_dir,
            self.data.agents_dir,
            watch_filter=None,
            debounce=100,
            step=1,
            rust_timeout=500,
            yield_on_timeout=True,
            stop_event=self.stopping,
            raise_interrupt=False,
        ):
            if self.stopping.is_set():
                break
            now = time.monotonic()
            if now - last_full >= FULL_SCAN:
                self.scan_all()
                last_full = now
            elif changes:
                # A registry change may release held mail, so held boxes too.
                self.schedule(self.names_from_changes(changes) | self.held_names())
            else:
                self.schedule(self.held_names())
        self.pool.shutdown(wait=True)


def notify(cfg: Config, text: str) -> None:
    """Tell the person (and the supervisor's mailbox when it exists)."""
    try:
        store.send(cfg, to=HUMAN, body=text, sender="cmux", kind="notice")
    except CmuxError:
        log.exception("could not notify the human")


def run(cfg: Config) -> None:
    """Entry point of `cmux router`: one instance per data root."""
    import signal

    from cmux.agents.lifecycle import tmux_for

    cfg.data.run_dir.mkdir(parents=True, exist_ok=True)
    with locked(cfg.data.run_dir / "router.lock", blocking=False) as got:
        if not got:
            pid = (
                (cfg.data.run_dir / "router.pid").read_text().strip()
                if (cfg.data.run_dir / "router.pid").exists()
                else "?"
            )
            raise SessionError(f"a router is already running for {cfg.data.root} (pid {pid})")
        atomic_write(cfg.data.run_dir / "router.pid", f"{os.getpid()}\n")
        router = Router(cfg, tmux_for(cfg))
        signal.signal(signal.SIGTERM, lambda *_: router.stopping.set())
        events.record(cfg.data, "router-start", pid=os.getpid())
        try:
            router.run()
        finally:
            events.record(cfg.data, "router-stop", pid=os.getpid())
