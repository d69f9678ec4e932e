"""The hook seam: a program's native events put in cmux's words
(cmux/agents/adapters/events.py) drive the same states and the same Stop
hand-over as Claude Code's, continued in that program's own decision word,
and the loop guard holds for a program whose payload never says a turn was
continued."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from cmux.agents import registry
from cmux.agents.adapters import events
from cmux.agents.registry import Agent
from cmux.config import Config
from cmux.delivery import hooks, policy
from cmux.mail import store
from tests.unit.test_hookstate import set_state, state

# A program whose events are named differently, whose turn-end hook continues
# with "deny", and whose payload has no truthful stop_hook_active.
TOY = events.Dialect(
    {
        "Hello": "SessionStart",
        "Prompt": "UserPromptSubmit",
        "Tool": "PreToolUse",
        "AskPermission": "Notification",
        "TurnOver": "Stop",
        "Bye": "SessionEnd",
    },
    continue_decision="deny",
    chain_in_payload=False,
    normalize=lambda event, p: (
        {**p, "notification_type": events.PERMISSION, "message": f"may I run {p['cmd']}?"}
        if event == "AskPermission"
        else p
    ),
)


@pytest.fixture(autouse=True)
def toy() -> Iterator[None]:
    events.DIALECTS["toy"] = TOY
    yield
    del events.DIALECTS["toy"]


@pytest.fixture
def cfg(cfg: Config, monkeypatch: pytest.MonkeyPatch) -> Config:
    """The shared project (tests/unit/conftest.py) with w1 a worker of this program."""
    monkeypatch.setenv("CMUX_HOME", str(cfg.data.root))
    monkeypatch.setenv("CMUX_PROJECT", str(cfg.project_root))
    registry.save(cfg.data, Agent(name="supervisor", role="supervisor", profile="shell"))
    registry.save(cfg.data, Agent(name="w1", role="worker", profile="toy", parent="supervisor"))
    return cfg


def toy_hook(cfg: Config, event: str, **payload: Any) -> str:
    out = io.StringIO()
    env = {"CMUX_HOME": str(cfg.data.root), "CMUX_AGENT": "w1", "CMUX_ROLE": "worker"}
    assert hooks.run(event, io.StringIO(json.dumps(payload)), out, env, "toy") == 0
    return out.getvalue()


def test_native_events_move_the_same_states(cfg: Config) -> None:
    toy_hook(cfg, "Hello")
    assert state(cfg) == "idle"
    toy_hook(cfg, "Prompt", prompt="build it")
    assert state(cfg) == "busy"
    toy_hook(cfg, "AskPermission", cmd="rm -rf build")
    assert state(cfg) == "waiting"
    toy_hook(cfg, "Tool", tool_name="shell")
    assert state(cfg) == "busy"
    toy_hook(cfg, "TurnOver")
    assert state(cfg) == "idle"
    toy_hook(cfg, "Bye")
    assert state(cfg) == "exited"


def test_an_event_the_dialect_does_not_name_changes_nothing(cfg: Config) -> None:
    set_state(cfg, "busy")
    assert toy_hook(cfg, "PreCompress") == ""
    assert toy_hook(cfg, "Stop") == ""  # Claude's name, not this program's
    assert state(cfg) == "busy"


def test_mail_at_turn_end_continues_in_the_programs_word(cfg: Config) -> None:
    set_state(cfg, "busy")
    msg = store.send(cfg, to="w1", body="rebase first", sender="supervisor")
    answer = json.loads(toy_hook(cfg, "TurnOver"))
    assert answer["decision"] == "deny"
    assert f"[cmux mail {msg.id} from supervisor kind=message] rebase first" in answer["reason"]
    assert state(cfg) == "busy" and store.pending(cfg.data, "w1") == []


def test_the_loop_guard_holds_without_stop_hook_active(cfg: Config) -> None:
    set_state(cfg, "busy")
    handed = 0
    for i in range(policy.MAX_CHAINED_HANDOVERS + 3):
        store.send(cfg, to="w1", body=f"message {i}", sender="human")
        if not toy_hook(cfg, "TurnOver"):  # never says the turn was continued
            break
        handed += 1
    assert handed == policy.MAX_CHAINED_HANDOVERS
    assert state(cfg) == "idle"
    assert len(store.pending(cfg.data, "w1")) == 1  # left for the router
    toy_hook(cfg, "Prompt", prompt="go on")  # a real new prompt: a new count
    assert toy_hook(cfg, "TurnOver")


def test_an_unknown_adapter_is_ignored_not_guessed(cfg: Config) -> None:
    set_state(cfg, "busy")
    out = io.StringIO()
    env = {"CMUX_HOME": str(cfg.data.root), "CMUX_AGENT": "w1"}
    assert hooks.run("Stop", io.StringIO("{}"), out, env, "nosuch") == 0
    assert out.getvalue() == "" and state(cfg) == "busy"


def test_the_command_line_names_the_adapter(cfg: Config) -> None:
    """`cmux hook Stop claude`, in a new process as a program runs it, is
    Claude's dialect by name; `cmux hook Stop nosuch` changes nothing."""
    set_state(cfg, "busy")
    env = {
        **os.environ,
        "CMUX_HOME": str(cfg.data.root),
        "CMUX_AGENT": "w1",
        "CMUX_PROJECT": str(cfg.project_root),
    }

    def run(*argv: str) -> None:
        done = subprocess.run(
            [sys.executable, "-m", "cmux", "hook", *argv],
            input="{}",
            capture_output=True,
            text=True,
            env=env,
            cwd="/",
            timeout=30,
        )
        assert done.returncode == 0, done.stderr

    run("Stop", "nosuch")
    assert state(cfg) == "busy"
    run("Stop", "claude")
    assert state(cfg) == "idle"
