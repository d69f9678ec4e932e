"""A scripted stand-in for the Gemini API, on loopback.

The real Gemini CLI talks to it through ``GOOGLE_GEMINI_BASE_URL`` (with any
``GEMINI_API_KEY``). It needs no account and no network. The instructions are
those of :mod:`tests.e2e.model_server` (the Claude stand-in), read from the
newest user text of a conversation, one per model turn:

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
up. ``fail(429)`` / ``hang()`` / ``clear()`` work as in the Claude stand-in.

Run it by hand: ``python -m tests.e2e.gemini_server [PORT [LOG.jsonl]]``.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.e2e.model_server import INSTRUCTION, Step

MODEL = "gemini-2.5-pro"
SHELL_TOOL = "run_shell_command"
CALL_PREFIX = "cmux_call"
SESSION_PATH = re.compile(r"^/s/([^/]+)(/.*)$")

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
class Request:
    """One request the server received."""

    path: str  # without the /s/<session> prefix
    headers: dict[str, str]
    body: dict[str, Any]
    session_id: str = ""
    ts: float = field(default_factory=time.time)

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

    def text(self) -> str:
        """Everything this request showed the model, as one string."""
        return "\n".join(all_texts(self.body))


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


def plan(body: dict[str, Any]) -> Step:
    """What the scripted model does next in this conversation."""
    contents = body.get("contents") or []
    done = 0
    for i in range(len(contents) - 1, -1, -1):
        content = contents[i]
        parts = _parts(content)
        if content.get("role") == "model":
            done += sum(1 for p in parts if "functionCall" in p)
            continue
        # A user content: only text after the last function response is new.
        texts: list[str] = []
        for p in parts:
            if "functionResponse" in p:
                texts = []
            elif "text" in p:
                texts.append(str(p.get("text", "")))
        if not texts:
            continue  # function responses only: the instructions are further back
        instructions = INSTRUCTION.findall("\n".join(texts))
        if not instructions:
            return Step("text", text="Noted.")
        if done < len(instructions):
            kind, arg = instructions[done]
            if kind == "SAY":
                return Step("text", text=arg)
            return Step("tool", command=arg, tool_id=f"{CALL_PREFIX}_{i}_{done}")
        return Step("text", text=f"Done: {len(instructions)} step(s) finished.")
    return Step("text", text="Ready.")


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


@dataclass
class Failure:
    """How the server refuses conversation requests while it is set."""

    status: int
    retry_after: float | None = None
    count: int | None = None

    def body(self) -> dict[str, Any]:
        kind, message = ERRORS.get(self.status, ("UNKNOWN", "error"))
        return {"error": {"code": self.status, "message": message, "status": kind}}


class GeminiServer:
    """A threaded HTTP server on 127.0.0.1:<free port>; use as a context manager."""

    def __init__(self, port: int = 0, *, delay: float = 0.0, log: Path | None = None) -> None:
        self.requests: list[Request] = []
        self.log = log
        self.delay = delay  # seconds before each conversation answer
        self.output_tokens = 7
        self._lock = threading.Lock()
        self.failure: Failure | None = None
        self.refused = 0
        self._answer = threading.Event()
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

    def session_url(self, session: str) -> str:
        """A base URL whose requests are recorded under ``session``."""
        return f"{self.url}/s/{session}"

    def start(self) -> GeminiServer:
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._answer.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> GeminiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what tests set --------------------------------------------------------------

    def fail(
        self, status: int, *, retry_after: float | None = None, count: int | None = None
    ) -> None:
        with self._lock:
            self.failure = Failure(status, retry_after, count)

    def hang(self) -> None:
        self._answer.clear()

    def clear(self) -> None:
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
        """The conversation requests (not side or countTokens requests)."""
        with self._lock:
            reqs = list(self.requests)
        return [
            r
            for r in reqs
            if r.method in ("streamGenerateContent", "generateContent")
            and not r.is_side
            and (session_id is None or r.session_id == session_id)
        ]

    def texts(self, session_id: str | None = None) -> str:
        return "\n".join(r.text() for r in self.conversation(session_id))

    def sessions(self) -> set[str]:
        return {r.session_id for r in self.conversation()}

    def usage_sent(self, session_id: str | None = None) -> dict[str, int]:
        """Sum of the usage this server reported to a session's conversation."""
        total: dict[str, int] = {}
        for r in self.conversation(session_id):
            for k, v in usage_for(r.body, self.output_tokens).items():
                total[k] = total.get(k, 0) + v
        return total

    # -- HTTP -------------------------------------------------------------------------

    def _record(self, req: Request) -> None:
        with self._lock:
            self.requests.append(req)
            if self.log is not None:
                with open(self.log, "a", encoding="utf-8") as fh:
                    row = {"session": req.session_id, "path": req.path, "body": req.body}
                    fh.write(json.dumps(row) + "\n")

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _json(self, code: int, obj: Any, extra: dict[str, str] | None = None) -> None:
                raw = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(raw)))
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(raw)

            def _not_found(self) -> None:
                self._json(
                    404, {"error": {"code": 404, "message": "not found", "status": "NOT_FOUND"}}
                )

            def do_GET(self) -> None:
                self._not_found()

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = {}
                path, session = self.path, ""
                m = SESSION_PATH.match(path)
                if m:
                    session, path = m.group(1), m.group(2)
                headers = {k.lower(): v for k, v in self.headers.items()}
                req = Request(path, headers, body if isinstance(body, dict) else {}, session)
                server._record(req)
                method = req.method
                if method == "countTokens":
                    self._json(200, {"totalTokens": usage_for(req.body)["promptTokenCount"]})
                    return
                if method not in ("streamGenerateContent", "generateContent"):
                    self._not_found()
                    return
                if req.is_side:
                    step = Step("text", text=side_answer(req.body))
                else:
                    failure = server._refusal()
                    if failure is not None:
                        extra = {}
                        if failure.retry_after is not None:
                            extra["retry-after"] = f"{failure.retry_after:g}"
                        self._json(failure.status, failure.body(), extra)
                        return
                    server._answer.wait()
                    step = plan(req.body)
                    if server.delay:
                        time.sleep(server.delay)
                obj = answer(step, usage_for(req.body, server.output_tokens))
                if method == "generateContent":
                    self._json(200, obj)
                    return
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("cache-control", "no-cache")
                self.send_header("connection", "close")
                self.end_headers()
                self.wfile.write(f"data: {json.dumps(obj)}\r\n\r\n".encode())
                self.wfile.flush()
                self.close_connection = True

        return Handler


def main() -> None:  # pragma: no cover - a manual tool
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    log = Path(sys.argv[2]) if len(sys.argv) > 2 else None
    with GeminiServer(port, log=log) as srv:
        print(srv.url, flush=True)
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":  # pragma: no cover
    main()
