"""The `monitor` window: cmux's daemons, kept alive, and a live status.

The monitor starts each daemon (the router; the merger of the merge queue
in a git repository; the health monitor when [health] is configured; the
web dashboard unless [dashboard] enabled = false, the
node daemon, the bridge to NATS, when [cluster] is: docs/CLUSTER.md) as a
child process and starts it again as soon as it
dies (SIGCHLD wakes the loop), with back-off only when it keeps failing by
itself: cmux/daemons.py's process manager, the rule the keeper applies to the
monitor too. Its daemons die with it (PR_SET_PDEATHSIG on Linux), and a new
monitor first ends, by their verified pid files, any an old one left. The
monitor itself is the child of cmux.keeper, which starts it again.
Each tick, after the daemons, it reconciles the registry with tmux (every
10 s), reads the screens of hook-less agents, runs the watchdogs
(cmux/health/watchdog.py: agents, not processes, so they live with the
health policy they apply) and redraws the status when something changed.
It never polls faster than once a second, so idle it costs next to nothing:
the registry is read again only when a record in it changed (one directory
listing per tick tells), and shared by everything the tick runs.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import sys
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from cmux import events, pidfile
from cmux.agents import registry
from cmux.agents.registry import Agent
from cmux.config import Config
from cmux.daemons import Manager, Process
from cmux.tmux import Tmux

# Draws the status screen: (header, rows). The front end gives it
# (cmux/cli/session.py, cmux/ui.py): the monitor prints nothing itself.
Draw = Callable[[str, list[dict[str, Any]]], None]

log = logging.getLogger(__name__)

TICK = 1.0


def daemons_for(cfg: Config) -> list[Process]:
    from cmux.agents.server import cmux_argv

    out = [Process("router", cmux_argv("router"))]
    if (cfg.project_root / ".git").exists():  # the merge queue needs a repository
        out.append(Process("merger", cmux_argv("merger")))
    if cfg.section("health").get("checks"):
        out.append(Process("health", cmux_argv("health", "--daemon")))
    if cfg.section("dashboard").get("enabled", True):  # the web dashboard (docs/DASHBOARD.md)
        out.append(Process("dashboard", cmux_argv("dashboard")))
    if cfg.section("cluster").get("nats"):  # this host's bridge to NATS (docs/CLUSTER.md)
        out.append(Process("node", cmux_argv("node")))
    return out


def manager_for(cfg: Config) -> Manager:
    """The monitor's daemons, started quietly, their starts and ends in the event log."""

    def record(event: str, **fields: Any) -> None:
        events.record(cfg.data, event, **fields)

    return Manager(daemons_for(cfg), record=record)


class AgentList:
    """The registry, read again only when one of its records changed.

    Every change to a record replaces its file (a write beside it and a
    rename), so the names, inode numbers and mtimes of state/agents/*.json
    (one directory listing and a stat each) tell whether anything did.
    """

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.sig: tuple[tuple[str, int, int], ...] | None = None
        self.agents: list[Agent] = []

    def signature(self) -> tuple[tuple[str, int, int], ...]:
        try:
            with os.scandir(self.cfg.data.agents_dir) as it:
                return tuple(
                    sorted(
                        (e.name, e.inode(), e.stat().st_mtime_ns)
                        for e in it
                        if e.name.endswith(".json") and not e.name.startswith(".")
                    )
                )
        except FileNotFoundError:
            return ()

    def get(self) -> list[Agent]:
        sig = self.signature()
        if sig != self.sig:
            self.agents = registry.list_agents(self.cfg.data)
            self.sig = sig
        return self.agents


# In state/run/, written by the daemons.
DAEMON_PIDS = ("router.pid", "merger.pid", "health.pid", "dashboard.pid", "node.pid")


def end_leftovers(cfg: Config) -> list[str]:
    """End daemons an earlier monitor left running (verified by their pid
    files: never a process that merely got the same pid)."""
    return [n for n in DAEMON_PIDS if pidfile.stop(cfg.data.run_dir / n)]


