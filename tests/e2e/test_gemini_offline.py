"""The real Gemini CLI, offline, against the scripted Gemini API server.

Groundwork for a Gemini adapter (issue 14): no cmux here, only the facts an
adapter relies on, proven against the CLI that bin/test installs from npm into
.cache/gemini-cli (CMUX_TEST_GEMINI; pinned in bin/test). Each test starts the
CLI in a pane of a private tmux server (the test's TMUX_TMPDIR and HOME, from
tests/conftest.py's isolated_env) with:

- ``GEMINI_CLI_HOME=<tmp>/gemini-home``: the CLI's home (it reads and writes
  ``$GEMINI_CLI_HOME/.gemini/``), never the user's ``~/.gemini``;
  ``settings.json`` there selects API-key auth, turns off folder trust,
  telemetry, usage statistics and update checks, and names command hooks that
  append their stdin JSON to a file;
- ``GOOGLE_GEMINI_BASE_URL`` pointing at the server, any ``GEMINI_API_KEY``;
- the first prompt as a positional argument (interactive mode goes on after it),
  ``--session-id`` (a known session id) and ``--approval-mode``.

Run alone: ``bin/test -m gemini``. docs/AGENTS.md has what these tests showed.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.gemini_server import MODEL, GeminiServer, usage_for
from tests.helpers import wait_until

pytestmark = [pytest.mark.gemini, pytest.mark.timeout(90)]

API_KEY = "gemini-cmux-offline-0000000000000000"
EVENTS = (
    "SessionStart",
    "SessionEnd",
    "BeforeAgent",
    "AfterAgent",
    "BeforeTool",
    "AfterTool",
    "Notification",
    "PreCompress",
)
# The hook: append the event (one JSON line, with the values of a few environment
# variables under "_env") to HOOKS_LOG; at AfterAgent, while
# a file CONTINUE holds text, answer "deny" with that text as the reason once
# (the CLI then goes on with the reason as a new prompt).
HOOK = """\
#!{python}
import json, os, sys
data = json.load(sys.stdin)
probe = ("CMUX_PANE_PROBE", "CMUX_HOOK_PROBE", "GEMINI_SESSION_ID", "GEMINI_PROJECT_DIR")
data["_env"] = {{k: os.environ.get(k) for k in probe}}
with open({log!r}, "a", encoding="utf-8") as fh:
    fh.write(json.dumps(data) + "\\n")
out = {{}}
if data.get("hook_event_name") == "AfterAgent" and os.path.exists({cont!r}):
    with open({cont!r}, encoding="utf-8") as fh:
        reason = fh.read()
    os.remove({cont!r})
    out = {{"decision": "deny", "reason": reason}}
print(json.dumps(out))
"""


@pytest.fixture
def gemini_bin() -> Path:
    """The Gemini CLI named by CMUX_TEST_GEMINI, or a visible skip."""
    value = os.environ.get("CMUX_TEST_GEMINI", "")
    if not value:
        pytest.skip(
            "gemini: CMUX_TEST_GEMINI is not set (bin/test installs @google/gemini-cli with "
            "npm into .cache/gemini-cli and sets it; npm missing?)"
        )
    path = Path(value)
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.skip(f"gemini: CMUX_TEST_GEMINI={value} is not an executable file")
    return path


@pytest.fixture
def server() -> Iterator[GeminiServer]:
    with GeminiServer() as srv:
        yield srv


def settings(hook: Path) -> dict[str, Any]:
    """The CLI's settings.json: offline, no first-run questions, our hooks."""
    return {
        "security": {"auth": {"selectedType": "gemini-api-key"}, "folderTrust": {"enabled": False}},
        "general": {"enableAutoUpdate": False, "enableAutoUpdateNotification": False},
        "privacy": {"usageStatisticsEnabled": False},
        "telemetry": {"enabled": False},
        "model": {"name": MODEL},
        "ui": {"hideTips": True, "hideBanner": True},
        "hooks": {
            event: [
                {
                    "matcher": "",
                    "hooks": [
                        {
                            "type": "command",
                            "command": str(hook),
                            "name": f"cmux-{event}",
                            "timeout": 10000,
                            "env": {"CMUX_HOOK_PROBE": "from-settings"},
                        }
                    ],
                }
            ]
            for event in EVENTS
        },
    }


