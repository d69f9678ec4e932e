"""The `monitor` window: cmux's daemons, kept alive, and a live status.

The monitor starts each daemon (the router; the health monitor when
[health] is configured) as a child process and starts it again as soon as it
dies (SIGCHLD wakes the loop), with back-off only when it keeps failing by
itself (keeper.failed). Its daemons die with it (PR_SET_PDEATHSIG on Linux),
and a new monitor first ends, by their verified pid files, any an old one
left. The monitor itself is the child of cmux.keeper, which starts it again.
Between those checks it runs the watchdogs and redraws the status when
something changed. It never polls faster than once a second, so idle it
costs next to nothing: the registry is read again only when a record in it
changed (one directory listing per tick tells), and shared by everything the
tick runs.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType

from cmux import events, pidfile
from cmux.agents import registry
from cmux.agents.registry import Agent
from cmux.config import Config
from cmux.keeper import failed, restart_delay
from cmux.tmux import Tmux

log = logging.getLogger(__name__)

TICK = 1.0


@dataclass
class Daemon:
    name: str
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None
    restarts: list[float] = field(default_factory=list)
    next_start: float = 0.0

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, now: float) -> None:
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent(),
        )

    def died(self, code: int | None, now: float) -> None:
        """Note an end; ``restarts`` keeps the failures of the last minute."""
        if failed(code):
            self.restarts = [t for t in self.restarts if now - t < 60] + [now]

    def backoff(self, now: float) -> float:
        return restart_delay(self.restarts, now)


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec function that makes the child get SIGTERM when the monitor
    dies (Linux's PR_SET_PDEATHSIG), so no daemon outlives it unsupervised."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the monitor died before that took effect
            os._exit(0)

    return preexec


def daemons_for(cfg: Config) -> list[Daemon]:
    from cmux.agents.server import cmux_argv

    out = [Daemon("router", cmux_argv("router"))]
    if cfg.section("health").get("checks"):
        out.append(Daemon("health", cmux_argv("health", "--daemon")))
    return out


def supervise(cfg: Config, daemons: list[Daemon], now: float) -> list[str]:
    """Start what is not running (respecting back-off); returns what was started."""
    started = []
    for d in daemons:
        if d.alive():
            continue
        if d.proc is not None:
            code = d.proc.returncode
            events.record(cfg.data, "daemon-died", daemon=d.name, code=code)
            d.proc = None
            d.died(code, now)
            d.next_start = now + d.backoff(now)
        if now >= d.next_start:
            d.start(now)
            events.record(
                cfg.data, "daemon-start", daemon=d.name, pid=d.proc.pid if d.proc else None
            )
            started.append(d.name)
    return started


def _watchdog_tick() -> Callable[[Config, float], None] | None:
    try:
        from cmux.health.watchdog import tick
    except ImportError:
        return None
    return tick


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


def _screen_watch() -> Callable[[Config, Tmux, list[Agent]], object] | None:
    """The screen-reading fallback (dialogs before hooks, hook-less agents)."""
    try:
        from cmux.agents.screen import watch
    except ImportError:
        return None
    return watch


DAEMON_PIDS = ("router.pid", "health.pid")  # in state/run/, written by the daemons


def end_leftovers(cfg: Config) -> list[str]:
    """End daemons an earlier monitor left running (verified by their pid
    files: never a process that merely got the same pid)."""
    return [n for n in DAEMON_PIDS if pidfile.stop(cfg.data.run_dir / n)]


def run(cfg: Config) -> None:
    """The monitor's main loop (until SIGTERM/SIGHUP or the session ends).

    A SIGTERM ends the loop cleanly (the daemons first); the keeper, whose
    child the monitor is, starts it again: `cmux stop` is the way to stop.
    """
    from cmux.agents import deaths

    logging.basicConfig(
        filename=str(cfg.data.state_dir / "monitor.log"),
        level=logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        force=True,
    )
    pid_path = cfg.data.run_dir / "monitor.pid"
    pidfile.write(pid_path)
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
    daemons = daemons_for(cfg)
    watchdog = _watchdog_tick()
    screens = _screen_watch()
    tmux = Tmux.for_config(cfg)
    agents = AgentList(cfg)
    view = StatusView(cfg, agents)
    last_reconcile = 0.0
    try:
        while not stopping:
            now = time.time()
            supervise(cfg, daemons, now)
            if now - last_reconcile >= 10:
                try:
                    deaths.reconcile(cfg, inside=True)
                except Exception:
                    log.exception("reconcile failed")
                last_reconcile = now
            if screens is not None:
                try:
                    screens(cfg, tmux, agents.get())
                except Exception:
                    log.exception("reading the screens failed")
            if watchdog is not None:
                try:
                    watchdog(cfg, now)
                except Exception:
                    log.exception("watchdog failed")
            view.refresh(now)
            _wait(wake_r, daemons, lambda: stopping, now + TICK)
    finally:
        signal.set_wakeup_fd(-1)
        for d in daemons:
            if d.alive() and d.proc:
                d.proc.terminate()
        for d in daemons:
            if d.proc:
                try:
                    d.proc.wait(timeout=3)
                except subprocess.TimeoutExpired:
                    d.proc.kill()
        pidfile.remove(pid_path)


def _wait(wake_r: int, daemons: list[Daemon], stopping: Callable[[], bool], until: float) -> None:
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
        died = any(d.proc is not None and d.proc.poll() is not None for d in daemons)
        if stopping() or left <= 0 or died:
            return
        select.select([wake_r], [], [], left)


class StatusView:
    """Redraws the status table when the registry or the mail changed."""

    def __init__(self, cfg: Config, agents: AgentList | None = None) -> None:
        self.cfg = cfg
        self.agents = agents or AgentList(cfg)
        self.sig: tuple[object, ...] = ()
        self.drawn = 0.0
        self.tty = sys.stdout.isatty()

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
        return tuple(parts)

    def refresh(self, now: float) -> None:
        if not self.tty:
            return
        sig = self.signature()
        if sig == self.sig and now - self.drawn < 30:
            return
        self.sig, self.drawn = sig, now
        from cmux import ui
        from cmux.cli.agents import collect_status, status_header

        console = ui.console()
        console.clear()
        header = status_header(self.cfg)
        human = header.count("for you")
        console.print(header, style="bold" if not human else "bold yellow")
        console.print(ui.status_table(collect_status(self.cfg, reconcile=False)))
        console.print(
            "this window runs cmux's daemons; leave it open. "
            "`cmux send NAME text` to talk to an agent, `cmux inbox` for your mail.",
            style="dim",
        )
        if human:
            sys.stdout.write("\a")
            sys.stdout.flush()
