"""What the three scripted model servers share: the script, the HTTP server, the record.

A scripted server stands in for a language model's API on loopback, so that a
real agent CLI (Claude Code, Codex CLI, Gemini CLI) runs with no account and no
network. Each program's wire format is a thin subclass of :class:`ScriptedServer`
(:mod:`tests.e2e.model_server` the Anthropic Messages API,
:mod:`tests.e2e.codex_server` the OpenAI Responses API,
:mod:`tests.e2e.gemini_server` the Gemini API); this module holds the rest.

The script: instruction lines in the newest user text of a conversation become
the agent's actions, one per model turn::

    RUN: <command>     a shell tool call running <command>
    SAY: <text>        a plain text answer (ends the turn)

After the last instruction has run, the model answers
``Done: N step(s) finished.``; a user text without instructions gets
``Noted.``. Which instructions have already run is read from the conversation
itself (the tool calls the model made since that text), so a retried request
gets the same answer: :func:`plan` is a pure function of the conversation.

The server: a :class:`~http.server.ThreadingHTTPServer` on 127.0.0.1 and a
free port, served from a daemon thread; a context manager. Every request is
recorded (:attr:`ScriptedServer.requests`, and a JSONL copy when ``log`` is
given) before it is answered, so what a test reads has reached the server.
A test can make the server refuse conversation turns (:meth:`fail`) or go
silent (:meth:`hang`) until :meth:`clear`.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Generic, NamedTuple, TypeVar

# An instruction starts a line, or follows the header of a cmux mail on its line.
INSTRUCTION = re.compile(r"^\s*(?:\[cmux mail [^\]]*\]\s*)?(RUN|SAY):\s*(.+?)\s*$", re.MULTILINE)


# -- the script -----------------------------------------------------------------------


@dataclass
class Step:
    """What the scripted model does in one turn: a tool call or a text."""

    kind: str  # "tool" | "text"
    text: str = ""
    command: str = ""
    tool_id: str = ""  # the id of the tool call this server hands out

    @property
    def call_id(self) -> str:
        """The Responses API's name for :attr:`tool_id`."""
        return self.tool_id


class Turn(NamedTuple):
    """One entry of a conversation, as the script reads it (a wire format
    makes them from its own messages, one per message, in order)."""

    calls: int  # tool calls this server made in it (a model entry)
    words: list[str]  # the new text a user entry brings (empty: nothing new)


def plan(turns: Sequence[Turn], tool_id: Callable[[int, int, str], str]) -> Step:
    """What the scripted model does next in a conversation.

    Walks back to the newest entry with words, counting the tool calls made
    since; the next instruction there that has not run is the answer.
    ``tool_id(index, step, command)`` names a new tool call (index: of that
    entry; step: of the instruction), so the same conversation always gets the
    same id."""
    done = 0
    for i in range(len(turns) - 1, -1, -1):
        done += turns[i].calls
        if not turns[i].words:
            continue
        instructions = INSTRUCTION.findall("\n".join(turns[i].words))
        if not instructions:
            return Step("text", text="Noted.")
        if done < len(instructions):
            kind, arg = instructions[done]
            if kind == "SAY":
                return Step("text", text=arg)
            return Step("tool", command=arg, tool_id=tool_id(i, done, arg))
        return Step("text", text=f"Done: {len(instructions)} step(s) finished.")
    return Step("text", text="Ready.")


def hashed_id(prefix: str, index: int, step: int, command: str) -> str:
    """A tool call id that encodes its place: ``<prefix>_<index>_<step>_<hash>``."""
    digest = hashlib.sha1(f"{index}:{step}:{command}".encode()).hexdigest()[:12]
    return f"{prefix}_{index}_{step}_{digest}"


# -- the record -----------------------------------------------------------------------


