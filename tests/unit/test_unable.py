"""Alive but unable to work: rate-limited, overloaded, auth-error (the model
API refused: Claude Code's StopFailure hook), stuck (the watchdog), crashed (a
program gone, its shell alive: the reconcile). The pure rules, and each state
with the notices it sends, against a real registry and mailbox.

StopFailure payloads are as Claude Code 2.1.197 sent them to a dumping hook
when the scripted model server answered 429, 529 and 401."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import pytest

from cmux.agents import deaths, hookstate, registry, screen
from cmux.agents.registry import LIVE, UNABLE, Agent
from cmux.config import Config
from cmux.delivery import policy
from cmux.health.config import HealthSettings, parse, settings
from cmux.health.watchdog import (
    Progress,
    Watchdog,
    died_without_done,
    moved,
    resume_due,
    stuck_action,
    supervisor_action,
)
from cmux.mail import store
from cmux.paths import DataRoot
from cmux.tmux import Pane
from tests.unit.test_hookstate import hook, set_state, state
from tests.unit.test_watchdog import FakeActions, register

NOW = 2_000_000_000.0
RATE_LIMIT = {
    "error": "rate_limit",
    "last_assistant_message": "API Error: Request rejected (429) · Number of requests has "
    "exceeded your rate limit",
}
OVERLOADED = {
    "error": "server_error",  # 529 past Claude Code's own retries arrives so
    "last_assistant_message": "API Error: 529 Overloaded. This is a server-side issue, usually "
    "temporary — try again in a moment.",
}
AUTH = {
    "error": "authentication_failed",
    "last_assistant_message": "Invalid API key · Fix external API key",
}


@pytest.fixture
def claude_cfg(cfg: Config, monkeypatch: pytest.MonkeyPatch) -> Config:
    """The project as an agent's hook sees it, supervisor and w1 registered
    as Claude Code agents (as test_hookstate.py's)."""
    monkeypatch.setenv("CMUX_HOME", str(cfg.data.root))
    monkeypatch.setenv("CMUX_PROJECT", str(cfg.project_root))
    for name, role in (("supervisor", "supervisor"), ("w1", "worker")):
        parent = None if role == "supervisor" else "supervisor"
        registry.save(cfg.data, Agent(name=name, role=role, profile="claude", parent=parent))
    return cfg


# -- the states ---------------------------------------------------------------------------


def test_the_new_states_are_live_but_crashed_is_not() -> None:
    assert {"rate-limited", "overloaded", "auth-error", "stuck"} <= LIVE
    assert {"rate-limited", "overloaded", "auth-error", "stuck"} == UNABLE
    assert "crashed" not in LIVE


def test_crashed_ends_as_its_pane_does(data: DataRoot) -> None:
    registry.save(data, Agent(name="w1", state="busy"))
    registry.transition(data, "w1", "crashed")
    agent = registry.transition(data, "w1", "idle", strict=False)
    assert agent.state == "crashed"  # a gone program does not come back by itself
    registry.transition(data, "w1", "exited", exit_code=0)
    assert registry.get(data, "w1").state == "exited"


def test_since_is_when_the_state_changed(data: DataRoot) -> None:
    registry.save(data, Agent(name="w1", state="idle"))
    t0 = time.time()
    registry.transition(data, "w1", "busy")
    first = registry.get(data, "w1").since
    assert first is not None and first >= t0
    registry.update(data, "w1", note="x")
    registry.transition(data, "w1", "busy", note="y")  # no change of state
    assert registry.get(data, "w1").since == first


# -- StopFailure: what the API said ---------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "message", "expected"),
    [
        ("rate_limit", "", "rate-limited"),
        ("overloaded", "", "overloaded"),
        ("server_error", "API Error: 529 Overloaded.", "overloaded"),
        ("server_error", "API Error: 500 Internal server error", "overloaded"),
        ("unknown", "API Error: Request rejected (429) · rate limit", "rate-limited"),
        ("authentication_failed", "Invalid API key", "auth-error"),
        ("billing_error", "", "auth-error"),
        ("oauth_org_not_allowed", "", "auth-error"),
        ("invalid_request", "prompt is too long", None),
        ("max_output_tokens", "", None),
    ],
)
def test_api_error_state(error: str, message: str, expected: str | None) -> None:
    assert hookstate.api_error_state(error, message) == expected