@dataclass
class Gemini:
    """One Gemini CLI in a tmux pane of the test's private tmux server."""

    binary: Path
    server: GeminiServer
    env: dict[str, str]
    root: Path  # the test's tmp_path
    session_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def __post_init__(self) -> None:
        self.home = self.root / "gemini-home"  # GEMINI_CLI_HOME
        self.work = self.root / "work"  # the CLI's working directory
        self.hooks_log = self.root / "hooks.jsonl"
        self.cont = self.root / "continue.txt"
        self.hook = self.root / "hook.py"
        (self.home / ".gemini").mkdir(parents=True)
        self.work.mkdir()
        subprocess.run(["git", "init", "-q", str(self.work)], env=self.env, check=True)
        self.hook.write_text(
            HOOK.format(python=sys.executable, log=str(self.hooks_log), cont=str(self.cont))
        )
        self.hook.chmod(0o755)
        (self.home / ".gemini" / "settings.json").write_text(
            json.dumps(settings(self.hook), indent=1) + "\n"
        )

    def tmux(self, *args: str) -> str:
        out = subprocess.run(
            ["tmux", "-L", "gemini", *args], env=self.env, capture_output=True, text=True
        )
        return out.stdout

    def start(self, prompt: str, approval_mode: str = "yolo") -> None:
        cli_env = {
            "GEMINI_CLI_HOME": str(self.home),
            "GEMINI_API_KEY": API_KEY,
            "GOOGLE_GEMINI_BASE_URL": self.server.session_url(self.session_id),
            "GEMINI_CLI_NO_RELAUNCH": "1",  # one node process, not a relaunched child
            "CMUX_PANE_PROBE": "from-pane",
        }
        argv = [
            "env",
            *(f"{k}={v}" for k, v in cli_env.items()),
            str(self.binary),
            "--session-id",
            self.session_id,
            "--approval-mode",
            approval_mode,
            prompt,
        ]
        self.tmux(
            "new-session", "-d", "-s", "g", "-x", "200", "-y", "50", "-c", str(self.work),
            shlex.join(argv),
        )  # fmt: skip

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-J", "-t", "g")

    def wait_screen(self, *needles: str, timeout: float = 40) -> str:
        def check() -> str:
            text = self.screen()
            return text if all(n in text for n in needles) else ""

        return wait_until(check, timeout=timeout, interval=0.2, what=f"{needles} on screen")

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        if not self.hooks_log.exists():
            return []
        out = [json.loads(line) for line in self.hooks_log.read_text().splitlines() if line]
        return [e for e in out if name is None or e.get("hook_event_name") == name]

    def wait_event(self, name: str, count: int = 1, timeout: float = 40) -> list[dict[str, Any]]:
        return wait_until(
            lambda: (lambda evs: evs if len(evs) >= count else [])(self.events(name)),
            timeout=timeout,
            interval=0.2,
            what=f"{count} {name} hook event(s)",
        )

    def wait_file(self, name: str, timeout: float = 40) -> Path:
        path = self.work / name
        wait_until(path.exists, timeout=timeout, what=name)
        return path

    def transcript(self) -> list[dict[str, Any]]:
        """The session's transcript (JSONL): the last record of each message id."""
        path = Path(self.events("SessionStart")[0]["transcript_path"])
        by_id: dict[str, dict[str, Any]] = {}
        for line in path.read_text().splitlines():
            rec = json.loads(line)
            if "id" in rec and "type" in rec:
                by_id[str(rec["id"])] = rec
        return list(by_id.values())


@pytest.fixture
def gemini(
    gemini_bin: Path, server: GeminiServer, isolated_env: dict[str, str], tmp_path: Path
) -> Iterator[Gemini]:
    g = Gemini(gemini_bin, server, dict(isolated_env), tmp_path)
    yield g
    print("--- screen ---\n" + g.screen())
    print("--- hook events ---\n" + "\n".join(str(e)[:300] for e in g.events()))
    g.tmux("kill-server")


