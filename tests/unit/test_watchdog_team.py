"""The watchdogs on several hosts: the idle nudge counts the whole team
(another host's busy worker is open work, its events are activity) and is
the supervisor's host's alone; nothing is ever done to an agent of another
host (its pane, time limit, death, receipts and budget are its own host's).

A real registry and event log in a temporary data root; the other hosts are
a fake :class:`Team` (what cmux/cluster/feed.py gives: their records and
their events), the actions are tests/unit/test_watchdog.py's fakes."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

from cmux.agents.registry import Agent
from cmux.health.budget import Budgets
from cmux.health.config import HealthSettings
from cmux.health.watchdog import Watchdog, nudges_here, work_open
from cmux.paths import DataRoot
from tests.unit.test_watchdog import FakeActions, agent, register


@dataclass
class FakeTeam:
    """The other hosts: their agents by name, and what changed."""

    far: dict[str, Agent] = field(default_factory=dict)
    changes: list[tuple[str, Any]] = field(default_factory=list)

    def drain(self) -> list[tuple[str, Any]]:
        out, self.changes = self.changes, []
        return out

    def agents(self, local: list[Agent]) -> list[Agent]:
        mine = [a for a in local if a.name not in self.far]
        return mine + list(self.far.values())

    def set(self, a: Agent) -> None:
        self.far[a.name] = a
        self.changes.append(("agent", a.name))

    def event(self, **e: Any) -> None:
        self.changes.append(("event", e))


def test_a_worker_on_another_host_is_open_work() -> None:
    assert work_open([agent(state="busy", host="b")])
    assert not work_open([agent(state="done", host="b")])
    assert not work_open([agent(state="lost", host="b")])  # gone with its host: not waited on


def test_the_idle_nudge_is_the_supervisors_hosts() -> None:
    assert nudges_here([agent("supervisor", role="supervisor", state="idle")])
    assert nudges_here([agent()])  # no supervisor record: as on one machine
    assert not nudges_here([agent("supervisor", role="supervisor", state="idle", host="a")])


def test_a_busy_worker_elsewhere_keeps_the_nudge_away_while_it_acts(data: DataRoot) -> None:
    t0 = time.time()
    register(data, "supervisor", role="supervisor", state="idle")
    team = FakeTeam()
    acts = FakeActions(data)
    wd = Watchdog(data, replace(HealthSettings(), idle_nudge=100), acts, now=t0, team=team)
    # Without the team nothing is open here: no nudge, however quiet.
    wd.tick(t0 + 150)
    assert acts.tells == []
    team.set(agent("w1", state="busy", host="b"))
    for t in range(160, 400, 30):  # b's events come in: it is doing something
        team.event(event="state", agent="w1", host="b", to="busy")
        wd.tick(t0 + t)
    assert acts.tells == []
    # An event of an agent nobody knows, or passive mail, is no activity.
    team.event(event="state", agent="stranger", host="b")
    team.event(event="send", agent="w1", sender="cmux", host="b")
    wd.tick(t0 + 469)  # its last event came at +370
    assert acts.tells == []
    wd.tick(t0 + 471)
    (body,) = acts.told("supervisor")
    assert "w1 (busy on b)" in body


def test_a_worker_host_does_not_nudge_a_supervisor_that_lives_elsewhere(data: DataRoot) -> None:
    t0 = time.time()
    register(data, "supervisor", role="supervisor", state="exited", host="a")
    register(data, "w1", state="idle")
    acts = FakeActions(data)
    wd = Watchdog(data, replace(HealthSettings(), idle_nudge=10), acts, now=t0)
    for t in range(0, 100, 5):
        wd.tick(t0 + t)
    assert acts.tells == []
    assert acts.respawned == []  # its pane is on a: a's watchdog restarts it


def test_nothing_is_done_to_an_agent_of_another_host(data: DataRoot) -> None:
    """Past its time limit, dead without done, over budget: all its host's business."""
    t0 = time.time()
    register(data, "supervisor", role="supervisor", state="idle")
    register(data, "far1", state="busy", host="b", created=t0 - 10_000)
    register(data, "far2", state="crashed", host="b", updated=t0)
    acts = FakeActions(data)
    acts.used = {"far1": 10_000}
    s = replace(HealthSettings(), worker_time_limit=60, worker_grace=1, idle_nudge=0)
    wd = Watchdog(data, s, acts, now=t0, budgets=Budgets(per_worker=100, total=100))
    for t in range(0, 30, 1):
        wd.tick(t0 + t)
    assert (acts.ended, acts.interrupted, acts.notes) == ([], [], [])
    assert not [t for t in acts.tells if "far" in t[2] and "budget" not in t[1]]
