"""The real Codex CLI, offline, in a tmux pane, against the scripted Responses API.

Groundwork for a Codex adapter (issue 14): what the CLI does when cmux
would run it, checked against the binary itself. Each test starts
``codex`` (from CMUX_TEST_CODEX; bin/test installs it with npm into
.cache/codex) in a private tmux server, with a CODEX_HOME of its own (never
~/.codex) whose config.toml points a model provider at
:class:`tests.e2e.codex_server.CodexServer` and whose hooks.json appends each
hook's stdin JSON to a file. The first prompt is the command line's
positional argument: the TUI stays interactive. docs/AGENTS.md writes up
what these tests prove.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.codex_server import API_KEY, API_KEY_ENV, MODEL, PROVIDER, CodexServer
from tests.helpers import wait_until

pytestmark = [pytest.mark.codex, pytest.mark.timeout(60)]

EVENTS = (
    "SessionStart",
    "UserPromptSubmit",
    "PreToolUse",
    "PermissionRequest",
    "PostToolUse",
    "Stop",
    "SessionEnd",
)
TASK = "Please do this.\nRUN: echo hello > out.txt"
# What the approval prompt shows (checked with 0.171.0).
APPROVAL = "Would you like to run the following command?"


@pytest.fixture
def codex_bin() -> Path:
    """The Codex binary named by CMUX_TEST_CODEX, or a visible skip."""
    value = os.environ.get("CMUX_TEST_CODEX", "")
    if not value:
        pytest.skip(
            "codex: CMUX_TEST_CODEX is not set (bin/test installs the Codex CLI with npm "
            "into .cache/codex and sets it; or point it at a `codex` binary)"
        )
    path = Path(value)
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.skip(f"codex: CMUX_TEST_CODEX={value} is not an executable file")
    return path


@pytest.fixture
def server() -> Iterator[CodexServer]:
    with CodexServer() as srv:
        yield srv


def codex_config(base_url: str, project: Path) -> str:
    """A config.toml of our own: the scripted provider, hooks on, no first-run
    questions for ``project`` (trusted), no update check, no analytics."""
    return f"""\
model = "{MODEL}"
model_provider = "{PROVIDER}"
check_for_update_on_startup = false

[model_providers.{PROVIDER}]
name = "cmux scripted model"
base_url = "{base_url}"
wire_api = "responses"
env_key = "{API_KEY_ENV}"
request_max_retries = 0
stream_max_retries = 0

[features]
hooks = true

[analytics]
enabled = false