def test_task_runs_hooks_fire_tokens_recorded(gemini: Gemini, server: GeminiServer) -> None:
    gemini.start("RUN: echo hello > out.txt")

    # The command ran, the turn ended.
    assert gemini.wait_file("out.txt").read_text() == "hello\n"
    after = gemini.wait_event("AfterAgent")[0]

    # The server got the conversation, under the session of our base URL.
    conv = server.conversation(gemini.session_id)
    assert conv, server.requests
    assert all(r.method == "streamGenerateContent" and r.model == MODEL for r in conv)
    assert "RUN: echo hello > out.txt" in conv[0].text()
    assert any(
        p.get("functionResponse", {}).get("name") == "run_shell_command"
        for c in conv[-1].body["contents"]
        for p in c.get("parts", [])
    )
    assert server.sessions() == {gemini.session_id}

    # Hooks: every event carries the session id we chose and the transcript path.
    events = gemini.events()
    for e in events:
        assert e["session_id"] == gemini.session_id
        assert e["cwd"] == str(gemini.work)
        assert e["transcript_path"].startswith(str(gemini.home / ".gemini" / "tmp"))
        assert e["timestamp"]
    names = [e["hook_event_name"] for e in events]
    assert names.index("SessionStart") < names.index("BeforeAgent") < names.index("BeforeTool")
    assert names.index("BeforeTool") < names.index("AfterTool") < names.index("AfterAgent")
    assert gemini.events("SessionStart")[0]["source"] == "startup"
    assert gemini.events("BeforeAgent")[0]["prompt"] == "RUN: echo hello > out.txt"
    before_tool = gemini.events("BeforeTool")[0]
    assert before_tool["tool_name"] == "run_shell_command"
    assert before_tool["tool_input"]["command"] == "echo hello > out.txt"
    assert "llmContent" in gemini.events("AfterTool")[0]["tool_response"]
    assert after["prompt"] == "RUN: echo hello > out.txt"
    assert after["prompt_response"] == "Done: 1 step(s) finished."
    assert after["stop_hook_active"] is False
    assert not gemini.events("Notification"), "yolo asks nothing"
    # A hook's environment: the pane's (not redacted by default), the hook's own
    # "env" from settings.json, and the CLI's GEMINI_* variables.
    assert before_tool["_env"] == {
        "CMUX_PANE_PROBE": "from-pane",
        "CMUX_HOOK_PROBE": "from-settings",
        "GEMINI_SESSION_ID": gemini.session_id,
        "GEMINI_PROJECT_DIR": str(gemini.work),
    }

    # The transcript: a JSONL file named after the session, with per-answer tokens
    # equal to what the server reported.
    path = Path(after["transcript_path"])
    assert path.name.endswith(f"-{gemini.session_id[:8]}.jsonl")
    answers = [m for m in gemini.transcript() if m["type"] == "gemini"]
    assert [m["tokens"]["input"] for m in answers] == [
        usage_for(r.body)["promptTokenCount"] for r in conv
    ]
    for m in answers:
        assert m["tokens"]["output"] == 7
        assert m["tokens"]["cached"] == 5
        assert m["tokens"]["total"] == m["tokens"]["input"] + 7
    # Nothing went to the user's ~/.gemini (HOME is the test's private one).
    assert not (Path(gemini.env["HOME"]) / ".gemini").exists()

    # Idle: a prompt typed into the pane starts a new turn.
    gemini.wait_screen("Type your message")
    gemini.tmux("send-keys", "-t", "g", "-l", "RUN: echo typed > typed.txt")
    gemini.wait_screen("* RUN: echo typed > typed.txt")
    time.sleep(0.3)  # Enter in the same burst as the text was ignored
    gemini.tmux("send-keys", "-t", "g", "Enter")
    assert gemini.wait_file("typed.txt").read_text() == "typed\n"
    gemini.wait_event("AfterAgent", count=2)
    assert gemini.events("BeforeAgent")[1]["prompt"] == "RUN: echo typed > typed.txt"

    # Gone: /quit ends the session with a SessionEnd hook. (A killed pane is not
    # sure to get one: the CLI does not wait for that hook; the pane's death is
    # the sure sign.)
    gemini.tmux("send-keys", "-t", "g", "-l", "/quit")
    gemini.wait_screen("* /quit", "Exit the cli")  # the input line, its completion
    time.sleep(0.3)
    gemini.tmux("send-keys", "-t", "g", "Enter")
    end = gemini.wait_event("SessionEnd", timeout=15)[0]
    print("SessionEnd after /quit:", end)
    assert end["reason"] == "exit"


def test_after_agent_deny_continues_the_turn(gemini: Gemini, server: GeminiServer) -> None:
    """AfterAgent answering {"decision": "deny", "reason": TEXT} makes the CLI go
    on with TEXT as a new prompt: mail can be handed over at turn end."""
    mail = "[cmux mail from supervisor] please also\nRUN: echo more > more.txt"
    gemini.cont.write_text(mail)
    gemini.start("RUN: echo hello > out.txt")

    assert gemini.wait_file("more.txt").read_text() == "more\n"
    afters = gemini.wait_event("AfterAgent", count=2)
    assert [e["stop_hook_active"] for e in afters] == [False, False]  # no loop flag
    assert afters[1]["prompt"] == "RUN: echo hello > out.txt"  # still the first prompt
    prompts = [e["prompt"] for e in gemini.events("BeforeAgent")]
    assert prompts == ["RUN: echo hello > out.txt", mail]
    assert mail in server.texts(gemini.session_id)
    gemini.wait_screen("Agent execution blocked")


def test_permission_prompt_and_approval(gemini: Gemini, server: GeminiServer) -> None:
    gemini.start("RUN: echo hello > out.txt", approval_mode="default")

    screen = gemini.wait_screen("Allow execution of [Shell]?", "1. Allow once")
    assert "2. Allow for this session" in screen
    assert "3. No, suggest changes (esc)" in screen
    assert "echo hello > out.txt" in screen
    note = gemini.wait_event("Notification")[0]
    assert note["notification_type"] == "ToolPermission"
    assert note["details"]["type"] == "exec"
    assert note["details"]["command"] == "echo hello > out.txt"
    # BeforeTool fires before the question, not after the approval.
    assert gemini.events("BeforeTool")
    assert not (gemini.work / "out.txt").exists()
    assert not gemini.events("AfterTool")

    gemini.tmux("send-keys", "-t", "g", "Enter")  # the highlighted "1. Allow once"
    assert gemini.wait_file("out.txt").read_text() == "hello\n"
    gemini.wait_event("AfterAgent")
