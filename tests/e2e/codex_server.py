"""A scripted stand-in for the OpenAI Responses API, on loopback, for the Codex CLI.

The real Codex CLI reaches it through a model provider of its own config
(``[model_providers.cmux]`` with ``base_url = "<url>/v1"`` and
``wire_api = "responses"``, see ``codex_config`` in
:mod:`tests.e2e.test_codex_offline`). It needs no account and no network. The
script and the server are :mod:`tests.e2e.scripted`'s:

    RUN: <command>     a shell tool call running <command>
    SAY: <text>        a plain text answer (ends the turn)

Which instructions have already run is read from the request's ``input`` (the
``call_id`` values this server hands out start with ``call_cmux``), so a
retried request gets the same answer.

The shell tool is whichever of Codex's shell tools the request offers:
``exec_command`` (``{"cmd": ...}``), ``shell_command`` (``{"command": "..."}``)
or ``shell`` (``{"command": ["bash", "-lc", ...]}``).

Answers stream as server-sent events (``response.created``,
``response.output_item.added``, ``response.output_text.delta``,
``response.output_item.done``, ``response.completed`` with a deterministic
``usage``). Every request is recorded (path, headers, body). ``fail(429)``
refuses turns with the API's error body, ``hang()`` holds them, until ``clear()``.

Run it by hand: ``python -m tests.e2e.codex_server [PORT [LOG.jsonl]]``.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.e2e import scripted
from tests.e2e.scripted import Reply, ScriptedServer, Step, Turn, hashed_id, run_by_hand, sse

__all__ = ["API_KEY", "API_KEY_ENV", "MODEL", "PROVIDER", "CodexServer", "Request", "Step", "plan"]

MODEL = "gpt-5-codex"
CALL_PREFIX = "call_cmux"
PROVIDER = "cmux"
API_KEY_ENV = "CMUX_CODEX_API_KEY"
API_KEY = "sk-cmux-codex-e2e-offline"


@dataclass
class Request(scripted.Request):
    """One request the server received; its session is Codex's thread id."""

    @property
    def is_side(self) -> bool:
        return is_side_request(self.body)

    def all_texts(self) -> list[str]:
        return all_texts(self.body)


def session_of(headers: dict[str, str], body: dict[str, Any]) -> str:
    """Codex's conversation (thread) id, sent as a header on every turn."""
    for key in ("session_id", "session-id", "conversation_id", "x-codex-thread-id"):
        if headers.get(key):
            return headers[key]
    return str(body.get("prompt_cache_key") or "")


# -- reading a request -----------------------------------------------------------------


def _content_texts(content: Any) -> list[str]:
    if isinstance(content, str):
        return [content]
    out: list[str] = []
    if isinstance(content, list):
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                out.append(part["text"])
    return out


def _items(body: dict[str, Any]) -> list[dict[str, Any]]:
    items = body.get("input")
    if isinstance(items, str):
        return [{"type": "message", "role": "user", "content": items}]
    return [i for i in items or [] if isinstance(i, dict)]


def all_texts(body: dict[str, Any]) -> list[str]:
    """The instructions, every message text, tool call and tool output, in order."""
    out = [str(body.get("instructions") or "")]
    for item in _items(body):
        kind = item.get("type", "message")
        if kind == "message":
            out.extend(_content_texts(item.get("content")))
        elif kind == "function_call":
            out.append(str(item.get("arguments", "")))
        elif kind in ("function_call_output", "custom_tool_call_output"):
            output = item.get("output")
            out.extend(_content_texts(output) if not isinstance(output, str) else [output])
    return out


def tool_names(body: dict[str, Any]) -> list[str]:
    names: list[str] = []
    for tool in body.get("tools") or []:
        if isinstance(tool, dict):
            names.append(str(tool.get("name") or (tool.get("function") or {}).get("name") or ""))
    return names


def is_side_request(body: dict[str, Any]) -> bool:
    """A request that offers no tools (a title, a summary): not a turn of the agent."""
    return not body.get("tools")


HOOK_PROMPT = re.compile(r"^\s*<hook_prompt\b[^>]*>(.*)</hook_prompt>\s*$", re.DOTALL)


def _user_text(text: str) -> str:
    """The part of a user message that is the user's (or a hook's) own words.

    Codex puts context of its own in user messages (``<environment_context>``,
    AGENTS.md): none of it counts. A Stop hook's ``reason`` arrives as
    ``<hook_prompt hook_run_id="...">REASON</hook_prompt>``, XML-escaped."""
    m = HOOK_PROMPT.match(text)
    if m:
        return html.unescape(m.group(1))
    t = text.lstrip()
    if t.startswith("<") or t.startswith("# AGENTS.md"):
        return ""
    return text


def turns(body: dict[str, Any]) -> list[Turn]:
    """The ``input`` items as the script reads them: a function call this
    server made (``call_id`` starting with ``call_cmux``) counts; a user
    message brings its own words (see :func:`_user_text`)."""
    out: list[Turn] = []
    for item in _items(body):
        kind = item.get("type", "message")
        calls = int(
            kind == "function_call" and str(item.get("call_id", "")).startswith(CALL_PREFIX)
        )
        words: list[str] = []
        if kind == "message" and item.get("role") == "user":
            words = [u for t in _content_texts(item.get("content")) if (u := _user_text(t))]
        out.append(Turn(calls, words))
    return out


def plan(body: dict[str, Any]) -> Step:
    """What the scripted model does next in this conversation."""
    if is_side_request(body):
        return Step("text", text="Scripted session")
    return scripted.plan(turns(body), lambda i, n, cmd: hashed_id(CALL_PREFIX, i, n, cmd))


