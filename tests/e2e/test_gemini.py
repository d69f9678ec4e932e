"""cmux with the real Gemini CLI, end to end (issue 14).

A real cmux project (tests/helpers.py Project: real git, a private tmux server
and HOME), its workers spawned with ``--agent gemini``: the CLI that bin/test
installs from npm (CMUX_TEST_GEMINI), talking only to the scripted Gemini API
server on 127.0.0.1 (tests/e2e/gemini_server.py: ``RUN:`` lines become
run_shell_command calls). The ``[gemini]`` section of cmux.toml points the CLI
at the server (``base_url`` with ``{session}``, so the server tells the agents
apart by cmux's session id). The supervisor is a shell: what reaches it is read
from its mailbox and its pane.

Everything a user would check of a Gemini worker: its task as first prompt,
states from its hooks (busy, waiting at the approval question, done, exited),
`cmux approve` / `cmux deny`, mail handed over at turn end (AfterAgent deny)
while busy and typed in while idle, each reaching the model exactly once, and
its tokens in `cmux cost`. Run alone: ``bin/test -m gemini``.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.gemini_server import MODEL, GeminiServer, usage_for
from tests.helpers import Project, wait_until

pytestmark = [pytest.mark.gemini]

API_KEY = "gemini-cmux-e2e-0000000000000000"


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


@dataclass
class Team:
    """A cmux project whose Gemini workers talk to the scripted server."""

    project: Project
    server: GeminiServer

    def agent(self, name: str) -> dict[str, Any]:
        return self.project.status()[name]

    def wait_state(self, name: str, *states: str, timeout: float = 40) -> dict[str, Any]:
        def check() -> dict[str, Any]:
            a = self.project.status().get(name)
            return a if a and a["state"] in states else {}

        return wait_until(check, timeout=timeout, interval=0.2, what=f"{name} in {states}")

    def session(self, name: str) -> str:
        from cmux.agents import registry

        sid = registry.get(self.project.config().data, name).session_id
        assert sid, f"{name} has no session id"
        return sid

    def screen(self, name: str) -> str:
        return self.project.tmux("capture-pane", "-p", "-J", "-t", self.agent(name)["pane_id"])

    def wait_screen(self, name: str, needle: str, timeout: float = 30) -> str:
        def check() -> str:
            text = self.screen(name)
            return text if needle in text else ""

        return wait_until(check, timeout=timeout, interval=0.2, what=f"{needle!r} on {name}")

    def prompts(self, name: str) -> list[str]:
        """The user texts of ``name``'s conversation, as its latest request
        showed them to the model (each turn's text once: the history)."""
        conv = self.server.conversation(self.session(name))
        if not conv:
            return []
        return [
            str(p["text"])
            for c in conv[-1].body.get("contents") or []
            if c.get("role") == "user"
            for p in c.get("parts") or []
            if "text" in p
        ]

    def wait_prompt(self, name: str, needle: str, timeout: float = 40) -> list[str]:
        def check() -> list[str]:
            found = [t for t in self.prompts(name) if needle in t]
            return found

        return wait_until(check, timeout=timeout, interval=0.2, what=f"{needle!r} reach {name}")

    def events(self, kind: str, agent: str | None = None) -> list[dict[str, Any]]:
        return self.project.events_of(kind, agent)

    def states_of(self, name: str) -> list[str]:
        """The states ``name`` went through, in order, from the event log."""
        return self.project.states_of(name)


@pytest.fixture
def team(gemini_bin: Path, project: Project) -> Iterator[Team]:
    # Every request, for a person reading a failure: <tmp_path>/gemini-requests.jsonl.
    with GeminiServer(log=project.root.parent / "gemini-requests.jsonl") as server:
        toml = project.root / "cmux.toml"
        toml.write_text(
            toml.read_text()
            + "\n[gemini]\n"
            + f'command = "{gemini_bin}"\n'
            + f'model = "{MODEL}"\n'
            + f'base_url = "{server.url}/s/{{session}}"\n'
            + 'approval_mode = "default"\n'
        )
        # GITHUB_SHA (as on GitHub Actions) makes the CLI pass its shell commands
        # and hooks only an allow-list of variables: cmux's tools still need
        # theirs (without the allow-list in cmux's settings, `mailbox done` fails).
        project.env.update(GEMINI_API_KEY=API_KEY, GITHUB_SHA="0123456789abcdef")
        t = Team(project, server)
        yield t
        for name in ("w1", "w2"):
            try:
                print(f"--- {name}'s screen ---\n" + t.screen(name))
            except Exception:
                pass
            try:
                turns = len(server.conversation(t.session(name)))
                print(f"--- {name}'s user texts, as the last of its {turns} turn(s) sent them ---")
                print("\n".join(repr(p[:200]) for p in t.prompts(name)))
            except Exception:
                pass
        print("--- deliver events ---\n" + "\n".join(map(str, t.events("deliver"))))
        hooks_log = project.data / "state" / "hooks.log"
        if hooks_log.exists():
            print("--- hooks.log ---\n" + hooks_log.read_text(errors="replace")[-3000:])
        project.cmux("stop")


def mail_to(team: Team, name: str) -> list[dict[str, Any]]:
    return team.project.mail_to(name)


def gemini_pid(team: Team, name: str) -> int:
    """The pid of the Gemini CLI (node) under ``name``'s pane."""
    pane_pid = int(
        team.project.tmux("display-message", "-p", "-t", team.agent(name)["pane_id"], "#{pane_pid}")
    )
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pane_pid:
                return int(stat.parent.name)
        except (OSError, IndexError, ValueError):
            continue
    raise AssertionError(f"no process under {name}'s pane")


def count(texts: list[str], needle: str) -> int:
    return sum(t.count(needle) for t in texts)


# 40-70 s on 2 cores; 150 s at most: looped at a load average of 18-20 on 2
# cores, a run took 90 s (every cmux call and CLI step takes seconds then).
@pytest.mark.timeout(150)
def test_gemini_workers_ask_are_answered_take_mail_report_and_die(team: Team) -> None:
    """One session, two Gemini workers started together (their CLIs start in
    parallel): w1 is approved, takes mail while busy and while idle, reports,
    and its tokens are counted; w2 is denied and then killed."""
    t0 = time.monotonic()
    # w1's command runs until the test opens a gate (not a fixed sleep: on a
    # loaded machine the test's own steps outlast any sleep, and the mail sent
    # "while it runs" would come after its turn ended). Its cwd is the project.
    gate = team.project.root / "w1-may-finish"
    (team.project.root / "w1-gate.sh").write_text(
        f"while [ ! -e {gate.name} ]; do sleep 0.1; done\n"
    )
    team.project.ok("start", "--no-attach", "--agent", "shell")
    team.project.ok("spawn", "w1", "--agent", "gemini", "--task", "RUN: sh w1-gate.sh")
    team.project.ok("spawn", "w2", "--agent", "gemini", "--task", "RUN: touch denied.txt")

    # w1: the task was its first prompt; its shell command asks first (default mode).
    waiting = team.wait_state("w1", "waiting", timeout=45)
    assert "w1-gate.sh" in waiting["last_event"]
    team.wait_screen("w1", "Allow execution of")
    assert team.states_of("w1")[:3] == ["starting", "idle", "busy"]
    told = wait_until(
        lambda: [m for m in mail_to(team, "supervisor") if "w1 is waiting" in m["body"]],
        timeout=10,
        what="the supervisor told",
    )
    assert "approve w1" in told[0]["body"]
    assert "w1-gate.sh" in team.project.ok("approve", "w1").out
    team.wait_state("w1", "busy", timeout=10)
    wait_until(lambda: "Allow execution" not in team.screen("w1"), timeout=10, what="dialog gone")

    # Mail while it runs: not typed in, handed over at its turn end (AfterAgent deny).
    sent = team.project.ok(
        "send", "w1", "RUN: mailbox done 'w1 got the mail while busy'", "--json"
    ).json()
    assert team.agent("w1")["state"] == "busy"
    assert not team.events("deliver", "w1")
    gate.touch()  # w1's command ends: its turn ends, and the mail is handed over

    # w2 meanwhile: `cmux deny` answers its question with Escape; nothing runs.
    team.wait_state("w2", "waiting", timeout=30)
    denied = team.project.ok("deny", "w2", "--json").json()
    assert denied["key"] == "Escape"
    team.wait_state("w2", "idle", timeout=10)
    team.wait_screen("w2", "Request cancelled")
    assert not (team.project.root / "denied.txt").exists()
    # A killed CLI: its pane's death says exited.
    os.kill(gemini_pid(team, "w2"), signal.SIGKILL)
    team.wait_state("w2", "exited", timeout=20)

    team.wait_state("w1", "done", timeout=40)
    [delivery] = team.events("deliver", "w1")
    assert delivery["id"] == sent["id"] and delivery["via"] == "stop-hook"
    # Exactly once in what the model was given; `mailbox done` ran unasked (the
    # policy cmux writes lets a worker's tools through).
    assert count(team.prompts("w1"), f"[cmux mail {sent['id']}") == 1
    assert team.states_of("w1") == ["starting", "idle", "busy", "waiting", "busy", "done"]
    # The supervisor has the report, and its pane (a shell) was given it.
    [done] = [m for m in mail_to(team, "supervisor") if m["kind"] == "done"]
    assert done["from"] == "w1" and "w1 got the mail while busy" in done["body"]
    team.wait_screen("supervisor", "w1 got the mail while busy")

    # Mail while idle (done, and its turn over: the input box back, no spinner):
    # typed into its pane, submitted once, read. Two lines: pasted (bracketed),
    # Enter after the settle pause.
    from cmux.agents.adapters import base as adapters
    from cmux.agents.screen import Screen

    program = adapters.get("gemini")
    wait_until(
        lambda: program.read_screen(team.screen("w1")).screen == Screen.IDLE,
        timeout=20,
        what="w1's turn over on its screen",
    )
    typed = team.project.ok(
        "send",
        "w1",
        "Please answer.\nRUN: mailbox send supervisor 'w1 read what was typed'",
        "--json",
    ).json()
    wait_until(
        lambda: any("w1 read what was typed" in m["body"] for m in mail_to(team, "supervisor")),
        timeout=40,
        what="w1's answer to the typed mail",
    )
    [delivery] = [e for e in team.events("deliver", "w1") if e["id"] == typed["id"]]
    assert delivery["via"] == "paste"
    assert count(team.prompts("w1"), f"[cmux mail {typed['id']}") == 1
    from cmux.mail import receipts

    data = team.project.config().data
    wait_until(
        lambda: "read" in receipts.load(data, "w1").get(typed["id"], {}),
        timeout=20,
        what="a read receipt",
    )

    # Tokens: what the server reported for w1's conversation, from its
    # transcript. The CLI may still be answering (or writing its chat) when
    # the test looks: both sides are read again until they agree.
    def tokens() -> tuple[tuple[int, int, int], tuple[int, int, int]] | None:
        conv = team.server.conversation(team.session("w1"))
        prompt = sum(usage_for(r.body)["promptTokenCount"] for r in conv)
        cached = sum(usage_for(r.body)["cachedContentTokenCount"] for r in conv)
        cost = team.project.ok("cost", "--json").json()
        w1 = {a["name"]: a for a in cost["agents"]}["w1"]
        got = (w1["input"], w1["cache_read"], w1["output"])
        want = (prompt - cached, cached, 7 * len(conv))
        return (got, want) if got == want and want[2] > 0 else None

    wait_until(tokens, timeout=20, what="w1's tokens in cmux cost = what the server reported")
    print(f"the whole test: {time.monotonic() - t0:.1f}s")
