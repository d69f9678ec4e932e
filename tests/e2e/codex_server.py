"""A scripted stand-in for the OpenAI Responses API, on loopback, for the Codex CLI.

The real Codex CLI reaches it through a model provider of its own config
(``[model_providers.cmux]`` with ``base_url = "<url>/v1"`` and
``wire_api = "responses"``, see :func:`codex_config`). It needs no account
and no network. The instruction scheme is the one of
:mod:`tests.e2e.model_server` (its ``INSTRUCTION`` pattern is reused):

    RUN: <command>     a shell tool call running <command>
    SAY: <text>        a plain text answer (ends the turn)

one per model turn, read from the newest user message that carries
instructions; after the last one, a short text answer ends the turn. Which
instructions have already run is read from the request's ``input`` (the
``call_id`` values this server hands out start with ``call_cmux``), so a
retried request gets the same answer.

The shell tool is whichever of Codex's shell tools the request offers:
``exec_command`` (``{"cmd": ...}``), ``shell_command`` (``{"command": "..."}``)
or ``shell`` (``{"command": ["bash", "-lc", ...]}``).

Answers stream as server-sent events (``response.created``,
``response.output_item.added``, ``response.output_text.delta``,
``response.output_item.done``, ``response.completed`` with a deterministic
``usage``). Every request is recorded (path, headers, body).

Run it by hand: ``python -m tests.e2e.codex_server [PORT [LOG.jsonl]]``.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.e2e.model_server import INSTRUCTION

MODEL = "gpt-5-codex"
CALL_PREFIX = "call_cmux"
PROVIDER = "cmux"
API_KEY_ENV = "CMUX_CODEX_API_KEY"
API_KEY = "sk-cmux-codex-e2e-offline"


@dataclass
class Request:
    """One request the server received."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    ts: float = field(default_factory=time.time)

    @property
    def session_id(self) -> str:
        """Codex's conversation (thread) id, sent as a header on every turn."""
        for key in ("session_id", "session-id", "conversation_id", "x-codex-thread-id"):
            if self.headers.get(key):
                return self.headers[key]
        return str(self.body.get("prompt_cache_key") or "")

    @property
    def is_side(self) -> bool:
        return is_side_request(self.body)

    def text(self) -> str:
        return "\n".join(all_texts(self.body))


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


@dataclass
class Step:
    kind: str  # "tool" | "text"
    text: str = ""
    command: str = ""
    call_id: str = ""


def plan(body: dict[str, Any]) -> Step:
    """What the scripted model does next in this conversation."""
    if is_side_request(body):
        return Step("text", text="Scripted session")
    items = _items(body)
    done = 0
    for i in range(len(items) - 1, -1, -1):
        item = items[i]
        kind = item.get("type", "message")
        if kind == "function_call":
            if str(item.get("call_id", "")).startswith(CALL_PREFIX):
                done += 1
            continue
        if kind != "message" or item.get("role") != "user":
            continue
        texts = [u for t in _content_texts(item.get("content")) if (u := _user_text(t))]
        if not texts:
            continue
        instructions = INSTRUCTION.findall("\n".join(texts))
        if not instructions:
            return Step("text", text="Noted.")
        if done < len(instructions):
            kind, arg = instructions[done]
            if kind == "SAY":
                return Step("text", text=arg)
            return Step("tool", command=arg, call_id=_call_id(i, done, arg))
        return Step("text", text=f"Done: {len(instructions)} step(s) finished.")
    return Step("text", text="Ready.")


def _call_id(index: int, step: int, command: str) -> str:
    digest = hashlib.sha1(f"{index}:{step}:{command}".encode()).hexdigest()[:12]
    return f"{CALL_PREFIX}_{index}_{step}_{digest}"


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


def _sse(data: dict[str, Any]) -> bytes:
    return f"event: {data['type']}\ndata: {json.dumps(data)}\n\n".encode()