ESCALATE = {"sandbox_permissions": "require_escalated", "justification": "scripted step"}


def tool_call(step: Step, offered: list[str], escalate: bool = False) -> tuple[str, str]:
    """(tool name, JSON arguments) of a shell call running ``step.command``;
    ``escalate`` asks to run it outside the sandbox, which Codex puts to the
    user as an approval prompt (approval policy ``on-request``)."""
    extra = ESCALATE if escalate else {}
    if "exec_command" in offered:
        return "exec_command", json.dumps({"cmd": step.command, **extra})
    if "shell_command" in offered:
        return "shell_command", json.dumps({"command": step.command, **extra})
    return "shell", json.dumps({"command": ["bash", "-lc", step.command], **extra})


def usage_for(body: dict[str, Any], output: int = 7) -> dict[str, Any]:
    """Deterministic token counts (the Responses API's ``usage`` object)."""
    size = len(json.dumps(body.get("input") or []))
    inp = 10 + size // 100
    return {
        "input_tokens": inp,
        "input_tokens_details": {"cached_tokens": 5},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": 2},
        "total_tokens": inp + output,
    }


# -- answering ------------------------------------------------------------------------


def output_item(
    step: Step, offered: list[str], item_id: str, escalate: bool = False
) -> dict[str, Any]:
    if step.kind == "tool":
        name, args = tool_call(step, offered, escalate)
        return {
            "type": "function_call",
            "id": item_id,
            "call_id": step.tool_id,
            "name": name,
            "arguments": args,
            "status": "completed",
        }
    return {
        "type": "message",
        "id": item_id,
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": step.text, "annotations": []}],
    }


def stream_events(
    step: Step, offered: list[str], usage: dict[str, Any], resp_id: str, escalate: bool = False
) -> Iterator[bytes]:
    item_id = f"item_{resp_id}"
    base = {"id": resp_id, "object": "response", "model": MODEL, "output": []}
    yield sse({"type": "response.created", "response": {**base, "status": "in_progress"}})
    item = output_item(step, offered, item_id, escalate)
    if step.kind == "text":
        added = {**item, "status": "in_progress", "content": []}
        yield sse({"type": "response.output_item.added", "output_index": 0, "item": added})
        yield sse(
            {
                "type": "response.output_text.delta",
                "item_id": item_id,
                "output_index": 0,
                "content_index": 0,
                "delta": step.text,
            }
        )
    else:
        added = {**item, "status": "in_progress", "arguments": ""}
        yield sse({"type": "response.output_item.added", "output_index": 0, "item": added})
    yield sse({"type": "response.output_item.done", "output_index": 0, "item": item})
    done = {**base, "status": "completed", "output": [item], "usage": usage}
    yield sse({"type": "response.completed", "response": done})


# The API's error bodies (https://platform.openai.com/docs/guides/error-codes).
ERRORS: dict[int, tuple[str, str, str]] = {
    400: ("invalid_request_error", "invalid_request", "Invalid request"),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided"),
    403: ("invalid_request_error", "unsupported_country_region_territory", "Not supported"),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests"),
    500: ("server_error", "server_error", "The server had an error processing your request"),
    503: ("server_error", "server_is_overloaded", "The engine is currently overloaded"),
}


class CodexServer(ScriptedServer[Request]):
    """The OpenAI Responses API on 127.0.0.1:<free port>; use as a context manager."""

    def __init__(self, port: int = 0, *, delay: float = 0.0, log: Path | None = None) -> None:
        super().__init__(port, delay=delay, log=log)
        self.escalate = False  # shell calls ask to leave the sandbox (an approval prompt)

    @property
    def base_url(self) -> str:
        """What a Codex model provider's ``base_url`` is set to."""
        return f"{self.url}/v1"

    def parse(self, verb: str, path: str, headers: dict[str, str], body: dict[str, Any]) -> Request:
        return Request(path, headers, body, session_of(headers, body), verb)

    def is_turn(self, req: Request) -> bool:
        """POST .../responses with tools."""
        return req.verb == "POST" and _endpoint(req.path) == "responses" and not req.is_side

    def usage(self, body: dict[str, Any]) -> dict[str, Any]:
        return usage_for(body, self.output_tokens)

    def error_body(self, status: int) -> dict[str, Any]:
        kind, code, message = ERRORS.get(status, ("server_error", "server_error", "error"))
        return {"error": {"message": message, "type": kind, "param": None, "code": code}}

    def respond(self, reply: Reply, req: Request) -> None:
        endpoint = _endpoint(req.path)
        if req.verb == "GET" and endpoint == "models":
            reply.json(200, {"object": "list", "data": [], "models": []})
            return
        if req.verb != "POST" or endpoint != "responses":
            reply.json(404, {"error": {"message": "not found", "type": "not_found"}})
            return
        if not req.is_side and self.hold(reply):
            return  # refused
        step = plan(req.body)
        usage = usage_for(req.body, self.output_tokens)
        resp_id = f"resp_cmux_{req.seq:06d}"
        reply.stream(stream_events(step, tool_names(req.body), usage, resp_id, self.escalate))


def _endpoint(path: str) -> str:
    """The last segment of a path, without its query: ``responses``, ``models``."""
    return path.split("?")[0].rstrip("/").rsplit("/", 1)[-1]


if __name__ == "__main__":  # pragma: no cover - a manual tool
    run_by_hand(CodexServer)
