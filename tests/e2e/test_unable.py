"""Alive but unable to work, with the real Claude Code CLI: the scripted model
server answers 429, 529 or 401, or never answers, and cmux status says so,
the right people are told, and a rate limit that clears is resumed by cmux
alone.

Claude Code retries a refused request itself (10 times by default, with
back-off) before its StopFailure hook fires; the tests set
CLAUDE_CODE_MAX_RETRIES=0 so that it gives up at once. The supervisor is a
plain command (it never asks the model): its mailbox shows what it was told.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.e2e.conftest import Team
from tests.helpers import wait_until

pytestmark = pytest.mark.e2e

TASK = "RUN: mailbox done 'w1 finished'"


def setup(team: Team, *, claude: str = "", health: str = "") -> Team:
    toml = (team.project.root / "cmux.toml").read_text()
    if claude:
        toml = re.sub(r"(?m)^\[claude\]$", "[claude]\n" + claude, toml)
    if health:
        toml += "\n[health]\n" + health + "\n"
    (team.project.root / "cmux.toml").write_text(toml)
    team.project.env["CLAUDE_CODE_MAX_RETRIES"] = "0"
    team.project.ok("start", "--no-attach", "--command", "sleep 600")
    return team


def notices(team: Team, to: str) -> list[str]:
    from cmux.mail import store

    data = team.project.config().data
    return [m.body for m in store.read_all(data, to) if m.sender == "cmux"]


def told(team: Team, to: str, *needles: str, timeout: float = 30) -> str:
    def check() -> str:
        return next((b for b in notices(team, to) if all(n in b for n in needles)), "")

    return wait_until(check, timeout=timeout, interval=0.2, what=f"{to} told {needles}")


def watchdog_events(team: Team, kind: str) -> list[dict[str, Any]]:
    return [e for e in team.events("watchdog", "w1") if e.get("kind") == kind]


@pytest.mark.timeout(120)
def test_overloaded_and_a_refused_key_are_shown_and_told(team: Team) -> None:
    setup(team)
    team.model.fail(529)
    team.project.ok("spawn", "w1", "--agent", "claude", "--task", TASK)
    w1 = team.wait_state("w1", "overloaded", timeout=45)
    assert "529" in w1["last_event"]
    told(team, "supervisor", "w1 is overloaded", "continue in 300s")
    # Mail to it waits: typing into an agent the API refuses helps nothing.
    team.project.ok("send", "w1", "SAY: hello")
    held = team.project.data / "mailbox" / "w1" / "held"
    wait_until(lambda: held.exists() and "overloaded" in held.read_text(), timeout=10)

    team.model.fail(401)
    team.project.ok("spawn", "w2", "--agent", "claude", "--task", TASK)
    w2 = team.wait_state("w2", "auth-error", timeout=45)
    assert "Invalid API key" in w2["last_event"]
    told(team, "human", "w2 cannot work", "Invalid API key")
    assert not any("w2" in b for b in notices(team, "supervisor"))
    assert (team.state("w1"), team.state("w2")) == ("overloaded", "auth-error")


@pytest.mark.timeout(120)
def test_a_rate_limit_that_clears_is_resumed_without_a_person(team: Team) -> None:
    setup(team, claude="retry_after = 3")
    team.model.fail(429, retry_after=1)
    team.project.ok("spawn", "w1", "--agent", "claude", "--task", TASK)
    w1 = team.wait_state("w1", "rate-limited", timeout=45)
    assert "429" in w1["last_event"]
    told(team, "supervisor", "w1 is rate-limited", "continue in 3s")
    refused = team.model.refused
    team.model.clear()
    # Nobody types anything: cmux asks it to continue after retry_after, and
    # the task it was given before the refusal gets done.
    team.wait_state("w1", "done", timeout=60)
    assert team.model.refused == refused
    [resume] = watchdog_events(team, "resumed")
    assert resume["was"] == "rate-limited" and resume["after"] >= 3
    states = team.states_of("w1")
    assert states[states.index("rate-limited") :][:3] == ["rate-limited", "idle", "busy"], states
    text = team.seen_by("w1")
    assert "Continue your task where you left off" in text
    from cmux.mail import store

    data = team.project.config().data
    [done] = [m for m in store.read_all(data, "supervisor") if m.kind == "done"]
    assert done.sender == "w1" and "w1 finished" in done.body


@pytest.mark.timeout(120)
def test_a_busy_agent_whose_model_never_answers_is_stuck(team: Team) -> None:
    setup(team, health="stuck_after = 5")
    team.model.hang()
    team.project.ok("spawn", "w1", "--agent", "claude", "--task", TASK)
    team.wait_state("w1", "busy", timeout=45)
    stuck = team.wait_state("w1", "stuck", timeout=30)
    assert "nothing moved" in stuck["last_event"]
    body = told(team, "supervisor", "w1 has been busy for", "Its last screen lines")
    assert "RUN: mailbox done" in body  # what its screen showed
    assert watchdog_events(team, "stuck")
    # The model answers at last: it moves, it is busy again, and it finishes.
    team.model.clear()
    team.wait_state("w1", "done", timeout=60)
    states = team.states_of("w1")
    assert states[states.index("stuck") :][:2] == ["stuck", "busy"], states