def test_a_rate_limit_tells_the_parent_once(claude_cfg: Config) -> None:
    cfg = claude_cfg
    set_state(cfg, "busy")
    assert hook(cfg, "StopFailure", **RATE_LIMIT) == (0, "")
    agent = registry.get(cfg.data, "w1")
    assert agent.state == "rate-limited"
    assert "Request rejected (429)" in agent.last_event
    [msg] = store.read_all(cfg.data, "supervisor")
    assert msg.sender == "cmux" and msg.kind == "notice"
    assert "w1 is rate-limited" in msg.body and "continue in 300s" in msg.body
    hook(cfg, "StopFailure", **RATE_LIMIT)  # the same refusal again tells nobody again
    assert len(store.read_all(cfg.data, "supervisor")) == 1
    assert store.read_all(cfg.data, "human") == []
    # New input (cmux's resume, or anyone's) makes it busy again.
    hook(cfg, "UserPromptSubmit", prompt="continue")
    assert state(cfg) == "busy"


def test_an_overloaded_api_and_the_retry_after_setting(claude_cfg: Config) -> None:
    cfg = claude_cfg
    cfg = cfg.replace(raw={**cfg.raw, "claude": {**cfg.section("claude"), "retry_after": 42}})
    assert hookstate.retry_after(cfg) == 42.0
    assert settings(cfg).retry_after == 42.0
    set_state(cfg, "busy")
    hook(cfg, "StopFailure", **OVERLOADED)
    assert state(cfg) == "overloaded"
    [msg] = store.read_all(cfg.data, "supervisor")
    assert "w1 is overloaded" in msg.body


def test_a_refused_key_tells_the_person_at_once(claude_cfg: Config) -> None:
    cfg = claude_cfg
    set_state(cfg, "busy")
    hook(cfg, "StopFailure", **AUTH)
    assert state(cfg) == "auth-error"
    [msg] = store.read_all(cfg.data, "human")
    assert "w1 cannot work" in msg.body and "Invalid API key" in msg.body
    assert store.read_all(cfg.data, "supervisor") == []


def test_a_rate_limited_supervisor_tells_the_person(claude_cfg: Config) -> None:
    cfg = claude_cfg
    set_state(cfg, "busy", name="supervisor")
    hook(cfg, "StopFailure", name="supervisor", **RATE_LIMIT)
    assert state(cfg, "supervisor") == "rate-limited"
    assert [m.kind for m in store.read_all(cfg.data, "human")] == ["notice"]


def test_another_api_error_ends_the_turn_as_stop_would(claude_cfg: Config) -> None:
    cfg = claude_cfg
    set_state(cfg, "busy")
    hook(cfg, "StopFailure", error="invalid_request", last_assistant_message="bad request")
    assert state(cfg) == "idle"
    set_state(cfg, "busy", "done")
    hook(cfg, "StopFailure", error="invalid_request")
    assert state(cfg) == "done"
    assert store.read_all(cfg.data, "supervisor") == []


def test_the_stop_failure_hook_is_installed() -> None:
    from cmux.agents.profiles import claude_settings

    hooks = claude_settings()["hooks"]
    assert isinstance(hooks, dict) and "StopFailure" in hooks


# -- the watchdog: resuming ------------------------------------------------------------------


def test_resume_due() -> None:
    a = Agent(name="w1", state="rate-limited", pane_id="%1", since=NOW - 300)
    assert resume_due(a, NOW, 300)
    assert not resume_due(a, NOW - 1, 300)
    assert resume_due(replace(a, state="overloaded"), NOW, 300)
    assert not resume_due(replace(a, state="auth-error"), NOW, 300)  # a person fixes a key
    assert not resume_due(replace(a, pane_id=None), NOW, 300)
    assert not resume_due(replace(a, state="idle"), NOW, 300)


