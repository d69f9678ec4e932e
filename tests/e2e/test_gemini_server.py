"""The scripted Gemini API server on its own (no Gemini CLI needed): what it
answers, as the CLI would see it over HTTP."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest

from tests.e2e.gemini_server import SHELL_TOOL, GeminiServer, plan, usage_for

pytestmark = pytest.mark.gemini

TOOLS = [{"functionDeclarations": [{"name": SHELL_TOOL}]}]


def user(*texts: str) -> dict[str, Any]:
    return {"role": "user", "parts": [{"text": t} for t in texts]}


def call(command: str) -> dict[str, Any]:
    return {"role": "model", "parts": [{"functionCall": {"name": SHELL_TOOL, "args": {}}}]}


def response() -> dict[str, Any]:
    return {"role": "user", "parts": [{"functionResponse": {"name": SHELL_TOOL, "response": {}}}]}


def post(url: str, body: dict[str, Any]) -> tuple[int, str]:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def test_run_lines_become_shell_calls_one_per_turn_then_text() -> None:
    contents = [user("<session_context>x</session_context>", "Task:\nRUN: echo a\nRUN: echo b")]
    first = plan({"tools": TOOLS, "contents": contents})
    assert (first.kind, first.command) == ("tool", "echo a")
    contents += [call("echo a"), response()]
    second = plan({"tools": TOOLS, "contents": contents})
    assert (second.kind, second.command) == ("tool", "echo b")
    contents += [call("echo b"), response()]
    last = plan({"tools": TOOLS, "contents": contents})
    assert (last.kind, last.text) == ("text", "Done: 2 step(s) finished.")
    contents += [{"role": "model", "parts": [{"text": last.text}]}, user("SAY: hi")]
    assert plan({"tools": TOOLS, "contents": contents}).text == "hi"


def test_streams_sse_per_session_and_side_requests() -> None:
    with GeminiServer() as srv:
        base = srv.session_url("abc") + "/v1beta/models/gemini-2.5-pro"
        body = {"tools": TOOLS, "contents": [user("RUN: echo hi > x")]}
        status, text = post(base + ":streamGenerateContent?alt=sse", body)
        assert status == 200
        chunk = json.loads(text.strip().removeprefix("data: "))
        part = chunk["candidates"][0]["content"]["parts"][0]
        assert part["functionCall"]["name"] == SHELL_TOOL
        assert part["functionCall"]["args"]["command"] == "echo hi > x"
        assert chunk["usageMetadata"] == usage_for(body)
        # A side request (no tools; a JSON schema): not part of the conversation.
        schema = {
            "type": "object",
            "properties": {"next_speaker": {"type": "string", "enum": ["model", "user"]}},
        }
        side = {"contents": [user("who next?")], "generationConfig": {"responseJsonSchema": schema}}
        status, text = post(base + ":generateContent", side)
        answer = json.loads(text)["candidates"][0]["content"]["parts"][0]["text"]
        assert json.loads(answer) == {"next_speaker": "user"}
        status, text = post(base + ":countTokens", body)
        assert json.loads(text)["totalTokens"] == usage_for(body)["promptTokenCount"]
        assert [r.session_id for r in srv.conversation()] == ["abc"]
        assert srv.sessions() == {"abc"}
        assert srv.usage_sent("abc")["candidatesTokenCount"] == 7


@pytest.mark.parametrize("status", [429, 503])
def test_refuses_with_the_api_error_shape(status: int) -> None:
    with GeminiServer() as srv:
        srv.fail(status, count=1)
        url = srv.url + "/v1beta/models/m:streamGenerateContent?alt=sse"
        body = {"tools": TOOLS, "contents": [user("hi")]}
        code, text = post(url, body)
        assert code == status
        assert json.loads(text)["error"]["code"] == status
        assert post(url, body)[0] == 200
        assert srv.refused == 1
