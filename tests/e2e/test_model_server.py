"""The scripted model server on its own (no Claude Code needed): what it
answers, as Claude Code would see it over HTTP."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from tests.e2e.model_server import ModelServer, plan

TOOLS = [{"name": "Bash", "input_schema": {}}]


def user(*texts: str) -> dict[str, Any]:
    return {"role": "user", "content": [{"type": "text", "text": t} for t in texts]}


def tool_use(step: Any) -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": [{"type": "tool_use", "id": step.tool_id, "name": "Bash", "input": {}}],
    }


def result(step: Any) -> dict[str, Any]:
    return {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": step.tool_id, "content": "ok"}],
    }


def test_run_lines_become_bash_calls_one_per_turn_then_end_turn() -> None:
    msgs = [user("<system-reminder>\nRUN: not me\n</system-reminder>", "RUN: echo a\nRUN: echo b")]
    first = plan({"tools": TOOLS, "messages": msgs})
    assert (first.kind, first.command) == ("tool", "echo a")
    msgs += [tool_use(first), result(first)]
    second = plan({"tools": TOOLS, "messages": msgs})
    assert (second.kind, second.command) == ("tool", "echo b")
    assert second.tool_id != first.tool_id
    msgs += [tool_use(second), result(second)]
    assert plan({"tools": TOOLS, "messages": msgs}).kind == "text"
    # the same request again gets the same answer (a retry is harmless)
    assert plan({"tools": TOOLS, "messages": msgs[:1]}).tool_id == first.tool_id


def test_mail_and_stop_hook_feedback_carry_instructions() -> None:
    header = "[cmux mail 0001-1-aa from w1 kind=message]"
    step = plan({"tools": TOOLS, "messages": [user(f"{header} RUN: mailbox done ok")]})
    assert step.command == "mailbox done ok"
    fb = f"Stop hook feedback:\n{header}\nRUN: ls"
    msgs = [user("RUN: true"), {"role": "assistant", "content": "done"}, user(fb)]
    assert plan({"tools": TOOLS, "messages": msgs}).command == "ls"


def test_plain_text_gets_text_and_side_requests_get_a_title() -> None:
    assert plan({"tools": TOOLS, "messages": [user("hello")]}).kind == "text"
    title = plan({"system": "Generate a concise title", "messages": [user("RUN: rm -rf /")]})
    assert title.kind == "text" and json.loads(title.text)["title"]


def test_streams_sse_and_records_what_it_received() -> None:
    with ModelServer() as srv:
        body = {
            "stream": True,
            "tools": TOOLS,
            "messages": [user("RUN: echo hi")],
            "metadata": {"user_id": json.dumps({"session_id": "s-1"})},
        }
        req = urllib.request.Request(
            f"{srv.url}/v1/messages?beta=true",
            data=json.dumps(body).encode(),
            headers={"content-type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            raw = resp.read().decode()
        events = [ln.split(": ", 1)[1] for ln in raw.splitlines() if ln.startswith("event: ")]
        assert events[0] == "message_start" and events[-1] == "message_stop"
        data = [json.loads(ln[6:]) for ln in raw.splitlines() if ln.startswith("data: ")]
        delta = next(d for d in data if d["type"] == "content_block_delta")["delta"]
        assert json.loads(delta["partial_json"])["command"] == "echo hi"
        stop = next(d for d in data if d["type"] == "message_delta")["delta"]["stop_reason"]
        assert stop == "tool_use"
        assert srv.sessions() == {"s-1"}
        assert "RUN: echo hi" in srv.texts("s-1")
        assert srv.usage_sent("s-1")["input_tokens"] > 0