@dataclass
class Request:
    """One request the server received (a wire format adds how to read its body)."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    session_id: str = ""  # which agent's conversation, as the wire format tells it
    verb: str = "POST"
    seq: int = 0  # 1, 2, ... in the order the server received them
    ts: float = field(default_factory=time.time)

    @property
    def is_side(self) -> bool:
        """Not a turn of the agent (a title, a summary, a routing question)."""
        return False

    def all_texts(self) -> list[str]:
        return []

    def text(self) -> str:
        """Everything this request showed the model, as one string."""
        return "\n".join(self.all_texts())


@dataclass
class Failure:
    """How the server refuses conversation turns while it is set."""

    status: int
    retry_after: float | None = None  # seconds, sent as the retry-after header
    count: int | None = None  # how many turns to refuse (None: until cleared)


# -- answering ------------------------------------------------------------------------


def sse(data: dict[str, Any], *, named: bool = True, eol: str = "\n") -> bytes:
    """One server-sent event: the ``data:`` line, after an ``event:`` line
    naming ``data["type"]`` when ``named``."""
    head = f"event: {data['type']}{eol}" if named else ""
    return f"{head}data: {json.dumps(data)}{eol}{eol}".encode()


class Reply:
    """How a wire format answers the request at hand."""

    def __init__(self, handler: BaseHTTPRequestHandler) -> None:
        self._h = handler

    def json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        raw = json.dumps(obj).encode()
        self._h.send_response(status)
        self._h.send_header("content-type", "application/json")
        self._h.send_header("content-length", str(len(raw)))
        for k, v in (headers or {}).items():
            self._h.send_header(k, v)
        self._h.end_headers()
        self._h.wfile.write(raw)

    def stream(self, chunks: Iterable[bytes]) -> None:
        """A ``text/event-stream`` answer, each chunk flushed as it is written;
        the connection closes after it (that ends the stream for the client)."""
        self._h.send_response(200)
        self._h.send_header("content-type", "text/event-stream")
        self._h.send_header("cache-control", "no-cache")
        self._h.send_header("connection", "close")
        self._h.end_headers()
        for chunk in chunks:
            self._h.wfile.write(chunk)
            self._h.wfile.flush()
        self._h.close_connection = True


R = TypeVar("R", bound=Request)
S = TypeVar("S", bound="ScriptedServer[Any]")


class ScriptedServer(Generic[R]):
    """A threaded HTTP server on 127.0.0.1:<free port>; use as a context manager.

    A wire format says how to read a request (:meth:`parse`), which requests
    are the agent's turns (:meth:`is_turn`), what it answers (:meth:`respond`),
    the usage it reports (:meth:`usage`) and its error bodies (:meth:`error_body`).
    """

    def __init__(self, port: int = 0, *, delay: float = 0.0, log: Path | None = None) -> None:
        self.requests: list[R] = []
        self.log = log  # a JSONL copy of every request, for a person reading along
        self.delay = delay  # seconds before each turn's answer (keeps agents busy)
        self.output_tokens = 7  # reported per answer
        self.failure: Failure | None = None
        self.refused = 0  # turns answered with an error
        self._lock = threading.Lock()
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

    def start(self: S) -> S:
        # A short poll interval: stop() returns within 50 ms, not half a second.
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._answer.set()  # a hanging request is answered, so shutdown does not wait on it
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self: S) -> S:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what a wire format says ------------------------------------------------------

    def parse(self, verb: str, path: str, headers: dict[str, str], body: dict[str, Any]) -> R:
        raise NotImplementedError

    def is_turn(self, req: R) -> bool:
        """A request of the agent's conversation (not a side or a token count)."""
        raise NotImplementedError

    def respond(self, reply: Reply, req: R) -> None:
        raise NotImplementedError

    def usage(self, body: dict[str, Any]) -> dict[str, Any]:
        """The usage this server reports for a turn with this body."""
        raise NotImplementedError

    def error_body(self, status: int) -> dict[str, Any]:
        """The API's error body for an HTTP status."""
        raise NotImplementedError

    def hold(self, reply: Reply) -> bool:
        """Before a turn's answer: refuse it as :meth:`fail` set (True: the
        refusal is sent, answer nothing more), or wait while :meth:`hang` is
        on; then :attr:`delay`."""
        failure = self._refusal()
        if failure is not None:
            extra = {}
            if failure.retry_after is not None:
                extra["retry-after"] = f"{failure.retry_after:g}"
            reply.json(failure.status, self.error_body(failure.status), extra)
            return True
        self._answer.wait()
        if self.delay:
            time.sleep(self.delay)
        return False

    # -- what tests set --------------------------------------------------------------

    def fail(
        self, status: int, *, retry_after: float | None = None, count: int | None = None
    ) -> None:
        """Answer turns with HTTP ``status`` and the API's error body, until
        :meth:`clear` or for ``count`` turns (see :class:`Failure`)."""
        with self._lock:
            self.failure = Failure(status, retry_after, count)

    def hang(self) -> None:
        """Answer no turn until :meth:`clear` (the request waits, the agent stays busy)."""
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

    def conversation(self, session_id: str | None = None) -> list[R]:
        """The turn requests, of one session if given, in the order received."""
        with self._lock:
            reqs = list(self.requests)
        return [
            r
            for r in reqs
            if self.is_turn(r) and (session_id is None or r.session_id == session_id)
        ]

    def texts(self, session_id: str | None = None) -> str:
        """Everything the model was shown in a session (the latest request has it all)."""
        return "\n".join(r.text() for r in self.conversation(session_id))

    def sessions(self) -> set[str]:
        return {r.session_id for r in self.conversation()}

    def usage_sent(self, session_id: str | None = None) -> dict[str, int]:
        """Sum of the (top-level, whole-number) usage counts this server reported."""
        total: dict[str, int] = {}
        for r in self.conversation(session_id):
            for k, v in self.usage(r.body).items():
                if isinstance(v, int):
                    total[k] = total.get(k, 0) + v
        return total

    # -- HTTP -------------------------------------------------------------------------

    def _record(self, req: R) -> None:
        with self._lock:
            self.requests.append(req)
            req.seq = len(self.requests)
            if self.log is not None:
                row = {
                    "session": req.session_id,
                    "verb": req.verb,
                    "path": req.path,
                    "headers": req.headers,
                    "body": req.body,
                }
                with open(self.log, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps(row) + "\n")

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _serve(self, verb: str) -> None:
                body: Any = {}
                if verb == "POST":
                    length = int(self.headers.get("content-length") or 0)
                    raw = self.rfile.read(length) if length else b""
                    try:
                        body = json.loads(raw or b"{}")
                    except ValueError:
                        body = {}
                headers = {k.lower(): v for k, v in self.headers.items()}
                req = server.parse(verb, self.path, headers, body if isinstance(body, dict) else {})
                server._record(req)
                server.respond(Reply(self), req)

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

            def do_HEAD(self) -> None:  # a client's "is it up?"; not recorded
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

        return Handler


def run_by_hand(server_type: type[ScriptedServer[Any]]) -> None:  # pragma: no cover
    """``python -m tests.e2e.<module> [PORT [LOG.jsonl]]``: serve until Ctrl-C."""
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    log = Path(sys.argv[2]) if len(sys.argv) > 2 else None
    with server_type(port, log=log) as srv:
        print(srv.url, flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
