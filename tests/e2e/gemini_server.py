"""A scripted stand-in for the Gemini API, on loopback.

The real Gemini CLI talks to it through ``GOOGLE_GEMINI_BASE_URL`` (with any
``GEMINI_API_KEY``). It needs no account and no network. The script and the
server are :mod:`tests.e2e.scripted`'s, read from the newest user text of a
conversation, one instruction per model turn:

    RUN: <command>     a ``run_shell_command`` function call running <command>
    SAY: <text>        a plain text answer (ends the turn)

After the last instruction has run, the model answers with a short text and
``finishReason: STOP``. A user text without instructions gets a short text.
Which instructions have already run is read from the conversation itself (the
function calls the model made since that user text), so a retried request gets
the same answer.

Endpoints, as the CLI (through @google/genai) calls them:

    POST /v1beta/models/<model>:streamGenerateContent?alt=sse   SSE, one chunk
    POST /v1beta/models/<model>:generateContent                 one JSON answer
    POST /v1beta/models/<model>:countTokens                     {"totalTokens": N}

Side requests (the CLI asks for JSON: model routing, "who speaks next",
session summaries) carry ``generationConfig.responseMimeType:
application/json`` or a response schema; they get an object that fits the
schema and are not part of a conversation.

Sessions: the base URL may carry a path prefix, ``http://127.0.0.1:PORT/s/NAME``;
requests under it belong to session ``NAME`` (the Gemini API has no session
header of its own). Every request is recorded (path, headers, body).

Usage is deterministic (:func:`usage_for`), so a test can check what cmux adds
up. ``fail(429)`` / ``hang()`` / ``clear()`` work as in every scripted server.

Run it by hand: ``python -m tests.e2e.gemini_server [PORT [LOG.jsonl]]``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from tests.e2e import scripted
from tests.e2e.scripted import Failure, Reply, ScriptedServer, Step, Turn, run_by_hand, sse

__all__ = ["MODEL", "SHELL_TOOL", "Failure", "GeminiServer", "Request", "plan", "usage_for"]

MODEL = "gemini-2.5-pro"
SHELL_TOOL = "run_shell_command"
CALL_PREFIX = "cmux_call"
SESSION_PATH = re.compile(r"^/s/([^/]+)(/.*)$")
TURN_METHODS = ("streamGenerateContent", "generateContent")

# The API's error bodies (https://ai.google.dev/gemini-api/docs/troubleshooting).
ERRORS: dict[int, tuple[str, str]] = {
    400: ("INVALID_ARGUMENT", "Request contains an invalid argument."),
    401: ("UNAUTHENTICATED", "API key not valid. Please pass a valid API key."),
    403: ("PERMISSION_DENIED", "The caller does not have permission"),
    429: ("RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."),
    500: ("INTERNAL", "An internal error has occurred."),
    503: ("UNAVAILABLE", "The model is overloaded. Please try again later."),
}


@dataclass
class Request(scripted.Request):
    """One request the server received; its path is without the ``/s/<session>``
    prefix, which names its session."""

    @property
    def method(self) -> str:
        """``streamGenerateContent``, ``generateContent``, ``countTokens``, ..."""
        tail = self.path.split("?", 1)[0].rsplit(":", 1)
        return tail[1] if len(tail) == 2 else ""

    @property
    def model(self) -> str:
        m = re.search(r"/models/([^/:]+)", self.path)
        return m.group(1) if m else ""

    @property
    def is_side(self) -> bool:
        return is_side_request(self.body)

    def all_texts(self) -> list[str]:
        return all_texts(self.body)


# -- reading a request -----------------------------------------------------------------


def _parts(content: Any) -> list[dict[str, Any]]:
    if not isinstance(content, dict):
        return []
    return [p for p in content.get("parts") or [] if isinstance(p, dict)]


def all_texts(body: dict[str, Any]) -> list[str]:
    """The system instruction, every text part, function call and function
    response, in order."""
    out = [str(p.get("text", "")) for p in _parts(body.get("systemInstruction")) if "text" in p]
    for content in body.get("contents") or []:
        for part in _parts(content):
            if "text" in part:
                out.append(str(part.get("text", "")))
            elif "functionCall" in part:
                out.append(json.dumps((part.get("functionCall") or {}).get("args", {})))
            elif "functionResponse" in part:
                out.append(json.dumps((part.get("functionResponse") or {}).get("response", {})))
    return out


def is_side_request(body: dict[str, Any]) -> bool:
    """A side request (a session summary, routing, "who speaks next"), not a
    turn of the conversation: it offers no tools, or it asks for JSON."""
    cfg = body.get("generationConfig") or {}
    return bool(
        not body.get("tools")
        or cfg.get("responseMimeType") == "application/json"
        or cfg.get("responseSchema")
        or cfg.get("responseJsonSchema")
    )


def fill_schema(schema: Any) -> Any:
    """A value that fits a JSON schema well enough for the CLI's side requests
    (the next speaker is the user, the routed model is the one asked for)."""
    if not isinstance(schema, dict):
        return "scripted"
    kind = str(schema.get("type", "")).lower()
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        for preferred in ("user", "pro", "model"):
            if preferred in enum:
                return preferred
        return enum[0]
    if kind == "object" or "properties" in schema:
        props = schema.get("properties") or {}
        return {k: fill_schema(v) for k, v in props.items()}
    if kind == "array":
        return []
    if kind == "boolean":
        return False
    if kind in ("number", "integer"):
        return 0
    return "scripted"


def side_answer(body: dict[str, Any]) -> str:
    cfg = body.get("generationConfig") or {}
    schema = cfg.get("responseJsonSchema") or cfg.get("responseSchema")
    if schema:
        return json.dumps(fill_schema(schema))
    if cfg.get("responseMimeType") == "application/json":
        return json.dumps({"reasoning": "scripted", "next_speaker": "user"})
    return "Scripted session"


def turns(body: dict[str, Any]) -> list[Turn]:
    """The ``contents`` as the script reads them: a model content counts its
    function calls; a user content brings its text after its last function
    response."""
    out: list[Turn] = []
    for content in body.get("contents") or []:
        parts = _parts(content)
        calls, words = 0, list[str]()
        if content.get("role") == "model":
            calls = sum(1 for p in parts if "functionCall" in p)
        else:
            for p in parts:
                if "functionResponse" in p:
                    words = []
                elif "text" in p:
                    words.append(str(p.get("text", "")))
        out.append(Turn(calls, words))
    return out


def plan(body: dict[str, Any]) -> Step:
    """What the scripted model does next in this conversation."""
    return scripted.plan(turns(body), lambda i, n, _: f"{CALL_PREFIX}_{i}_{n}")


def usage_for(body: dict[str, Any], output: int = 7) -> dict[str, int]:
    """Deterministic token counts, in the API's usageMetadata fields."""
    size = len(json.dumps(body.get("contents") or []))
    prompt = 10 + size // 100
    return {
        "promptTokenCount": prompt,
        "candidatesTokenCount": output,
        "cachedContentTokenCount": 5,
        "totalTokenCount": prompt + output,
    }


