"""A scripted stand-in for the Anthropic Messages API, on loopback.

The real Claude Code CLI talks to it through ``ANTHROPIC_BASE_URL``. It needs
no account and no network, and it lets a test script what each agent does:
instruction lines in the newest user text of a conversation become the
agent's actions, one per model turn.

    RUN: <command>     a Bash tool call running <command>
    SAY: <text>        a plain text answer (ends the turn)

After the last instruction has run, the model answers with a short text and
``end_turn``. A user text without instructions gets a short text answer.
Which instructions have already run is read from the conversation itself
(the ``tool_use`` ids this server handed out encode their position), so a
retried request gets the same answer.

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

import hashlib
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

MODEL = "claude-sonnet-4-5"
# An instruction starts a line, or follows the header of a cmux mail on its line.
INSTRUCTION = re.compile(r"^\s*(?:\[cmux mail [^\]]*\]\s*)?(RUN|SAY):\s*(.+?)\s*$", re.MULTILINE)
TOOL_PREFIX = "toolu_cmux"


@dataclass
class Request:
    """One request the server received."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    ts: float = field(default_factory=time.time)

    @property
    def session_id(self) -> str:
        sid = self.headers.get("x-claude-code-session-id", "")
        if sid:
            return sid
        try:
            meta = json.loads(str((self.body.get("metadata") or {}).get("user_id") or "{}"))
        except ValueError:
            return ""
        return str(meta.get("session_id", "")) if isinstance(meta, dict) else ""

    @property
    def is_title(self) -> bool:
        return is_title_request(self.body)

    def text(self) -> str:
        """Everything this request showed the model, as one string."""
        return "\n".join(all_texts(self.body))


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


@dataclass
class Step:
    kind: str  # "tool" | "text"
    text: str = ""
    command: str = ""
    tool_id: str = ""


def plan(body: dict[str, Any]) -> Step:
    """What the scripted model does next in this conversation."""
    if is_title_request(body):
        if "title" in _system_text(body).lower():
            return Step("text", text='{"title": "Scripted session"}')
        return Step("text", text="Scripted session")
    messages = body.get("messages") or []
    # Walk back to the newest user text that carries instructions; count the
    # tool calls this server made since then.
    done = 0
    for i in range(len(messages) - 1, -1, -1):
        msg = messages[i]
        blocks = _blocks(msg.get("content"))
        if msg.get("role") == "assistant":
            done += sum(
                1
                for b in blocks
                if b.get("type") == "tool_use" and str(b.get("id", "")).startswith(TOOL_PREFIX)
            )
            continue
        if msg.get("role") != "user":
            continue
        # Within a merged user message, only text after the last tool result is new.
        texts: list[str] = []
        for b in blocks:
            if b.get("type") == "tool_result":
                texts = []
            elif b.get("type") == "text" and not _is_reminder(str(b.get("text", ""))):
                texts.append(str(b.get("text", "")))
        if not texts:
            continue  # tool results only: the instructions are further back
        instructions = INSTRUCTION.findall("\n".join(texts))
        if not instructions:
            return Step("text", text="Noted.")
        if done < len(instructions):
            kind, arg = instructions[done]
            if kind == "SAY":
                return Step("text", text=arg)
            return Step("tool", command=arg, tool_id=_tool_id(i, done, arg))
        return Step("text", text=f"Done: {len(instructions)} step(s) finished.")
    return Step("text", text="Ready.")


def _is_reminder(text: str) -> bool:
    return text.lstrip().startswith("<system-reminder>")


def _tool_id(msg_index: int, step: int, command: str) -> str:
    digest = hashlib.sha1(f"{msg_index}:{step}:{command}".encode()).hexdigest()[:12]
    return f"{TOOL_PREFIX}_{msg_index}_{step}_{digest}"


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


@dataclass
class Failure:
    """How the server refuses conversation requests while it is set."""

    status: int
    retry_after: float | None = None  # seconds, sent as the retry-after header
    count: int | None = None  # how many requests to refuse (None: until cleared)

    def body(self) -> dict[str, Any]:
        kind, message = ERRORS.get(self.status, ("api_error", "error"))
        return {"type": "error", "error": {"type": kind, "message": message}}


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def stream_events(step: Step, usage: dict[str, int], msg_id: str) -> Iterator[bytes]:
    start_usage = {**usage, "output_tokens": 1}
    yield _sse(
        "message_start",
        {
            "type": "message_start",
            "message": {
                "id": msg_id,
                "type": "message",
                "role": "assistant",
                "model": MODEL,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": start_usage,
            },
        },
    )
    if step.kind == "tool":
        yield _sse(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {
                    "type": "tool_use",
                    "id": step.tool_id,
                    "name": "Bash",
                    "input": {},
                },
            },
        )
        args = json.dumps({"command": step.command, "description": "scripted step"})
        yield _sse(
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "input_json_delta", "partial_json": args},
            },
        )
        stop = "tool_use"
    else:
        yield _sse(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        )
        yield _sse(
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": step.text},
            },
        )
        stop = "end_turn"
    yield _sse("content_block_stop", {"type": "content_block_stop", "index": 0})
    yield _sse(
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop, "stop_sequence": None},
            "usage": {"output_tokens": usage["output_tokens"]},
        },
    )
    yield _sse("message_stop", {"type": "message_stop"})


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


