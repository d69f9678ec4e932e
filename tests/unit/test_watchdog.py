"""Watchdogs: each fires on its cause, and not without it.

The registry and the event log are real files in a temporary data root; the
clock is passed in, and the actions (mail, kill, respawn, alert) are fakes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cmux import events
from cmux.agents import registry
from cmux.agents.registry import Agent, State
from cmux.health.config import HealthSettings
from cmux.health.watchdog import (
    Watchdog,
    died_without_done,
    idle_due,
    is_activity,
    restart_backoff,
    supervisor_action,
    time_limit_action,
    work_open,
)
from cmux.paths import DataRoot

NOW = 2_000_000_000.0


def agent(name: str = "w1", role: str = "worker", state: State = "busy", **kw: Any) -> Agent:
    return Agent(name=name, role=role, state=state, **kw)


# -- the pure decisions --------------------------------------------------------------------


def test_work_is_open_while_a_worker_has_not_reported_done() -> None:
    assert work_open([agent(state="busy")])
    assert work_open([agent(state="blocked")])
    assert not work_open([agent(state="done"), agent("w2", state="exited")])
    assert not work_open([agent("supervisor", role="supervisor", state="busy")])


def test_what_counts_as_an_agent_doing_something() -> None:
    names = {"w1", "supervisor"}
    assert is_activity({"event": "state", "agent": "w1"}, names)
    assert is_activity({"event": "send", "agent": "supervisor", "sender": "w1"}, names)
    assert not is_activity({"event": "send", "agent": "w1", "sender": "cmux"}, names)
    assert not is_activity({"event": "send", "agent": "w1", "sender": "human"}, names)
    assert not is_activity({"event": "deliver", "agent": "w1"}, names)
    assert not is_activity({"event": "watchdog", "agent": "w1"}, names)
    assert not is_activity({"event": "daemon-start"}, names)
    assert not is_activity({"event": "state", "agent": "stranger"}, names)


def test_idle_due() -> None:
    assert idle_due(NOW, NOW - 100, None, 100, True)
    assert not idle_due(NOW, NOW - 99, None, 100, True)
    assert not idle_due(NOW, NOW - 1000, None, 100, False)  # no open work
    assert not idle_due(NOW, NOW - 1000, None, 0, True)  # switched off
    assert not idle_due(NOW, NOW - 1000, NOW - 50, 100, True)  # nudged recently


def test_time_limit_action() -> None:
    w = agent(created=NOW - 1000)
    assert time_limit_action(w, NOW, 0, 60, None) is None  # no limit
    assert time_limit_action(w, NOW, 2000, 60, None) is None  # within it
    assert time_limit_action(w, NOW, 1000, 60, None) == "warn"
    assert time_limit_action(w, NOW, 1000, 60, NOW - 30) is None  # in the grace period
    assert time_limit_action(w, NOW, 1000, 60, NOW - 60) == "end"
    assert time_limit_action(replace(w, state="done"), NOW, 10, 60, None) is None
    assert time_limit_action(replace(w, state="exited"), NOW, 10, 60, None) is None
    sup = agent("supervisor", role="supervisor", created=NOW - 10**6)
    assert time_limit_action(sup, NOW, 10, 60, None) is None


def test_died_without_done() -> None:
    assert died_without_done(agent(state="exited", last_event="busy → exited: code 1"))
    assert not died_without_done(agent(state="exited", last_event="done → exited: code 0"))
    assert not died_without_done(agent(state="killed", last_event="busy → killed"))
    assert not died_without_done(agent(state="busy"))


def test_supervisor_restarts_back_off_and_give_up() -> None:
    dead = agent("supervisor", role="supervisor", state="exited")
    assert [restart_backoff(n) for n in range(8)] == [0, 1, 2, 4, 8, 16, 32, 60]
    assert supervisor_action(dead, [], NOW, 3, 600) == "restart"
    assert supervisor_action(dead, [NOW - 0.5], NOW, 3, 600) == "wait"
    assert supervisor_action(dead, [NOW - 1], NOW, 3, 600) == "restart"
    assert supervisor_action(dead, [NOW - 5, NOW - 1], NOW, 3, 600) == "wait"
    assert supervisor_action(dead, [NOW - 9, NOW - 5, NOW - 1], NOW, 3, 600) == "give-up"
    assert supervisor_action(dead, [NOW - 900, NOW - 800, NOW - 700], NOW, 3, 600) == "restart"
    assert supervisor_action(replace(dead, state="busy"), [], NOW, 3, 600) is None
    assert supervisor_action(replace(dead, state="killed"), [], NOW, 3, 600) is None
    assert supervisor_action(None, [], NOW, 3, 600) is None


# -- the watchdog against a real registry -----------------------------------------------------


@dataclass
class FakeActions:
    data: DataRoot
    running: bool = True
    tells: list[tuple[str, str, str]] = field(default_factory=list)
    notes: list[tuple[str, str]] = field(default_factory=list)
    ended: list[str] = field(default_factory=list)
    respawned: list[str] = field(default_factory=list)
    alerts: list[str] = field(default_factory=list)
    alert_up: bool = False
    lookups: int = 0
    used: dict[str, int] = field(default_factory=dict)
    screens: dict[str, str] = field(default_factory=dict)
    resumed: list[tuple[str, str]] = field(default_factory=list)
    interrupted: list[str] = field(default_factory=list)

    def agents(self) -> list[Agent]:
        self.lookups += 1
        return registry.list_agents(self.data)

    def tell(self, to: str, subject: str, body: str) -> None:
        self.tells.append((to, subject, body))

    def note(self, name: str, text: str) -> None:
        self.notes.append((name, text))

    def end(self, name: str, reason: str) -> str:
        self.ended.append(name)
        registry.transition(self.data, name, "killed", reason=reason)
        return ""

    def respawn(self, name: str, reason: str) -> None:
        self.respawned.append(name)
        old = registry.get(self.data, name)
        registry.save(
            self.data, replace(old, state="idle", incarnation=old.incarnation + 1), event="spawn"
        )

    def session_running(self) -> bool:
        return self.running

    def alert(self, text: str) -> None:
        self.alerts.append(text)
        self.alert_up = True

    def alert_active(self) -> bool:
        return self.alert_up

    def event(self, kind: str, agent: str | None, **fields: Any) -> None:
        events.record(self.data, "watchdog", agent, kind=kind, **fields)

    def usage(self, agents: list[Agent]) -> dict[str, int]:
        return {a.name: self.used.get(a.name, 0) for a in agents}

    def screen(self, agent: Agent) -> str | None:
        return self.screens.get(agent.name)

    def resume(self, agent: Agent, body: str) -> None:
        self.resumed.append((agent.name, body))
        registry.transition(self.data, agent.name, "idle", reason="asked to continue")

    def set_state(self, agent: Agent, state: State, reason: str) -> None:
        registry.transition(
            self.data, agent.name, state, reason=reason, strict=False, only_from={agent.state}
        )

    def interrupt(self, agent: Agent, reason: str) -> bool:
        self.interrupted.append(agent.name)
        return True

    def told(self, to: str) -> list[str]:
        return [body for t, _, body in self.tells if t == to]


def register(data: DataRoot, name: str, role: str = "worker", **kw: Any) -> Agent:
    a = Agent(name=name, role=role, **kw)
    registry.save(data, a)
    return a


def dog(data: DataRoot, now: float, **settings: Any) -> tuple[Watchdog, FakeActions]:
    s = replace(HealthSettings(), **settings)
    acts = FakeActions(data)
    return Watchdog(data, s, acts, now=now), acts


def test_idle_nudges_the_supervisor_only_without_activity(data: DataRoot) -> None:
    t0 = time.time()
    register(data, "supervisor", role="supervisor", state="idle")
    register(data, "w1", state="busy")
    wd, acts = dog(data, t0, idle_nudge=100)
    wd.tick(t0)
    wd.tick(t0 + 99)
    assert acts.tells == []
    # An agent does something: the quiet period starts again.
    registry.transition(data, "w1", "idle", reason="finished a turn")
    wd.tick(t0 + 99.5)
    wd.tick(t0 + 150)
    assert acts.tells == []
    # Mail that cmux or a person sends is not the agents doing anything.
    events.record(data, "send", "w1", sender="cmux", kind="notice")
    wd.tick(t0 + 199.5)
    assert len(acts.told("supervisor")) == 1
    assert "w1 (idle)" in acts.told("supervisor")[0]
    # Once per quiet period, not every second.
    wd.tick(t0 + 200)
    wd.tick(t0 + 250)
    assert len(acts.told("supervisor")) == 1
    wd.tick(t0 + 300)
    assert len(acts.told("supervisor")) == 2


def test_idle_does_not_fire_when_no_work_is_open(data: DataRoot) -> None:
    t0 = time.time()
    register(data, "supervisor", role="supervisor", state="idle")
    register(data, "w1", state="done")
    wd, acts = dog(data, t0, idle_nudge=10)
    for t in range(0, 100, 5):
        wd.tick(t0 + t)
    assert acts.tells == []


def test_a_worker_past_its_time_limit_is_warned_then_ended(data: DataRoot) -> None:
    t0 = time.time()
    register(data, "slow", state="busy", created=t0 - 1000, task="a long task")
    register(data, "quick", state="busy", created=t0 - 10)
    register(data, "finished", state="done", created=t0 - 5000)
    wd, acts = dog(data, t0, worker_time_limit=600, worker_grace=60, idle_nudge=0)
    wd.tick(t0)
    assert [to for to, _, _ in acts.tells] == ["slow"]
    assert "time limit of 10m" in acts.tells[0][2]
    assert acts.notes == [("slow", "past its time limit of 10m")]
    wd.tick(t0 + 30)
    assert acts.ended == [] and len(acts.tells) == 1
    wd.tick(t0 + 61)
    assert acts.ended == ["slow"]
    report = acts.told("supervisor")
    assert len(report) == 1 and "slow ran past its time limit" in report[0]
    assert "a long task" in report[0]
    wd.tick(t0 + 120)
    assert acts.ended == ["slow"]  # once
    assert registry.get(data, "quick").state == "busy"


def test_a_worker_that_reported_done_in_time_is_not_ended(data: DataRoot) -> None:
    t0 = time.time()
    register(data, "w1", state="busy", created=t0 - 1000)
    wd, acts = dog(data, t0, worker_time_limit=600, worker_grace=60, idle_nudge=0)
    wd.tick(t0)
    registry.transition(data, "w1", "done", reason="mailbox done")
    wd.tick(t0 + 100)
    assert acts.ended == [] and acts.told("supervisor") == []


def test_a_worker_that_died_without_done_is_reported(data: DataRoot) -> None:
    t0 = time.time()
    register(data, "w1", state="busy", task="fix the parser")
    register(data, "w2", state="busy")
    register(data, "w3", state="busy")
    wd, acts = dog(data, t0, idle_nudge=0)
    wd.tick(t0)
    registry.transition(data, "w1", "exited", reason="its process exited", exit_code=137)
    registry.transition(data, "w2", "done", reason="mailbox done")
    registry.transition(data, "w2", "exited", reason="its process exited", exit_code=0)
    registry.transition(data, "w3", "killed", reason="cmux kill")
    wd.tick(t0 + 1)
    reports = acts.told("supervisor")
    assert len(reports) == 1
    assert "w1 exited (code 137) without reporting done" in reports[0]
    assert "fix the parser" in reports[0]
    wd.tick(t0 + 2)
    assert len(acts.told("supervisor")) == 1  # once
    # A new watchdog (the monitor restarted) remembers what it reported.
    wd2, acts2 = dog(data, t0 + 3, idle_nudge=0)
    wd2.tick(t0 + 3)
    assert acts2.tells == []


def test_old_deaths_are_not_news(data: DataRoot) -> None:
    register(data, "w1", state="busy")
    registry.transition(data, "w1", "exited", reason="long ago", exit_code=1)
    wd, acts = dog(data, time.time() + 3600, idle_nudge=0)
    wd.tick(time.time() + 3600)
    assert acts.tells == []


def test_a_dead_supervisor_is_restarted_with_back_off_and_a_limit(data: DataRoot) -> None:
    t0 = time.time()
    register(data, "supervisor", role="supervisor", state="busy")
    wd, acts = dog(data, t0, supervisor_restarts=3, supervisor_restart_window=600, idle_nudge=0)
    wd.tick(t0)
    assert acts.respawned == []  # alive: nothing to do

    def die(code: int = 1) -> None:
        registry.transition(data, "supervisor", "exited", reason="pane died", exit_code=code)

    die()
    wd.tick(t0 + 1)
    assert acts.respawned == ["supervisor"]
    assert "started it again" in acts.told("human")[0]
    die()
    wd.tick(t0 + 1.5)  # back-off: one second after the first restart
    assert len(acts.respawned) == 1
    wd.tick(t0 + 2.1)
    assert len(acts.respawned) == 2
    die()
    wd.tick(t0 + 3)  # two seconds of back-off now
    assert len(acts.respawned) == 2
    wd.tick(t0 + 4.2)
    assert len(acts.respawned) == 3
    die()
    wd.tick(t0 + 100)
    assert len(acts.respawned) == 3  # the limit: gives up and alerts
    assert len(acts.alerts) == 1 and "keeps dying" in acts.alerts[0]
    wd.tick(t0 + 200)
    assert len(acts.alerts) == 1
    # The human clears the alert: cmux tries again.
    acts.alert_up = False
    wd.tick(t0 + 201)
    wd.tick(t0 + 202)
    assert len(acts.respawned) == 4


def test_a_supervisor_ended_on_purpose_stays_ended(data: DataRoot) -> None:
    t0 = time.time()
    register(data, "supervisor", role="supervisor", state="busy")
    registry.transition(data, "supervisor", "killed", reason="cmux kill --force")
    wd, acts = dog(data, t0, idle_nudge=0)
    wd.tick(t0 + 1)
    assert acts.respawned == []


def test_no_restart_without_a_session(data: DataRoot) -> None:
    t0 = time.time()
    register(data, "supervisor", role="supervisor", state="busy")
    registry.transition(data, "supervisor", "exited", reason="pane died", exit_code=0)
    wd, acts = dog(data, t0, idle_nudge=0)
    acts.running = False
    wd.tick(t0 + 1)
    assert acts.respawned == []


def test_a_quiet_tick_reads_nothing(data: DataRoot) -> None:
    t0 = time.time()
    register(data, "w1", state="busy")
    wd, acts = dog(data, t0)
    for i in range(50):
        wd.tick(t0 + i)
    assert acts.lookups == 1
    registry.transition(data, "w1", "idle")
    wd.tick(t0 + 51)
    assert acts.lookups == 2


def test_tick_entry_point_survives_a_bad_config(tmp_path: Path) -> None:
    from cmux.config import load_config
    from cmux.health import watchdog

    (tmp_path / "cmux.toml").write_text("")
    # load_config refuses such a file; a Config built around it must not stop the monitor
    cfg = load_config(tmp_path).replace(raw={"health": {"threshold": 0}})
    cfg.data.ensure()
    watchdog.reset()
    try:
        watchdog.tick(cfg, time.time())  # logs and switches the watchdogs off
        watchdog.tick(cfg, time.time())
    finally:
        watchdog.reset()


# -- token budgets ----------------------------------------------------------------------------


def test_budget_decisions() -> None:
    from cmux.health.budget import Marks, decide

    assert decide(79, 100, Marks(), NOW, 60) is None
    assert decide(80, 100, Marks(), NOW, 60) == "warn"
    assert decide(90, 100, Marks(warned=NOW), NOW, 60) is None
    assert decide(100, 100, Marks(warned=NOW), NOW, 60) == "interrupt"
    assert decide(150, 100, Marks(), NOW, 60) == "interrupt"  # past it in one go
    assert decide(150, 100, Marks(interrupted=NOW), NOW + 59, 60) is None
    assert decide(150, 100, Marks(interrupted=NOW), NOW + 60, 60) == "end"
    assert decide(150, 100, Marks(interrupted=NOW, ended=NOW + 60), NOW + 99, 60) is None
    assert decide(10**9, 0, Marks(), NOW, 60) is None  # no budget


def test_a_worker_over_its_budget_is_warned_interrupted_then_stopped(data: DataRoot) -> None:
    from cmux.health.budget import Budgets

    t0 = time.time()
    register(data, "supervisor", role="supervisor", state="idle")
    register(data, "w1", state="busy", parent="supervisor")
    s = replace(HealthSettings(), worker_grace=30)
    acts = FakeActions(data)
    wd = Watchdog(data, s, acts, now=t0, budgets=Budgets(per_worker=1000))
    acts.used["w1"] = 500
    wd.tick(t0)
    assert acts.tells == []
    acts.used["w1"] = 850
    wd.tick(t0 + 5)
    assert any("85 %" in b for b in acts.told("w1"))
    assert any("w1 has used" in b for b in acts.told("supervisor"))
    acts.used["w1"] = 1200
    wd.tick(t0 + 10)
    assert acts.interrupted == ["w1"]
    assert any("interrupted you" in b and "mailbox done" in b for b in acts.told("w1"))
    wd.tick(t0 + 35)
    assert acts.ended == []  # the grace runs
    wd.tick(t0 + 40)
    assert acts.ended == ["w1"]
    assert any("was stopped" in b for b in acts.told("supervisor"))
    # a restarted watchdog remembers: nothing twice
    again = Watchdog(data, s, acts, now=t0 + 41, budgets=Budgets(per_worker=1000))
    n = len(acts.tells)
    again.tick(t0 + 50)
    assert len(acts.tells) == n and acts.interrupted == ["w1"]


def test_the_team_budget_tells_the_person_and_stops_every_worker(data: DataRoot) -> None:
    from cmux.health.budget import Budgets

    t0 = time.time()
    register(data, "supervisor", role="supervisor", state="idle")
    register(data, "w1", state="busy", parent="supervisor")
    register(data, "w2", state="idle", parent="supervisor")
    acts = FakeActions(data)
    wd = Watchdog(data, HealthSettings(), acts, now=t0, budgets=Budgets(total=1000))
    acts.used.update(supervisor=300, w1=300, w2=250)
    wd.tick(t0)
    assert any("team has used 850 of 1.0k" in b for b in acts.told("human"))
    acts.used["w2"] = 500
    wd.tick(t0 + 5)
    assert sorted(acts.interrupted) == ["w1", "w2"]