def answer(step: Step, usage: dict[str, int]) -> dict[str, Any]:
    """A GenerateContentResponse (also one SSE chunk of a stream)."""
    if step.kind == "tool":
        part: dict[str, Any] = {
            "functionCall": {
                "id": step.tool_id,
                "name": SHELL_TOOL,
                "args": {"command": step.command, "description": "scripted step"},
            }
        }
    else:
        part = {"text": step.text}
    return {
        "candidates": [
            {"content": {"role": "model", "parts": [part]}, "finishReason": "STOP", "index": 0}
        ],
        "usageMetadata": usage,
        "modelVersion": MODEL,
        "responseId": "cmux-scripted",
    }


class GeminiServer(ScriptedServer[Request]):
    """The Gemini API on 127.0.0.1:<free port>; use as a context manager."""

    def session_url(self, session: str) -> str:
        """A base URL whose requests are recorded under ``session``."""
        return f"{self.url}/s/{session}"

    def parse(self, verb: str, path: str, headers: dict[str, str], body: dict[str, Any]) -> Request:
        session = ""
        m = SESSION_PATH.match(path)
        if m:
            session, path = m.group(1), m.group(2)
        return Request(path, headers, body, session, verb)

    def is_turn(self, req: Request) -> bool:
        """A (stream)generateContent call that is not a side request."""
        return req.method in TURN_METHODS and not req.is_side

    def usage(self, body: dict[str, Any]) -> dict[str, Any]:
        return usage_for(body, self.output_tokens)

    def error_body(self, status: int) -> dict[str, Any]:
        kind, message = ERRORS.get(status, ("UNKNOWN", "error"))
        return {"error": {"code": status, "message": message, "status": kind}}

    def respond(self, reply: Reply, req: Request) -> None:
        if req.verb == "POST" and req.method == "countTokens":
            reply.json(200, {"totalTokens": usage_for(req.body)["promptTokenCount"]})
            return
        if req.verb != "POST" or req.method not in TURN_METHODS:
            reply.json(404, {"error": {"code": 404, "message": "not found", "status": "NOT_FOUND"}})
            return
        if req.is_side:
            step = Step("text", text=side_answer(req.body))
        elif self.hold(reply):
            return  # refused
        else:
            step = plan(req.body)
        obj = answer(step, usage_for(req.body, self.output_tokens))
        if req.method == "generateContent":
            reply.json(200, obj)
        else:
            reply.stream([sse(obj, named=False, eol="\r\n")])  # one chunk


if __name__ == "__main__":  # pragma: no cover - a manual tool
    run_by_hand(GeminiServer)