class ModelServer:
    """A threaded HTTP server on 127.0.0.1:<free port>; use as a context manager."""

    def __init__(self, port: int = 0, *, delay: float = 0.0, log: Path | None = None) -> None:
        self.requests: list[Request] = []
        self.log = log  # a JSONL copy of every request, for a person reading along
        self.delay = delay  # seconds before each conversation answer (keeps agents busy)
        self.output_tokens = 7  # reported per answer
        self._lock = threading.Lock()
        self._count = 0
        self.failure: Failure | None = None
        self.refused = 0  # conversation requests answered with an error
        self._answer = threading.Event()  # cleared while hanging
        self._answer.set()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self.httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ModelServer:
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._answer.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> ModelServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what tests set --------------------------------------------------------------

    def fail(
        self, status: int, *, retry_after: float | None = None, count: int | None = None
    ) -> None:
        """Answer conversation requests with HTTP ``status`` (see :class:`Failure`)."""
        with self._lock:
            self.failure = Failure(status, retry_after, count)

    def hang(self) -> None:
        """Answer no conversation request until :meth:`clear`."""
        self._answer.clear()

    def clear(self) -> None:
        """Answer normally again (a hanging request is answered now)."""
        with self._lock:
            self.failure = None
        self._answer.set()

    def _refusal(self) -> Failure | None:
        with self._lock:
            f = self.failure
            if f is None:
                return None
            self.refused += 1
            if f.count is not None:
                f.count -= 1
                if f.count <= 0:
                    self.failure = None
            return f

    # -- what tests ask ---------------------------------------------------------------

    def conversation(self, session_id: str | None = None) -> list[Request]:
        """The conversation requests (not title requests), of one session if given."""
        with self._lock:
            reqs = list(self.requests)
        return [
            r
            for r in reqs
            if r.path.startswith("/v1/messages")
            and not r.path.startswith("/v1/messages/count_tokens")
            and not r.is_title
            and (session_id is None or r.session_id == session_id)
        ]

    def texts(self, session_id: str | None = None) -> str:
        """Everything the model was shown in a session (the latest request has it all)."""
        return "\n".join(r.text() for r in self.conversation(session_id))

    def sessions(self) -> set[str]:
        return {r.session_id for r in self.conversation()}

    def usage_sent(self, session_id: str) -> dict[str, int]:
        """Sum of the usage this server reported to one session's conversation."""
        total: dict[str, int] = {}
        for r in self.conversation(session_id):
            for k, v in usage_for(r.body, self.output_tokens).items():
                total[k] = total.get(k, 0) + v
        return total

    # -- HTTP -------------------------------------------------------------------------

    def _record(self, req: Request) -> str:
        with self._lock:
            self.requests.append(req)
            self._count += 1
            if self.log is not None:
                with open(self.log, "a", encoding="utf-8") as fh:
                    fh.write(
                        json.dumps({"path": req.path, "headers": req.headers, "body": req.body})
                        + "\n"
                    )
            return f"msg_cmux_{self._count:06d}"

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

            def _refuse(self, failure: Failure) -> None:
                raw = json.dumps(failure.body()).encode()
                self.send_response(failure.status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(raw)))
                if failure.retry_after is not None:
                    self.send_header("retry-after", f"{failure.retry_after:g}")
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self) -> None:
                self._json(404, {"type": "error", "error": {"type": "not_found_error"}})

            def do_HEAD(self) -> None:
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = {}
                headers = {k.lower(): v for k, v in self.headers.items()}
                req = Request(self.path, headers, body if isinstance(body, dict) else {})
                msg_id = server._record(req)
                if self.path.startswith("/v1/messages/count_tokens"):
                    self._json(200, {"input_tokens": usage_for(req.body)["input_tokens"]})
                    return
                if not self.path.startswith("/v1/messages"):
                    self._json(404, {"type": "error", "error": {"type": "not_found_error"}})
                    return
                if not req.is_title:
                    failure = server._refusal()
                    if failure is not None:
                        self._refuse(failure)
                        return
                    server._answer.wait()
                step = plan(req.body)
                usage = usage_for(req.body, server.output_tokens)
                if server.delay and not req.is_title:
                    time.sleep(server.delay)
                if not req.body.get("stream"):
                    self._json(200, whole_message(step, usage, msg_id))
                    return
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("cache-control", "no-cache")
                self.send_header("connection", "close")
                self.end_headers()
                for chunk in stream_events(step, usage, msg_id):
                    self.wfile.write(chunk)
                    self.wfile.flush()
                self.close_connection = True

        return Handler


def main() -> None:  # pragma: no cover - a manual tool
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    log = Path(sys.argv[2]) if len(sys.argv) > 2 else None
    with ModelServer(port, log=log) as srv:
        print(srv.url, flush=True)
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":  # pragma: no cover
    main()
