"""The daemons' process manager: every child cmux keeps alive is a small
state machine, after supervisord's process states (docs/HEALTH.md, "What
keeps what alive").

::

    STOPPED --start--> RUNNING --its end seen--> EXITED  --at the next poll--> RUNNING
                                            \\-> BACKOFF --at next_start----> RUNNING
    any --stop_all--> STOPPED

- EXITED: it ended and is started again at once: a clean exit, an end by
  an outside signal (a kill, a SIGTERM, a closed terminal), or one of the
  first three failures of its own within a minute.
- BACKOFF: it keeps failing by itself (:func:`failed`), so it waits
  :func:`restart_delay` (0.5 s, doubling to 30 s) before the next start.

There is no STARTING: cmux has no "has it come up" test (no startsecs), a
child is RUNNING from the moment it is started. The rule is the one the
keeper applies to the monitor (cmux/keeper.py) and the monitor to its
daemons (:class:`Manager`, cmux/monitor.py). Everything that touches the
world is passed in (the clock, how a child is started, where events go), so
tests drive it with fake processes. This module imports only the standard
library: the keeper, which must not fail, imports it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol

# Ended by someone else, not by a fault of its own: started again at once.
OUTSIDE_SIGNALS = frozenset({signal.SIGHUP, signal.SIGINT, signal.SIGKILL, signal.SIGTERM})
WINDOW = 60.0  # seconds over which failures count towards back-off


def failed(returncode: int | None) -> bool:
    """Whether an exit counts towards back-off: the process gave up by itself
    (a non-zero code) or crashed (SIGSEGV, SIGABRT ...). A clean exit and an
    end by an outside signal (kill, SIGTERM, a closed terminal) do not."""
    if returncode is None or returncode == 0:
        return False
    if returncode < 0:
        return -returncode not in OUTSIDE_SIGNALS
    if returncode > 128:  # a shell's way of saying "ended by signal N"
        return returncode - 128 not in OUTSIDE_SIGNALS
    return True


def restart_delay(failures: list[float], now: float) -> float:
    """Seconds to wait before the next start, given the times of recent
    failures: none for the first three in a minute, then 0.5, 1, 2 ... 30 s."""
    n = sum(1 for t in failures if now - t < WINDOW)
    return 0.0 if n < 3 else min(30.0, 0.5 * 2 ** (n - 3))


class ProcessState(str, Enum):
    STOPPED = "stopped"  # not started yet, or stopped on purpose
    RUNNING = "running"  # started; its end not seen yet
    EXITED = "exited"  # ended; started again at the next look
    BACKOFF = "backoff"  # ended, failing by itself: started again at next_start


class Child(Protocol):
    """What a started process must offer (subprocess.Popen does)."""

    pid: int

    def poll(self) -> int | None: ...
    def wait(self, timeout: float | None = None) -> int: ...
    def terminate(self) -> None: ...
    def kill(self) -> None: ...


Starter = Callable[[Sequence[str]], Child]
EventSink = Callable[..., None]  # (event name, **fields)


@dataclass
class Process:
    """One supervised child: its argv, its state and its recent failures.

    Invariants: ``child`` is set exactly while RUNNING; ``failures`` holds
    the times of its own failures within the last ``WINDOW`` seconds (and
    the newest); ``next_start`` is when an EXITED or BACKOFF process is due.
    """

    name: str
    argv: list[str]
    state: ProcessState = ProcessState.STOPPED
    child: Child | None = None
    failures: list[float] = field(default_factory=list)
    next_start: float = 0.0
    last_code: int | None = None

    def due(self, now: float) -> bool:
        return self.state is not ProcessState.RUNNING and now >= self.next_start

    def start(self, starter: Starter, now: float) -> Child:
        self.child = starter(self.argv)
        self.state = ProcessState.RUNNING
        return self.child

    def ended(self, code: int | None, now: float) -> float:
        """Note its end; returns the seconds until it is due again."""
        self.child = None
        self.last_code = code
        if failed(code):
            self.failures = [t for t in self.failures if now - t < WINDOW] + [now]
        delay = restart_delay(self.failures, now)
        self.next_start = now + delay
        self.state = ProcessState.BACKOFF if delay > 0 else ProcessState.EXITED
        return delay


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec function that makes the child get SIGTERM when its parent
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
        if os.getppid() != parent:  # the parent died before that took effect
            os._exit(0)

    return preexec


def start_daemon(argv: Sequence[str]) -> Child:
    """A daemon with no terminal (stdin, stdout, stderr on /dev/null) that
    dies with the process that started it."""
    return subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=_die_with_parent(),
    )


def _no_events(event: str, **fields: Any) -> None:
    pass


class Manager:
    """Keeps a set of processes running: :meth:`poll` notices ends and starts
    what is due, one pass, never waiting. The caller decides when to look
    again (the monitor: once a second, and at once on a SIGCHLD).

    Events: ``daemon-died`` (daemon, code) when an end is seen,
    ``daemon-start`` (daemon, pid) at every start.
    """

    def __init__(
        self,
        processes: Sequence[Process],
        *,
        starter: Starter = start_daemon,
        clock: Callable[[], float] = time.time,
        record: EventSink = _no_events,
    ) -> None:
        self.processes = list(processes)
        self.starter = starter
        self.clock = clock
        self.record = record

    def poll(self) -> list[str]:
        """Note the ends, start what is due; returns the names started."""
        now = self.clock()
        started = []
        for p in self.processes:
            if p.child is not None:
                code = p.child.poll()
                if code is None:
                    continue
                self.record("daemon-died", daemon=p.name, code=code)
                p.ended(code, now)
            if p.due(now):
                child = p.start(self.starter, now)
                self.record("daemon-start", daemon=p.name, pid=child.pid)
                started.append(p.name)
        return started

    def any_ended(self) -> bool:
        """Whether a running child has ended since the last :meth:`poll`."""
        return any(p.child is not None and p.child.poll() is not None for p in self.processes)

    def states(self) -> dict[str, ProcessState]:
        return {p.name: p.state for p in self.processes}

    def stop_all(self, timeout: float = 3.0) -> None:
        """SIGTERM to every running child, then a SIGKILL to any still there
        after ``timeout`` seconds; every process is STOPPED after."""
        for p in self.processes:
            if p.child is not None and p.child.poll() is None:
                p.child.terminate()
        for p in self.processes:
            if p.child is not None:
                try:
                    p.child.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    p.child.kill()
            p.child = None
            p.state = ProcessState.STOPPED
