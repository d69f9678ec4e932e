"""The scripted Responses API server on its own (no Codex CLI needed): what it
answers, as the Codex CLI would see it over HTTP."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest

from tests.e2e.codex_server import CodexServer, Step, plan, tool_call

TOOLS = [{"type": "function", "name": "exec_command", "parameters": {}}]


def user(*texts: str) -> dict[str, Any]:
    return {
        "type": "message",
        "role": "user",
        "content": [{"type": "input_text", "text": t} for t in texts],
    }


def call(step: Step) -> list[dict[str, Any]]:
    return [
        {"type": "function_call", "call_id": step.call_id, "name": "exec_command"},
        {"type": "function_call_output", "call_id": step.call_id, "output": "ok"},
    ]


def test_run_lines_become_shell_calls_one_per_request_then_a_text() -> None:
    items = [user("<environment_context>RUN: not me</environment_context>", "RUN: echo a\nRUN: b")]
    first = plan({"tools": TOOLS, "input": items})
    assert (first.kind, first.command) == ("tool", "echo a")
    items += call(first)
    second = plan({"tools": TOOLS, "input": items})
    assert (second.kind, second.command) == ("tool", "b") and second.call_id != first.call_id
    items += call(second)
    assert plan({"tools": TOOLS, "input": items}).kind == "text"
    assert plan({"tools": TOOLS, "input": items[:1]}).call_id == first.call_id  # a retry


def test_a_stop_hook_reason_is_read_unescaped_and_side_requests_get_text() -> None:
    reason = '<hook_prompt hook_run_id="stop:1:x">[cmux mail 1 from s]\nRUN: a &gt; b</hook_prompt>'
    items = [user("RUN: true"), user(reason)]
    assert plan({"tools": TOOLS, "input": items}).command == "a > b"
    assert plan({"tools": [], "input": [user("RUN: rm -rf /")]}).kind == "text"


def test_the_shell_call_fits_the_tool_offered_and_can_ask_to_escalate() -> None:
    step = Step("tool", command="ls", tool_id="call_cmux_x")
    assert tool_call(step, ["exec_command"]) == ("exec_command", '{"cmd": "ls"}')
    assert tool_call(step, ["shell_command"])[0] == "shell_command"
    name, args = tool_call(step, ["shell"], escalate=True)
    assert name == "shell" and json.loads(args)["sandbox_permissions"] == "require_escalated"


def test_streams_sse_and_records_what_it_received() -> None:
    with CodexServer() as srv:
        body = {"stream": True, "tools": TOOLS, "input": [user("RUN: echo hi")]}
        req = urllib.request.Request(
            f"{srv.base_url}/responses",
            data=json.dumps(body).encode(),
            headers={"content-type": "application/json", "session-id": "s-1"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            raw = resp.read().decode()
        data = [json.loads(ln[6:]) for ln in raw.splitlines() if ln.startswith("data: ")]
        assert data[0]["type"] == "response.created"
        assert data[-1]["type"] == "response.completed"
        done = next(d for d in data if d["type"] == "response.output_item.done")["item"]
        assert done["type"] == "function_call" and json.loads(done["arguments"]) == {
            "cmd": "echo hi"
        }
        assert srv.sessions() == {"s-1"}
        assert srv.usage_sent("s-1")["output_tokens"] == 7
        assert data[-1]["response"]["usage"]["output_tokens"] == 7


def test_refuses_turns_with_the_api_error_shape_then_answers_again() -> None:
    with CodexServer() as srv:
        srv.fail(429, retry_after=1, count=1)
        body = {"stream": True, "tools": TOOLS, "input": [user("SAY: hi")]}
        req = urllib.request.Request(
            f"{srv.base_url}/responses",
            data=json.dumps(body).encode(),
            headers={"content-type": "application/json"},
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(req, timeout=10)
        assert refused.value.code == 429 and refused.value.headers["retry-after"] == "1"
        assert json.loads(refused.value.read())["error"]["code"] == "rate_limit_exceeded"
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 200 and "response.completed" in resp.read().decode()
        assert srv.refused == 1 and len(srv.conversation()) == 2