def run(cfg: Config, draw: Draw | None = None) -> None:
    """The monitor's main loop (until SIGTERM/SIGHUP or the session ends).

    A SIGTERM ends the loop cleanly (the daemons first); the keeper, whose
    child the monitor is, starts it again: `cmux stop` is the way to stop.
    ``draw`` shows the status in the window (none: nothing is drawn).
    """
    from cmux.agents import deaths
    from cmux.agents.screen import watch as screens
    from cmux.health.watchdog import tick as watchdog

    logging.basicConfig(
        filename=str(cfg.data.state_dir / "monitor.log"),
        level=logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        force=True,
    )
    pid_path = cfg.data.run_dir / "monitor.pid"
    stopping = False
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    # A daemon's death (or a stop signal) wakes the loop at once.
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    left = end_leftovers(cfg)
    if left:
        log.info("ended daemons an earlier monitor left: %s", ", ".join(left))
    daemons = manager_for(cfg)
    tmux = Tmux.for_config(cfg)
    agents = AgentList(cfg)
    view = StatusView(cfg, agents, draw)
    last_reconcile = 0.0
    team = None  # the other hosts, for the watchdogs ([cluster] nats only: not even the import)
    if cfg.section("cluster").get("nats"):
        from cmux.cluster.feed import TeamFeed

        team = view.team = TeamFeed(cfg).start()
    # The pid file after the signal handlers, inside the `finally` that
    # removes it: no stop signal can leave it behind.
    try:
        pidfile.write(pid_path)
        while not stopping:
            now = time.time()
            daemons.poll()
            if now - last_reconcile >= 10:
                try:
                    deaths.reconcile(cfg, inside=True)
                except Exception:
                    log.exception("reconcile failed")
                last_reconcile = now
            try:
                screens(cfg, tmux, agents.get())
            except Exception:
                log.exception("reading the screens failed")
            try:
                watchdog(cfg, now, team=team)
            except Exception:
                log.exception("watchdog failed")
            view.refresh(now)
            _wait(wake_r, daemons, lambda: stopping, now + TICK)
    finally:
        signal.set_wakeup_fd(-1)
        if team is not None:
            team.stop()
        daemons.stop_all(timeout=3)
        pidfile.remove(pid_path)


def _wait(wake_r: int, daemons: Manager, stopping: Callable[[], bool], until: float) -> None:
    """Sleep until ``until``, a daemon's death or a stop signal, whichever is first.

    Every signal writes a byte to ``wake_r`` (signal.set_wakeup_fd); the SIGCHLDs
    of this tick's own tmux calls are drained first and ignored, so the loop
    never spins on them.
    """
    while True:
        try:
            while os.read(wake_r, 512):
                pass
        except BlockingIOError:
            pass
        left = until - time.time()
        died = daemons.any_ended()
        if stopping() or left <= 0 or died:
            return
        select.select([wake_r], [], [], left)


class StatusView:
    """Redraws the status table when the registry or the mail changed, or,
    with a ``team`` (cmux/cluster/feed.py), another host's agent."""

    def __init__(
        self, cfg: Config, agents: AgentList | None = None, draw: Draw | None = None
    ) -> None:
        self.cfg = cfg
        self.agents = agents or AgentList(cfg)
        self.draw = draw
        self.sig: tuple[object, ...] = ()
        self.drawn = 0.0
        self.tty = sys.stdout.isatty()
        self.team: Any = None  # the other hosts ([cluster] nats): a TeamFeed

    def signature(self) -> tuple[object, ...]:
        d = self.cfg.data
        parts: list[object] = []
        for p in (d.agents_dir, d.mailbox("human") / "new", d.state_dir):
            try:
                parts.append(p.stat().st_mtime_ns)
            except FileNotFoundError:
                parts.append(0)
        self.agents.get()  # the registry as of now: its signature, read if it changed
        parts.append(self.agents.sig)
        parts.append(self.team.revision if self.team is not None else 0)
        return tuple(parts)

    def refresh(self, now: float) -> None:
        if not self.tty or self.draw is None:
            return
        sig = self.signature()
        if sig == self.sig and now - self.drawn < 30:
            return
        self.sig, self.drawn = sig, now
        from cmux.status import cluster_warning, collect_team, status_header

        feed = self.team if self.team is not None and self.team.connected else None
        rows, problem = collect_team(
            self.cfg, reconcile=False, team=feed.agents if feed is not None else None
        )
        header = status_header(self.cfg)
        if problem:  # NATS did not answer: say the other hosts' agents are missing
            header += "\n" + cluster_warning(self.cfg, problem)[0]
        self.draw(header, rows)


def pane_died(cfg: Config, pane_id: str, status: str = "", server: str = "") -> None:
    """tmux's pane-died hook (``cmux _pane-died PANE STATUS SERVER``): an
    agent's pane records that agent's death (deaths.pane_died); a pane of
    no agent may be the monitor's, which is started again if it is dead
    (deaths.mend_monitor).

    SERVER is the identity of the tmux server that ran the hook: when the
    pane now on the live server is from another one, that server is gone and
    the id names another pane, so nothing is done. A pane killed by a signal
    has no status; its exit code is then 128 + the signal, as a shell says it.
    """
    from cmux.agents import deaths

    tmux = Tmux.for_config(cfg)
    code = int(status) if status.strip().lstrip("-").isdigit() else None
    pane = tmux.pane(pane_id)
    if pane is not None and server and pane.server != server:
        return  # that server is gone; this pane id is another pane now
    if code is None and pane is not None and pane.dead_signal is not None:
        code = 128 + pane.dead_signal  # killed by a signal: tmux keeps that apart
    agent = deaths.pane_died(cfg, pane_id, code, server or None)
    if agent is None and pane is not None:
        # The monitor never stays dead; a pause keeps a crash from spinning.
        deaths.mend_monitor(cfg, tmux, [pane], delay=2)
