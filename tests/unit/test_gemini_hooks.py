"""The Gemini CLI's hook events through cmux's seam, in the order the real
CLI 0.61.0 sends them (tests/e2e/test_gemini_offline.py showed it): the states
they move, its approval question as `waiting`, mail handed over at AfterAgent
with "deny", and the loop guard, which must hold although the CLI announces
every continued turn with a BeforeAgent whose prompt is the mail (a prompt
hook that, taken for a new turn, would reset the guard's count)."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from cmux.agents import registry
from cmux.agents.adapters import events
from cmux.agents.registry import Agent
from cmux.config import Config
from cmux.delivery import handover, hooks, policy
from cmux.mail import receipts, store
from tests.unit.test_hookstate import set_state, state


@pytest.fixture
def cfg(cfg: Config, monkeypatch: pytest.MonkeyPatch) -> Config:
    monkeypatch.setenv("CMUX_HOME", str(cfg.data.root))
    monkeypatch.setenv("CMUX_PROJECT", str(cfg.project_root))
    registry.save(cfg.data, Agent(name="supervisor", role="supervisor", profile="shell"))
    registry.save(
        cfg.data,
        Agent(name="w1", role="worker", profile="gemini", adapter="gemini", parent="supervisor"),
    )
    return cfg


def gemini_hook(cfg: Config, event: str, **payload: Any) -> dict[str, Any]:
    """One `cmux hook EVENT gemini` call; what it printed, parsed ({} if nothing)."""
    out = io.StringIO()
    env = {"CMUX_HOME": str(cfg.data.root), "CMUX_AGENT": "w1", "CMUX_ROLE": "worker"}
    base = {"session_id": "s-1", "hook_event_name": event, "cwd": "/w"}
    assert hooks.run(event, io.StringIO(json.dumps({**base, **payload})), out, env, "gemini") == 0
    text = out.getvalue()
    return json.loads(text) if text.strip() else {}


def test_the_dialect_names_gemini_events() -> None:
    name, payload = events.canonical(
        "gemini",
        "Notification",
        {"notification_type": "ToolPermission", "message": "Confirm", "details": {
            "type": "exec", "command": "rm -rf build"}},
    )  # fmt: skip
    assert name == "Notification"
    assert payload["notification_type"] == events.PERMISSION
    assert "rm -rf build" in payload["message"]
    other = events.canonical("gemini", "Notification", {"notification_type": "Other"})[1]
    assert other["notification_type"] != events.PERMISSION
    assert events.canonical("gemini", "PreCompress", {})[0] is None
    assert events.canonical("gemini", "Stop", {})[0] is None  # Claude's word, not Gemini's
    assert events.continue_output("gemini", "x") == {"decision": "deny", "reason": "x"}
    assert not events.chain_in_payload("gemini")


def test_a_turn_with_an_approval_moves_the_states(cfg: Config) -> None:
    gemini_hook(cfg, "SessionStart", source="startup")
    assert state(cfg) == "idle"
    gemini_hook(cfg, "BeforeAgent", prompt="RUN: echo hi > out.txt")
    assert state(cfg) == "busy"
    gemini_hook(cfg, "BeforeTool", tool_name="run_shell_command", tool_input={"command": "x"})
    assert state(cfg) == "busy"
    gemini_hook(
        cfg,
        "Notification",
        notification_type="ToolPermission",
        message="Tool confirmation",
        details={"type": "exec", "command": "echo hi > out.txt"},
    )
    assert state(cfg) == "waiting"
    [note] = store.read_all(cfg.data, "supervisor")
    assert "w1 is waiting for permission" in note.body and "echo hi > out.txt" in note.body
    gemini_hook(cfg, "AfterTool", tool_name="run_shell_command", tool_response={})
    assert state(cfg) == "busy"
    gemini_hook(cfg, "AfterAgent", prompt="RUN: echo hi > out.txt", stop_hook_active=False)
    assert state(cfg) == "idle"
    gemini_hook(cfg, "SessionEnd", reason="exit")
    assert state(cfg) == "exited"


def test_mail_handed_over_at_after_agent_is_read_once_the_model_answers(cfg: Config) -> None:
    set_state(cfg, "busy")
    msg = store.send(cfg, to="w1", body="RUN: echo more", sender="supervisor")
    answer = gemini_hook(cfg, "AfterAgent", prompt="task", stop_hook_active=False)
    assert answer["decision"] == "deny"
    assert f"[cmux mail {msg.id} from supervisor" in answer["reason"]
    assert state(cfg) == "busy" and store.pending(cfg.data, "w1") == []
    # The CLI goes on with the reason as a prompt: the same turn, not yet read
    # (the model has not answered it yet).
    gemini_hook(cfg, "BeforeAgent", prompt=answer["reason"])
    assert state(cfg) == "busy"
    assert "read" not in receipts.load(cfg.data, "w1").get(msg.id, {})
    # The model's answer (a tool call) proves it was read.
    gemini_hook(cfg, "BeforeTool", tool_name="run_shell_command", tool_input={})
    assert receipts.load(cfg.data, "w1")[msg.id]["via"] == "stop-hook"


def test_the_loop_guard_holds_across_continued_turns(cfg: Config) -> None:
    """Each hand-over is followed, as with the real CLI, by a BeforeAgent
    carrying the mail and by AfterAgent with stop_hook_active false: cmux's
    own count stops the chain after MAX_CHAINED_HANDOVERS; a real prompt
    starts a new count."""
    gemini_hook(cfg, "BeforeAgent", prompt="the task")
    handed = 0
    for i in range(policy.MAX_CHAINED_HANDOVERS + 3):
        store.send(cfg, to="w1", body=f"message {i}", sender="human")
        answer = gemini_hook(cfg, "AfterAgent", prompt="the task", stop_hook_active=False)
        if not answer:
            break
        handed += 1
        assert handover.chain_count(str(cfg.data.root), "w1") == handed
        gemini_hook(cfg, "BeforeAgent", prompt=answer["reason"])  # the continuation
        gemini_hook(cfg, "BeforeTool", tool_name="run_shell_command", tool_input={})
    assert handed == policy.MAX_CHAINED_HANDOVERS
    assert state(cfg) == "idle"
    assert len(store.pending(cfg.data, "w1")) == 1  # left for the router to type
    # The router types it: a real new prompt, a new count.
    gemini_hook(cfg, "BeforeAgent", prompt="[cmux mail x from human kind=message] typed")
    assert handover.chain_count(str(cfg.data.root), "w1") == 0
    assert gemini_hook(cfg, "AfterAgent", prompt="typed", stop_hook_active=False)


def test_a_prompt_that_is_not_the_handed_over_mail_is_a_new_turn(cfg: Config) -> None:
    set_state(cfg, "busy")
    store.send(cfg, to="w1", body="one", sender="human")
    assert gemini_hook(cfg, "AfterAgent", prompt="task", stop_hook_active=False)
    assert handover.chain_count(str(cfg.data.root), "w1") == 1
    gemini_hook(cfg, "BeforeAgent", prompt="something a person typed")
    assert handover.chain_count(str(cfg.data.root), "w1") == 0
