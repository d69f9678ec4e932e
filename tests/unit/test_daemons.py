"""The daemons' process manager as a state machine, driven by fake
processes and a fake clock: no process is started."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cmux.daemons import Manager, Process, ProcessState


@dataclass
class FakeChild:
    pid: int
    code: int | None = None  # None: still running
    stubborn: bool = False  # ignores SIGTERM
    signals: list[str] = field(default_factory=list)

    def poll(self) -> int | None:
        return self.code

    def wait(self, timeout: float | None = None) -> int:
        if self.code is None:
            raise subprocess.TimeoutExpired("fake", timeout or 0)
        return self.code

    def terminate(self) -> None:
        self.signals.append("TERM")
        if not self.stubborn:
            self.code = -signal.SIGTERM

    def kill(self) -> None:
        self.signals.append("KILL")
        self.code = -signal.SIGKILL


class World:
    def __init__(self, *names: str) -> None:
        self.now = 1000.0
        self.children: list[FakeChild] = []
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.manager = Manager(
            [Process(n, [n]) for n in names],
            starter=self.start,
            clock=lambda: self.now,
            record=lambda event, **fields: self.events.append((event, fields)),
        )

    def start(self, argv: Sequence[str]) -> FakeChild:
        child = FakeChild(pid=100 + len(self.children))
        self.children.append(child)
        return child

    def state(self, name: str = "router") -> ProcessState:
        return self.manager.states()[name]

    def end(self, code: int) -> None:
        """The newest child ends with ``code``."""
        self.children[-1].code = code

    def names(self) -> list[str]:
        return [e for e, _ in self.events]


def test_a_first_poll_starts_every_process() -> None:
    w = World("router", "health")
    assert w.state("router") is ProcessState.STOPPED
    assert w.manager.poll() == ["router", "health"]
    assert w.manager.states() == {"router": ProcessState.RUNNING, "health": ProcessState.RUNNING}
    assert w.events == [
        ("daemon-start", {"daemon": "router", "pid": 100}),
        ("daemon-start", {"daemon": "health", "pid": 101}),
    ]
    assert w.manager.poll() == []  # running: nothing to do
    assert not w.manager.any_ended()


def test_an_outside_kill_restarts_at_once_however_often() -> None:
    w = World("router")
    w.manager.poll()
    for _ in range(10):
        w.end(-signal.SIGKILL)
        assert w.manager.any_ended()
        assert w.manager.poll() == ["router"]  # no back-off
        assert w.state() is ProcessState.RUNNING
    assert w.names().count("daemon-died") == 10
    assert ("daemon-died", {"daemon": "router", "code": -signal.SIGKILL}) in w.events


def test_a_clean_exit_is_restarted_at_once() -> None:
    w = World("router")
    w.manager.poll()
    w.end(0)
    assert w.manager.poll() == ["router"]


def test_failures_of_its_own_back_off_after_three_a_minute() -> None:
    w = World("router")
    w.manager.poll()
    for _ in range(2):  # the first failures: at once
        w.end(1)
        assert w.manager.poll() == ["router"]
    w.end(1)  # the third within a minute: 0.5 s
    assert w.manager.poll() == []
    assert w.state() is ProcessState.BACKOFF
    assert w.manager.processes[0].last_code == 1
    w.now += 0.4
    assert w.manager.poll() == []
    w.now += 0.1
    assert w.manager.poll() == ["router"] and w.state() is ProcessState.RUNNING
    w.end(-signal.SIGSEGV)  # a crash is its own failure too: the fourth, 1 s
    w.manager.poll()
    assert w.state() is ProcessState.BACKOFF
    assert w.manager.processes[0].next_start == w.now + 1.0


def test_old_failures_are_forgiven() -> None:
    w = World("router")
    w.manager.poll()
    for _ in range(2):
        w.end(1)
        w.manager.poll()
    w.now += 61
    w.end(1)
    assert w.manager.poll() == ["router"]  # one failure in the last minute


def test_stop_all_terminates_then_kills_what_stays() -> None:
    w = World("router", "health")
    w.manager.poll()
    w.children[1].stubborn = True
    w.manager.stop_all(timeout=0)
    assert w.children[0].signals == ["TERM"]
    assert w.children[1].signals == ["TERM", "KILL"]
    assert set(w.manager.states().values()) == {ProcessState.STOPPED}
    assert "daemon-died" not in w.names()  # a stop is not a death to report


def test_an_end_is_noticed_once() -> None:
    w = World("router")
    w.manager.poll()
    w.end(3)
    w.manager.poll()
    w.manager.poll()
    assert w.names() == ["daemon-start", "daemon-died", "daemon-start"]
