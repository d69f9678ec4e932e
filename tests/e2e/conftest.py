"""The e2e tier: the real Claude Code CLI against a scripted model server.

Needs the CLI: bin/test installs it into .cache/claude-code when npm is
present and sets CMUX_TEST_CLAUDE; without it every test here that needs
`claude` is skipped, with the reason shown in pytest's summary (-ra).

Each test gets its own model server on 127.0.0.1, a private HOME whose
~/.claude.json has the first-run questions answered for that project (never
the real HOME), and a cmux project whose agents run that CLI against that
server.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.model_server import ModelServer
from tests.helpers import Project, wait_until

API_KEY = "sk-ant-cmux-e2e-0000000000000000-offline"


@pytest.fixture
def claude() -> Path:
    """The Claude Code binary named by CMUX_TEST_CLAUDE, or a visible skip."""
    value = os.environ.get("CMUX_TEST_CLAUDE", "")
    if not value:
        pytest.skip(
            "e2e: CMUX_TEST_CLAUDE is not set (bin/test installs Claude Code with npm "
            "into .cache/claude-code and sets it; or point it at a `claude` binary)"
        )
    path = Path(value)
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.skip(f"e2e: CMUX_TEST_CLAUDE={value} is not an executable file")
    return path


@pytest.fixture
def model() -> Iterator[ModelServer]:
    with ModelServer() as server:
        yield server


def claude_home(home: Path, project_dir: Path, api_key: str = API_KEY) -> None:
    """~/.claude.json with onboarding done, the API key approved and the
    project trusted: the first-run questions, answered (CLAUDE_CODE.md)."""
    state = {
        "hasCompletedOnboarding": True,
        "customApiKeyResponses": {"approved": [api_key[-20:]], "rejected": []},
        "projects": {str(project_dir.resolve()): {"hasTrustDialogAccepted": True}},
    }
    (home / ".claude.json").write_text(json.dumps(state, indent=1) + "\n")


def set_claude_config(root: Path, command: Path, permission_mode: str) -> None:
    toml = (root / "cmux.toml").read_text()
    toml = re.sub(r'(?m)^command = "claude"$', f'command = "{command}"', toml)
    toml = re.sub(
        r'(?m)^permission_mode = "[A-Za-z]+"$', f'permission_mode = "{permission_mode}"', toml
    )
    assert f'command = "{command}"' in toml, "cmux.toml has no [claude] command line to set"
    (root / "cmux.toml").write_text(toml)


@dataclass
class Team:
    """A cmux project whose Claude agents talk to the scripted model."""

    project: Project
    model: ModelServer

    def agent(self, name: str) -> dict[str, Any]:
        return self.project.status()[name]

    def state(self, name: str) -> str:
        return str(self.agent(name)["state"])

    def wait_state(self, name: str, *states: str, timeout: float = 60) -> dict[str, Any]:
        def check() -> dict[str, Any]:
            a = self.project.status().get(name)
            return a if a and a["state"] in states else {}

        return wait_until(check, timeout=timeout, interval=0.2, what=f"{name} in {states}")

    def session(self, name: str) -> str:
        from cmux.agents import registry

        sid = registry.get(self.project.config().data, name).session_id
        assert sid, f"{name} has no session id"
        return sid

    def seen_by(self, name: str) -> str:
        """Everything the model was shown in ``name``'s current session."""
        return self.model.texts(self.session(name))

    def wait_seen(self, name: str, *needles: str, timeout: float = 60) -> str:
        def check() -> str:
            text = self.seen_by(name)
            return text if all(n in text for n in needles) else ""

        return wait_until(check, timeout=timeout, interval=0.2, what=f"{needles} reach {name}")

    def screen(self, name: str) -> str:
        pane = self.agent(name)["pane_id"]
        return self.project.tmux("capture-pane", "-p", "-J", "-t", pane)

    def events(self, kind: str, agent: str | None = None) -> list[dict[str, Any]]:
        return self.project.events_of(kind, agent)

    def states_of(self, name: str) -> list[str]:
        """The states ``name`` went through, in order, from the event log."""
        return self.project.states_of(name)


@pytest.fixture
def team(
    claude: Path, model: ModelServer, project: Project, isolated_env: dict[str, str]
) -> Iterator[Team]:
    """A cmux project set up for Claude agents (not started)."""
    claude_home(Path(isolated_env["HOME"]), project.root)
    set_claude_config(project.root, claude, "bypassPermissions")
    # The environment cmux passes on to every pane: the CLI talks only to the
    # scripted server and nowhere else.
    project.env.update(
        ANTHROPIC_BASE_URL=model.url,
        ANTHROPIC_API_KEY=API_KEY,
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
        DISABLE_AUTOUPDATER="1",
        DISABLE_ERROR_REPORTING="1",
        DISABLE_TELEMETRY="1",
    )
    project.env.pop("ANTHROPIC_AUTH_TOKEN", None)
    t = Team(project, model)
    yield t
    # Leave what the agents showed in the test log when a test fails.
    for path in sorted((project.data / "state" / "logs").glob("*.log")):
        tail = path.read_text(errors="replace").strip().splitlines()[-15:]
        print(f"--- {path.name} (last lines) ---\n" + "\n".join(tail))
    hooks_log = project.data / "state" / "hooks.log"
    if hooks_log.exists():
        print("--- hooks.log ---\n" + hooks_log.read_text(errors="replace")[-3000:])


def started(team: Team, timeout: float = 60) -> Team:
    """`cmux start` with a Claude supervisor, waited on until it is idle."""
    t0 = time.monotonic()
    team.project.ok("start", "--no-attach", "--agent", "claude")
    team.wait_state("supervisor", "idle", timeout=timeout)
    print(f"supervisor idle after {time.monotonic() - t0:.1f}s")
    return team
