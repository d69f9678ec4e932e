"""A scripted stand-in for the Anthropic Messages API, on loopback.

The real Claude Code CLI talks to it through ``ANTHROPIC_BASE_URL``. It needs
no account and no network, and it lets a test script what each agent does
(the script and the server are :mod:`tests.e2e.scripted`'s):

    RUN: <command>     a Bash tool call running <command>
    SAY: <text>        a plain text answer (``end_turn``)

Which instructions have already run is read from the conversation itself
(the ``tool_use`` ids this server handed out encode their position), so a
retried request gets the same answer. Title requests (no tools offered) get a
title and are not part of a conversation.

Every request is recorded (path, headers, body) so tests can assert what
reached each agent's conversation: ``texts(session_id)`` is everything the
model was shown in that session.

A test can make the API refuse or go silent, for conversation requests
(title requests keep their answer): ``fail(429, retry_after=2)`` answers
each one with that HTTP error (429 rate limit, 529 overloaded, 401 invalid
key, as the real API words them) until ``clear()``, or ``count`` times;
``hang()`` answers none (the request waits, the agent stays busy) until
``clear()``.

Run it by hand: ``python -m tests.e2e.model_server [PORT [LOG.jsonl]]``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from tests.e2e import scripted
from tests.e2e.scripted import (
    INSTRUCTION,
    Failure,
    Reply,
    ScriptedServer,
    Step,
    Turn,
    hashed_id,
    run_by_hand,
    sse,
)

__all__ = ["INSTRUCTION", "MODEL", "Failure", "ModelServer", "Request", "Step", "plan"]

MODEL = "claude-sonnet-4-5"
TOOL_PREFIX = "toolu_cmux"


@dataclass
class Request(scripted.Request):
    """One request the server received; its session is Claude Code's session id."""

    @property
    def is_side(self) -> bool:
        return is_title_request(self.body)

    @property
    def is_title(self) -> bool:
        return self.is_side

    def all_texts(self) -> list[str]:
        return all_texts(self.body)


def session_of(headers: dict[str, str], body: dict[str, Any]) -> str:
    """Claude Code's session id: a header, or ``metadata.user_id`` (a JSON object)."""
    sid = headers.get("x-claude-code-session-id", "")
    if sid:
        return sid
    try:
        meta = json.loads(str((body.get("metadata") or {}).get("user_id") or "{}"))
    except ValueError:
        return ""
    return str(meta.get("session_id", "")) if isinstance(meta, dict) else ""


# -- reading a request -----------------------------------------------------------------


def _blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list):
        return [b for b in content if isinstance(b, dict)]
    return []


def _system_text(body: dict[str, Any]) -> str:
    system = body.get("system")
    if isinstance(system, str):
        return system
    return "\n".join(str(b.get("text", "")) for b in _blocks(system))


def all_texts(body: dict[str, Any]) -> list[str]:
    """The system prompt, every text block and every tool result, in order."""
    out = [_system_text(body)]
    for msg in body.get("messages") or []:
        for block in _blocks(msg.get("content")):
            if block.get("type") == "text":
                out.append(str(block.get("text", "")))
            elif block.get("type") == "tool_result":
                out.extend(str(b.get("text", "")) for b in _blocks(block.get("content")))
            elif block.get("type") == "tool_use":
                out.append(json.dumps(block.get("input", {})))
    return out


def is_title_request(body: dict[str, Any]) -> bool:
    """A side request (session title, topic): it offers no tools."""
    return not body.get("tools")


def turns(body: dict[str, Any]) -> list[Turn]:
    """The conversation as the script reads it: an assistant message counts
    the tool calls this server made (its ids start with ``toolu_cmux``); a
    user message brings its text after its last tool result, reminders aside."""
    out: list[Turn] = []
    for msg in body.get("messages") or []:
        blocks = _blocks(msg.get("content"))
        calls, words = 0, list[str]()
        if msg.get("role") == "assistant":
            calls = sum(
                1
                for b in blocks
                if b.get("type") == "tool_use" and str(b.get("id", "")).startswith(TOOL_PREFIX)
            )
        elif msg.get("role") == "user":
            for b in blocks:
                if b.get("type") == "tool_result":
                    words = []
                elif b.get("type") == "text" and not _is_reminder(str(b.get("text", ""))):
                    words.append(str(b.get("text", "")))
        out.append(Turn(calls, words))
    return out


def plan(body: dict[str, Any]) -> Step:
    """What the scripted model does next in this conversation."""
    if is_title_request(body):
        if "title" in _system_text(body).lower():
            return Step("text", text='{"title": "Scripted session"}')
        return Step("text", text="Scripted session")
    return scripted.plan(turns(body), lambda i, n, cmd: hashed_id(TOOL_PREFIX, i, n, cmd))