def test_a_rate_limited_agent_is_asked_to_continue_once_per_refusal(data: DataRoot) -> None:
    t0 = time.time()
    register(data, "w1", state="busy", pane_id="%1")
    registry.transition(data, "w1", "rate-limited", reason="the model API refused: 429")
    registry.update(data, "w1", since=t0)
    acts = FakeActions(data)
    wd = Watchdog(data, replace(HealthSettings(), retry_after=10, idle_nudge=0), acts, now=t0)
    wd.tick(t0 + 5)
    assert acts.resumed == []
    wd.tick(t0 + 10.5)
    [(name, body)] = acts.resumed
    assert name == "w1" and "Continue your task" in body and "429" in body
    assert registry.get(data, "w1").state == "idle"
    wd.tick(t0 + 30)
    assert len(acts.resumed) == 1
    # Refused again: a new refusal, waited out again.
    registry.transition(data, "w1", "busy")
    registry.transition(data, "w1", "rate-limited", reason="the model API refused: 429")
    registry.update(data, "w1", since=t0 + 30)  # (the test's clock)
    wd.tick(t0 + 31)
    assert len(acts.resumed) == 1
    wd.tick(t0 + 42)
    assert len(acts.resumed) == 2


# -- the watchdog: stuck ---------------------------------------------------------------------


def test_stuck_action_and_what_counts_as_moving() -> None:
    busy = Agent(name="w1", state="busy", updated=NOW - 1000)
    first = moved(None, "screen", 10, NOW - 100)
    assert first.moved == NOW - 100
    same = moved(first, "screen", 10, NOW)
    assert same.moved == NOW - 100 and same.looked == NOW
    assert stuck_action(busy, first, same, 100) == "stuck"
    assert stuck_action(busy, first, same, 101) is None
    assert stuck_action(busy, first, same, 0) is None  # off
    assert stuck_action(replace(busy, updated=NOW - 50), first, same, 100) is None  # a hook
    assert moved(first, "other", 10, NOW).moved == NOW  # its screen changed
    assert moved(first, "screen", 11, NOW).moved == NOW  # its transcript grew
    assert moved(first, None, 10, NOW).moved == NOW - 100  # no capture: no news
    stuck = replace(busy, state="stuck")
    assert stuck_action(stuck, first, moved(first, "other", 10, NOW), 100) == "moving"
    assert stuck_action(stuck, first, same, 100) is None
    assert stuck_action(replace(busy, state="idle"), first, same, 100) is None


def test_spinners_do_not_count_as_change() -> None:
    a = "❯ RUN: sleep 1\n· Beaming…\n─" + "─" * 30 + "\n❯ \n"
    b = "❯ RUN: sleep 1\n✻ Beaming… (12s · ↓ 1.2k tokens)\n─" + "─" * 30 + "\n❯ \n"
    assert screen.fingerprint(a) == screen.fingerprint(b)
    c = "❯ RUN: sleep 1\n✻ API error · Retrying in 2s · attempt 2/10\n"
    assert screen.fingerprint(a) != screen.fingerprint(c)
    assert screen.last_lines("a\n\nb\nc\n\n", 2) == "b\nc"


def stuck_dog(data: DataRoot, t0: float, **kw: Any) -> tuple[Watchdog, FakeActions]:
    acts = FakeActions(data)
    s = replace(HealthSettings(), stuck_after=30, idle_nudge=0, **kw)
    return Watchdog(data, s, acts, now=t0), acts


def test_a_busy_agent_with_nothing_moving_is_stuck_and_its_parent_told(data: DataRoot) -> None:
    t0 = time.time()
    register(data, "supervisor", role="supervisor", state="idle")
    register(data, "w1", state="busy", pane_id="%1", task="build the thing")
    wd, acts = stuck_dog(data, t0)
    acts.screens["w1"] = "doing work\n✻ Pondering… (1s)\nesc to interrupt"
    wd.tick(t0)
    acts.screens["w1"] = "doing work\n✻ Pondering… (29s)\nesc to interrupt"
    wd.tick(t0 + 20)
    assert registry.get(data, "w1").state == "busy"
    wd.tick(t0 + 31)
    assert registry.get(data, "w1").state == "stuck"
    [body] = acts.told("supervisor")
    assert "w1 has been busy for" in body and "build the thing" in body
    assert "doing work" in body  # its last screen lines
    assert acts.interrupted == []
    # Something moves: busy again, and it can be stuck again later.
    acts.screens["w1"] = "doing work\nmore output\nesc to interrupt"
    wd.tick(t0 + 40)
    assert registry.get(data, "w1").state == "busy"
    assert len(acts.told("supervisor")) == 1