[projects."{project}"]
trust_level = "trusted"
"""


def hook_script(path: Path, log: Path, *, block_once: str = "") -> Path:
    """A command hook that appends its stdin (one JSON object) as a line of
    ``log``; with ``block_once``, the first call answers Codex with
    ``{"decision": "block", "reason": block_once}`` (a Stop hook: go on)."""
    lines = ["#!/bin/sh", f"{{ cat; echo; }} >> {shlex.quote(str(log))}"]
    if block_once:
        marker = shlex.quote(str(path) + ".blocked")
        answer = json.dumps({"decision": "block", "reason": block_once})
        lines += [
            f"if [ ! -e {marker} ]; then",
            f"  touch {marker}",
            f"  printf '%s\\n' {shlex.quote(answer)}",
            "fi",
        ]
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o755)
    return path


@dataclass
class Codex:
    """One Codex CLI in a pane of a private tmux server."""

    home: Path  # CODEX_HOME
    cwd: Path
    hooks_log: Path
    socket: str
    env: dict[str, str]

    def tmux(self, *args: str) -> str:
        return subprocess.run(
            ["tmux", "-L", self.socket, *args],
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-J", "-t", "codex")

    def keys(self, *keys: str, literal: bool = False) -> None:
        self.tmux("send-keys", "-t", "codex", *(["-l"] if literal else []), *keys)

    def submit(self, text: str) -> None:
        """Type ``text`` into the composer and submit it. Codex takes keys that
        come less than 8 ms apart for a paste, and an Enter within 120 ms of one
        for a newline (tui/src/bottom_pane/paste_burst.rs): an Enter right after
        the text was seen to leave it unsent, so wait until the text shows,
        then a pause well past that window."""
        self.keys(text, literal=True)
        self.wait_screen(f"› {text}", timeout=10)
        time.sleep(0.5)
        self.keys("Enter")

    def wait_screen(self, needle: str, timeout: float = 30) -> str:
        def seen() -> str:
            s = self.screen()
            return s if needle in s else ""

        return wait_until(
            seen,
            timeout=timeout,
            interval=0.2,
            what=f"{needle!r} on the screen",
        )

    def wait_still(self, quiet: float = 0.3, timeout: float = 10) -> str:
        """The screen once it has not changed for ``quiet`` seconds. Codex
        reads a key that comes within milliseconds of the approval prompt's
        first frame and does nothing with it (seen with strace: the TUI read
        the ``y`` 13 ms after drawing the prompt, and the prompt stayed); a
        person answers after reading the prompt, so wait as they would."""
        last, since = self.screen(), time.monotonic()

        def still() -> str:
            nonlocal last, since
            now = self.screen()
            if now != last:
                last, since = now, time.monotonic()
            return now if time.monotonic() - since >= quiet else ""

        return wait_until(still, timeout=timeout, interval=0.05, what=f"the screen still {quiet}s")

    def hooks(self) -> list[dict[str, Any]]:
        if not self.hooks_log.exists():
            return []
        return [json.loads(ln) for ln in self.hooks_log.read_text().splitlines() if ln.strip()]

    def names(self) -> list[str]:
        return [str(h.get("hook_event_name")) for h in self.hooks()]

    def wait_hook(self, name: str, count: int = 1, timeout: float = 30) -> list[dict[str, Any]]:
        def seen() -> list[dict[str, Any]]:
            got = [h for h in self.hooks() if h.get("hook_event_name") == name]
            return got if len(got) >= count else []

        return wait_until(seen, timeout=timeout, interval=0.2, what=f"{count}x {name} hook")

    def transcript_events(self) -> list[dict[str, Any]]:
        files = sorted((self.home / "sessions").rglob("rollout-*.jsonl"))
        assert files, f"no transcript under {self.home / 'sessions'}"
        return [json.loads(ln) for ln in files[-1].read_text().splitlines() if ln.strip()]


@pytest.fixture
def start_codex(
    codex_bin: Path, server: CodexServer, tmp_path: Path, isolated_env: dict[str, str]
) -> Iterator[Any]:
    """Start ``codex [args] PROMPT`` in a tmux pane (200x50); returns a :class:`Codex`."""
    started: list[Codex] = []

    def start(
        prompt: str, *args: str, stop_block: str = "", events: tuple[str, ...] = EVENTS
    ) -> Codex:
        home = tmp_path / "codex-home"
        cwd = tmp_path / "work"
        home.mkdir()
        cwd.mkdir()
        subprocess.run(["git", "init", "-q"], cwd=cwd, check=True, env=isolated_env)
        log = tmp_path / "hooks.jsonl"
        hook = hook_script(tmp_path / "hook.sh", log)
        stop = hook_script(tmp_path / "stop.sh", log, block_once=stop_block) if stop_block else hook
        command = {name: str(stop if name == "Stop" else hook) for name in events}
        hooks = {
            name: [{"hooks": [{"type": "command", "command": command[name]}]}] for name in events
        }
        (home / "hooks.json").write_text(json.dumps({"hooks": hooks}, indent=1) + "\n")
        (home / "config.toml").write_text(codex_config(server.base_url, cwd))
        # The pane's whole environment: nothing of the caller's but PATH and the
        # like; any address but loopback goes to a dead proxy.
        pane_env = {
            **isolated_env,
            "TERM": "xterm-256color",
            "CODEX_HOME": str(home),
            API_KEY_ENV: API_KEY,
            "HTTPS_PROXY": "http://127.0.0.1:9",
            "HTTP_PROXY": "http://127.0.0.1:9",
            "ALL_PROXY": "http://127.0.0.1:9",
            "NO_PROXY": "127.0.0.1,localhost",
        }
        argv = [str(codex_bin), "--no-alt-screen", "--dangerously-bypass-hook-trust", *args, prompt]
        launcher = tmp_path / "launch.sh"
        exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in pane_env.items())
        launcher.write_text(f"#!/bin/sh\n{exports}exec {shlex.join(argv)}\n")
        launcher.chmod(0o755)
        c = Codex(home, cwd, log, f"cx{os.getpid()}", dict(isolated_env))
        c.tmux(
            "new-session", "-d", "-s", "codex", "-x", "200", "-y", "50", "-c", str(cwd),
            f"{launcher}; sleep 600",
        )  # fmt: skip
        started.append(c)
        return c

    yield start
    for c in started:
        print(f"--- screen ---\n{c.screen() if _alive(c) else '(gone)'}")
        print(f"--- hooks ---\n{c.names()}")
        subprocess.run(["tmux", "-L", c.socket, "kill-server"], env=c.env, capture_output=True)


def _alive(c: Codex) -> bool:
    try:
        c.tmux("has-session", "-t", "codex")
    except subprocess.CalledProcessError:
        return False
    return True


def test_codex_runs_the_first_prompt_offline_and_its_hooks_fire(
    start_codex: Any, server: CodexServer
) -> None:
    c: Codex = start_codex(TASK)
    out = c.cwd / "out.txt"
    wait_until(out.exists, timeout=30, interval=0.2, what="out.txt written by the shell tool")
    assert out.read_text() == "hello\n"
    stop = c.wait_hook("Stop")[0]
    c.wait_screen("Done: 1 step(s) finished.")

    # The hooks, in order, with the fields cmux reads.
    assert c.names() == ["SessionStart", "UserPromptSubmit", "PreToolUse", "PostToolUse", "Stop"]
    start, prompt, pre, post = c.hooks()[:4]
    sid = start["session_id"]
    assert all(h["session_id"] == sid for h in c.hooks())
    assert start["source"] == "startup" and start["model"] == MODEL
    assert {"transcript_path", "cwd", "permission_mode"} <= start.keys()
    assert Path(start["cwd"]) == c.cwd
    transcript = Path(start["transcript_path"])
    assert transcript.is_file() and transcript.is_relative_to(c.home / "sessions")
    assert prompt["prompt"] == TASK and prompt["turn_id"]
    assert pre["tool_name"] == "Bash" and pre["tool_input"] == {"command": "echo hello > out.txt"}
    assert pre["tool_use_id"].startswith("call_cmux")
    assert post["tool_use_id"] == pre["tool_use_id"] and "tool_response" in post
    assert stop["stop_hook_active"] is False
    assert stop["last_assistant_message"] == "Done: 1 step(s) finished."
    assert stop["turn_id"] == prompt["turn_id"]

    # The server got the turn: the prompt, then the tool's output; the session
    # id of the hooks is the `session-id` header of every request.
    turns = server.conversation(sid)
    assert len(turns) == 2, [r.path for r in server.requests]
    assert all(r.path == "/v1/responses" and r.body.get("stream") is True for r in turns)
    assert TASK in turns[0].text()
    assert "exec_command" in [t.get("name") for t in turns[0].body["tools"]]
    assert any(i.get("type") == "function_call_output" for i in turns[1].body["input"])
    assert turns[0].headers["authorization"] == f"Bearer {API_KEY}"

    # Tokens: the transcript's last token_count adds up what the server sent.
    counts = [
        e["payload"]["info"]
        for e in c.transcript_events()
        if e.get("type") == "event_msg"
        and e["payload"].get("type") == "token_count"
        and e["payload"].get("info")
    ]
    total = counts[-1]["total_token_usage"]
    sent = server.usage_sent(sid)
    assert total["input_tokens"] == sent["input_tokens"]
    assert total["output_tokens"] == sent["output_tokens"]
    assert total["total_tokens"] == sent["total_tokens"]
    assert total["cached_input_tokens"] == 5 * len(turns)
    assert total["reasoning_output_tokens"] == 2 * len(turns)


def test_a_stop_hook_that_blocks_continues_the_turn_with_its_reason(
    start_codex: Any, server: CodexServer
) -> None:
    """cmux's mail hand-over at turn end: the Stop hook answers
    ``{"decision": "block", "reason": MAIL}`` and Codex goes on, MAIL being the
    next user message; the next Stop says ``stop_hook_active: true``."""
    mail = "[cmux mail 0001-1-aa from sup kind=message]\nRUN: echo again > again.txt"
    c: Codex = start_codex(TASK, stop_block=mail)
    wait_until((c.cwd / "again.txt").exists, timeout=30, interval=0.2, what="again.txt")
    first, second = c.wait_hook("Stop", count=2)
    assert (first["stop_hook_active"], second["stop_hook_active"]) == (False, True)
    assert first["turn_id"] == second["turn_id"]  # the same turn, continued
    screen = c.wait_screen("Blocked by hook")
    assert "RUN: echo again > again.txt" in screen
    # What the model was shown: the reason, XML-escaped, in a <hook_prompt> user message.
    last = server.conversation()[-1].body["input"]
    shown = [
        p["text"]
        for i in last
        if i.get("type") == "message" and i.get("role") == "user"
        for p in i["content"]
        if "<hook_prompt" in p.get("text", "")
    ]
    assert shown and "RUN: echo again &gt; again.txt</hook_prompt>" in shown[0]
    # /quit ends the session: SessionEnd fires and the pane's program exits.
    c.submit("/quit")
    end = c.wait_hook("SessionEnd")[0]
    assert end["session_id"] == first["session_id"] and "reason" in end
    c.wait_screen("codex resume")


def test_an_approval_prompt_shows_and_y_approves_it(start_codex: Any, server: CodexServer) -> None:
    """With approval policy on-request, a command that asks to leave the sandbox
    (``sandbox_permissions: require_escalated``) waits for the user; the
    PermissionRequest hook fires first; ``y`` runs it."""
    server.escalate = True
    c: Codex = start_codex(TASK, "--ask-for-approval", "on-request")
    screen = c.wait_screen(APPROVAL)
    assert "$ echo hello > out.txt" in screen
    assert "Reason: scripted step" in screen
    assert "1. Yes, proceed (y)" in screen
    assert "3. No, and tell Codex what to do differently (esc)" in screen
    assert "Press enter to confirm or esc to cancel" in screen
    ask = c.wait_hook("PermissionRequest")[0]
    assert ask["tool_name"] == "Bash"
    assert ask["tool_input"] == {"command": "echo hello > out.txt", "description": "scripted step"}
    assert not (c.cwd / "out.txt").exists()
    assert "Stop" not in c.names()
    assert APPROVAL in c.wait_still()
    c.keys("y")
    wait_until((c.cwd / "out.txt").exists, timeout=30, interval=0.2, what="out.txt after y")
    c.wait_hook("Stop")
    assert c.names() == [
        "SessionStart",
        "UserPromptSubmit",
        "PreToolUse",
        "PermissionRequest",
        "PostToolUse",
        "Stop",
    ]


def test_esc_at_the_approval_prompt_denies_and_ends_the_turn_without_a_stop_hook(
    start_codex: Any, server: CodexServer
) -> None:
    """Esc denies: the command does not run, the turn is interrupted, no Stop
    hook fires; the transcript records ``turn_aborted``."""
    server.escalate = True
    c: Codex = start_codex(TASK, "--ask-for-approval", "on-request")
    c.wait_screen(APPROVAL)
    c.wait_hook("PermissionRequest")
    assert APPROVAL in c.wait_still()
    c.keys("Escape")
    screen = c.wait_screen("Conversation interrupted")
    assert "You canceled the request to run echo hello > out.txt" in screen
    time.sleep(1)  # a Stop hook, if one came, would have come by now
    assert not (c.cwd / "out.txt").exists()
    assert "Stop" not in c.names()
    kinds = [e["payload"].get("type") for e in c.transcript_events() if e["type"] == "event_msg"]
    assert "turn_aborted" in kinds and "task_complete" not in kinds