def output_item(
    step: Step, offered: list[str], item_id: str, escalate: bool = False
) -> dict[str, Any]:
    if step.kind == "tool":
        name, args = tool_call(step, offered, escalate)
        return {
            "type": "function_call",
            "id": item_id,
            "call_id": step.call_id,
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
    yield _sse({"type": "response.created", "response": {**base, "status": "in_progress"}})
    item = output_item(step, offered, item_id, escalate)
    if step.kind == "text":
        added = {**item, "status": "in_progress", "content": []}
        yield _sse({"type": "response.output_item.added", "output_index": 0, "item": added})
        yield _sse(
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
        yield _sse({"type": "response.output_item.added", "output_index": 0, "item": added})
    yield _sse({"type": "response.output_item.done", "output_index": 0, "item": item})
    done = {**base, "status": "completed", "output": [item], "usage": usage}
    yield _sse({"type": "response.completed", "response": done})


class CodexServer:
    """A threaded HTTP server on 127.0.0.1:<free port>; use as a context manager."""

    def __init__(self, port: int = 0, *, delay: float = 0.0, log: Path | None = None) -> None:
        self.requests: list[Request] = []
        self.log = log
        self.delay = delay
        self.output_tokens = 7
        self.escalate = False  # shell calls ask to leave the sandbox (an approval prompt)
        self._lock = threading.Lock()
        self._count = 0
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self.httpd.daemon_threads = True

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """What a Codex model provider's ``base_url`` is set to."""
        return f"{self.url}/v1"

    def start(self) -> CodexServer:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> CodexServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what tests ask ---------------------------------------------------------------

    def conversation(self, session_id: str | None = None) -> list[Request]:
        """The turn requests (POST .../responses with tools), of one session if given."""
        with self._lock:
            reqs = list(self.requests)
        return [
            r
            for r in reqs
            if r.path.rstrip("/").endswith("/responses")
            and not r.is_side
            and (session_id is None or r.session_id == session_id)
        ]

    def texts(self, session_id: str | None = None) -> str:
        return "\n".join(r.text() for r in self.conversation(session_id))

    def sessions(self) -> set[str]:
        return {r.session_id for r in self.conversation()}

    def usage_sent(self, session_id: str | None = None) -> dict[str, int]:
        """Sum of the top-level usage counts this server reported."""
        total: dict[str, int] = {}
        for r in self.conversation(session_id):
            for k, v in usage_for(r.body, self.output_tokens).items():
                if isinstance(v, int):
                    total[k] = total.get(k, 0) + v
        return total

    # -- HTTP -------------------------------------------------------------------------

    def _record(self, req: Request) -> str:
        with self._lock:
            self.requests.append(req)
            self._count += 1
            if self.log is not None:
                with open(self.log, "a", encoding="utf-8") as fh:
                    line = {"path": req.path, "headers": req.headers, "body": req.body}
                    fh.write(json.dumps(line) + "\n")
            return f"resp_cmux_{self._count:06d}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _json(self, code: int, obj: Any) -> None:
                raw = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self) -> None:
                headers = {k.lower(): v for k, v in self.headers.items()}
                server._record(Request(self.path, headers, {}))
                if self.path.split("?")[0].rstrip("/").endswith("/models"):
                    self._json(200, {"object": "list", "data": [], "models": []})
                    return
                self._json(404, {"error": {"message": "not found", "type": "not_found"}})

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = {}
                headers = {k.lower(): v for k, v in self.headers.items()}
                req = Request(self.path, headers, body if isinstance(body, dict) else {})
                resp_id = server._record(req)
                if not self.path.split("?")[0].rstrip("/").endswith("/responses"):
                    self._json(404, {"error": {"message": "not found", "type": "not_found"}})
                    return
                step = plan(req.body)
                usage = usage_for(req.body, server.output_tokens)
                offered = tool_names(req.body)
                if server.delay and not req.is_side:
                    time.sleep(server.delay)
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("cache-control", "no-cache")
                self.send_header("connection", "close")
                self.end_headers()
                for chunk in stream_events(step, offered, usage, resp_id, server.escalate):
                    self.wfile.write(chunk)
                    self.wfile.flush()
                self.close_connection = True

        return Handler


def main() -> None:  # pragma: no cover - a manual tool
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    log = Path(sys.argv[2]) if len(sys.argv) > 2 else None
    with CodexServer(port, log=log) as srv:
        print(srv.url, flush=True)
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":  # pragma: no cover
    main()
