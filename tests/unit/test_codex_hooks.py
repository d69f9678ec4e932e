"""The Codex CLI's hook events through cmux's seam (cmux/agents/adapters/events.py):
payloads shaped as Codex 0.171.0 sends them (docs/AGENTS.md, "Hooks")."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from cmux.agents import registry
from cmux.agents.adapters import events
from cmux.agents.registry import Agent
from cmux.config import Config
from cmux.delivery import hooks
from cmux.mail import store
from tests.unit.test_hookstate import set_state, state

SID = "019adf00-0000-7000-8000-00000000c0de"


@pytest.fixture
def cfg(cfg: Config, monkeypatch: pytest.MonkeyPatch) -> Config:
    monkeypatch.setenv("CMUX_HOME", str(cfg.data.root))
    monkeypatch.setenv("CMUX_PROJECT", str(cfg.project_root))
    registry.save(cfg.data, Agent(name="supervisor", role="supervisor", profile="shell"))
    registry.save(
        cfg.data,
        Agent(name="w1", role="worker", profile="codex", adapter="codex", parent="supervisor"),
    )
    return cfg


def codex_hook(cfg: Config, event: str, **payload: Any) -> str:
    base = {"session_id": SID, "transcript_path": f"/x/rollout-t-{SID}.jsonl", "cwd": "/p"}
    out = io.StringIO()
    env = {"CMUX_HOME": str(cfg.data.root), "CMUX_AGENT": "w1", "CMUX_ROLE": "worker"}
    stdin = io.StringIO(json.dumps({**base, "hook_event_name": event, **payload}))
    assert hooks.run(event, stdin, out, env, "codex") == 0
    return out.getvalue()


def test_a_permission_request_is_a_permission_notification() -> None:
    payload = {"tool_name": "Bash", "tool_input": {"command": "rm x", "description": "cleanup"}}
    event, shaped = events.canonical("codex", "PermissionRequest", payload)
    assert event == "Notification"
    assert shaped["notification_type"] == events.PERMISSION
    assert shaped["message"] == "Codex asks to run rm x (cleanup)"
    assert events.canonical("codex", "PostToolUse", {})[0] == "PreToolUse"
    assert events.canonical("codex", "PreCompact", {})[0] is None
    assert events.continue_output("codex", "mail") == {"decision": "block", "reason": "mail"}
    assert events.chain_in_payload("codex")


def test_codex_events_drive_the_states_and_record_its_session(cfg: Config) -> None:
    codex_hook(cfg, "SessionStart", source="startup")
    assert state(cfg) == "idle"
    rec = registry.get(cfg.data, "w1")
    assert rec.session_id == SID and rec.transcript == f"/x/rollout-t-{SID}.jsonl"
    codex_hook(cfg, "UserPromptSubmit", turn_id="t1", prompt="do it")
    assert state(cfg) == "busy"
    cmd = {"command": "echo hi > out.txt", "description": "scripted step"}
    # The approval prompt shows: waiting, the supervisor is told, and the hook
    # prints nothing (an answer would decide the request: the prompt must stay).
    assert codex_hook(cfg, "PermissionRequest", tool_name="Bash", tool_input=cmd) == ""
    assert state(cfg) == "waiting"
    [note] = store.read_all(cfg.data, "supervisor")
    assert "w1 is waiting for permission: Codex asks to run echo hi > out.txt" in note.body
    codex_hook(cfg, "PostToolUse", tool_name="Bash", tool_input=cmd, tool_response="")
    assert state(cfg) == "busy"
    assert codex_hook(cfg, "Stop", stop_hook_active=False, last_assistant_message="ok") == ""
    assert state(cfg) == "idle"
    codex_hook(cfg, "SessionEnd", reason="other")
    assert state(cfg) == "exited"


def test_mail_waiting_at_stop_continues_the_turn_with_block(cfg: Config) -> None:
    set_state(cfg, "busy")
    msg = store.send(cfg, to="w1", body="RUN: echo again", sender="supervisor")
    answer = json.loads(codex_hook(cfg, "Stop", stop_hook_active=False))
    assert answer["decision"] == "block"
    assert f"[cmux mail {msg.id} from supervisor kind=message] RUN: echo again" in answer["reason"]
    assert state(cfg) == "busy" and store.pending(cfg.data, "w1") == []
    # The continued turn's Stop says stop_hook_active: nothing more waits, idle.
    assert codex_hook(cfg, "Stop", stop_hook_active=True) == ""
    assert state(cfg) == "idle"