def test_a_moving_screen_is_never_stuck(data: DataRoot) -> None:
    t0 = time.time()
    register(data, "w1", state="busy", pane_id="%1")
    wd, acts = stuck_dog(data, t0)
    for i in range(0, 120, 5):
        acts.screens["w1"] = f"line {i}"
        wd.tick(t0 + i)
    assert registry.get(data, "w1").state == "busy"
    assert acts.tells == []


def test_stuck_action_interrupt_interrupts_and_claude_is_idle(data: DataRoot) -> None:
    t0 = time.time()
    register(data, "w1", state="busy", pane_id="%1", profile="claude")
    wd, acts = stuck_dog(data, t0, stuck_action="interrupt")
    acts.screens["w1"] = "frozen"
    wd.tick(t0)
    wd.tick(t0 + 31)
    assert acts.interrupted == ["w1"]
    assert registry.get(data, "w1").state == "idle"
    assert "cmux interrupted it" in acts.told("supervisor")[0]


def test_the_stuck_settings_are_checked() -> None:
    from cmux.errors import ConfigError

    s = parse({"stuck_after": 60, "stuck_action": "interrupt"})
    assert (s.stuck_after, s.stuck_action) == (60.0, "interrupt")
    assert (HealthSettings().stuck_after, HealthSettings().stuck_action) == (900.0, "tell")
    with pytest.raises(ConfigError):
        parse({"stuck_action": "kill"})


# -- crashed ------------------------------------------------------------------------------------


def test_a_shell_that_took_the_terminal_means_the_program_is_gone() -> None:
    cmd = ["sh", "-c", "sh -c 'claude; exec sh'"]
    assert deaths.shell_took_over((100, 200, "sh"), cmd, "command")
    assert deaths.shell_took_over((100, 200, "bash"), ["claude", "x"], "claude")
    assert not deaths.shell_took_over((100, 100, "sh"), cmd, "command")  # cmux's wrapper
    assert not deaths.shell_took_over((100, 200, "vim"), cmd, "command")  # a job of that shell
    assert not deaths.shell_took_over(None, cmd, "command")  # no /proc
    # An agent that is a shell: its prompt is its work.
    assert not deaths.shell_took_over((100, 200, "bash"), ["bash"], "shell")
    assert not deaths.shell_took_over((100, 200, "bash"), ["sh", "-c", "bash"], "command")
    assert deaths.runs_a_shell(["zsh", "-o", "interactivecomments"])
    assert not deaths.runs_a_shell(["sh", "-c", "sleep 5"])


def test_foreground_reads_this_process() -> None:
    import os

    fg = deaths.foreground(os.getpid())
    assert fg is None or fg[0] == os.getpgrp()
    assert deaths.foreground(0) is None


def test_crashed_is_reported_like_a_death_and_restarts_a_supervisor() -> None:
    w = Agent(name="w1", state="crashed", last_event="busy → crashed: its program ended")
    assert died_without_done(w)
    assert not died_without_done(replace(w, last_event="done → crashed: x"))
    sup = Agent(name="supervisor", role="supervisor", state="crashed")
    assert supervisor_action(sup, [], NOW, 3, 600) == "restart"


def test_mail_is_held_while_an_agent_cannot_work() -> None:
    pane = Pane("%1", "@1", "w1", "s", 1, False, None, False, "claude", 80, 24, server="srv")
    for s in ("rate-limited", "overloaded", "auth-error", "stuck", "crashed"):
        a = Agent(name="w1", profile="claude", state=s, pane_id="%1", server="srv")
        decision = policy.decide(a, pane, lambda: None)
        assert isinstance(decision, policy.Hold) and s in decision.reason


def test_progress_is_a_plain_record() -> None:
    assert Progress("x", 1, 2.0, 3.0).moved == 2.0