def _is_reminder(text: str) -> bool:
    return text.lstrip().startswith("<system-reminder>")


def usage_for(body: dict[str, Any], output: int = 7) -> dict[str, int]:
    """Deterministic token counts, so a test can check what cmux adds up
    (``output`` per answer: a test of budgets makes answers expensive)."""
    size = len(json.dumps(body.get("messages") or []))
    return {
        "input_tokens": 10 + size // 100,
        "output_tokens": output,
        "cache_creation_input_tokens": 3,
        "cache_read_input_tokens": 5,
    }


# -- answering ------------------------------------------------------------------------


# The API's error bodies (https://docs.anthropic.com/en/api/errors).
ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request"),
    401: ("authentication_error", "invalid x-api-key"),
    403: ("permission_error", "Your API key does not have permission to use this resource"),
    429: ("rate_limit_error", "Number of requests has exceeded your rate limit"),
    500: ("api_error", "Internal server error"),
    529: ("overloaded_error", "Overloaded"),
}


def stream_events(step: Step, usage: dict[str, int], msg_id: str) -> Iterator[bytes]:
    """The Messages API's SSE: message_start, one content block, message_delta, message_stop."""
    message = {**whole_message(step, usage, msg_id), "content": [], "stop_reason": None}
    message["usage"] = {**usage, "output_tokens": 1}
    yield sse({"type": "message_start", "message": message})
    if step.kind == "tool":
        block = {"type": "tool_use", "id": step.tool_id, "name": "Bash", "input": {}}
        args = json.dumps({"command": step.command, "description": "scripted step"})
        delta = {"type": "input_json_delta", "partial_json": args}
    else:
        block = {"type": "text", "text": ""}
        delta = {"type": "text_delta", "text": step.text}
    start = {"type": "content_block_start", "index": 0, "content_block": block}
    yield sse(start)
    yield sse({"type": "content_block_delta", "index": 0, "delta": delta})
    yield sse({"type": "content_block_stop", "index": 0})
    stop = "tool_use" if step.kind == "tool" else "end_turn"
    end = {
        "type": "message_delta",
        "delta": {"stop_reason": stop, "stop_sequence": None},
        "usage": {"output_tokens": usage["output_tokens"]},
    }
    yield sse(end)
    yield sse({"type": "message_stop"})


def whole_message(step: Step, usage: dict[str, int], msg_id: str) -> dict[str, Any]:
    if step.kind == "tool":
        content: list[dict[str, Any]] = [
            {
                "type": "tool_use",
                "id": step.tool_id,
                "name": "Bash",
                "input": {"command": step.command, "description": "scripted step"},
            }
        ]
        stop = "tool_use"
    else:
        content = [{"type": "text", "text": step.text}]
        stop = "end_turn"
    return {
        "id": msg_id,
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": usage,
    }


NOT_FOUND = {"type": "error", "error": {"type": "not_found_error"}}


class ModelServer(ScriptedServer[Request]):
    """The Anthropic Messages API on 127.0.0.1:<free port>; use as a context manager."""

    def parse(self, verb: str, path: str, headers: dict[str, str], body: dict[str, Any]) -> Request:
        return Request(path, headers, body, session_of(headers, body), verb)

    def is_turn(self, req: Request) -> bool:
        return (
            req.path.startswith("/v1/messages")
            and not req.path.startswith("/v1/messages/count_tokens")
            and not req.is_title
        )

    def usage(self, body: dict[str, Any]) -> dict[str, Any]:
        return usage_for(body, self.output_tokens)

    def error_body(self, status: int) -> dict[str, Any]:
        kind, message = ERRORS.get(status, ("api_error", "error"))
        return {"type": "error", "error": {"type": kind, "message": message}}

    def respond(self, reply: Reply, req: Request) -> None:
        if req.verb != "POST":
            reply.json(404, NOT_FOUND)
            return
        if req.path.startswith("/v1/messages/count_tokens"):
            reply.json(200, {"input_tokens": usage_for(req.body)["input_tokens"]})
            return
        if not req.path.startswith("/v1/messages"):
            reply.json(404, NOT_FOUND)
            return
        if not req.is_title and self.hold(reply):
            return  # refused (title requests keep their answer)
        step = plan(req.body)
        usage = usage_for(req.body, self.output_tokens)
        msg_id = f"msg_cmux_{req.seq:06d}"
        if not req.body.get("stream"):
            reply.json(200, whole_message(step, usage, msg_id))
            return
        reply.stream(stream_events(step, usage, msg_id))


if __name__ == "__main__":  # pragma: no cover - a manual tool
    run_by_hand(ModelServer)
