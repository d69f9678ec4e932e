"""cmux with the real Codex CLI, end to end: `cmux spawn --agent codex`.

A real cmux project (tests/helpers.py Project: real git, a private tmux server
and HOME), the real `codex` (CMUX_TEST_CODEX, from npm) in the worker's pane,
launched by cmux's Codex adapter (its own CODEX_HOME under the data root), and
the scripted Responses API server of tests/e2e/codex_server.py on 127.0.0.1
as the model: a `RUN: <command>` line in what the worker is told becomes a
shell call. The supervisor is `cat` (it shows what it is typed); the tests
assert what a user would check: `cmux status --json`, the mailbox, what the
model was given (the requests the server received) and `cmux cost --json`.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.codex_server import API_KEY, API_KEY_ENV, MODEL, CodexServer, _content_texts
from tests.helpers import Project, git, wait_until

# 40-70 s a test on 2 cores (docs/AGENTS.md); 120 s at most: looped at a load
# average of 23 on 2 cores, a whole test took more than 60 s, each step seconds.
pytestmark = [pytest.mark.codex, pytest.mark.timeout(120)]

APPROVAL = "Would you like to run the following command?"


@dataclass
class CodexTeam:
    """A started cmux project (supervisor: `cat`) whose Codex workers talk to
    the scripted server."""

    project: Project
    server: CodexServer

    def agent(self, name: str) -> dict[str, Any]:
        return self.project.status()[name]

    def state(self, name: str) -> str:
        return str(self.record(name).state)

    def wait_state(self, name: str, *states: str, timeout: float = 30) -> dict[str, Any]:
        """Wait until ``name`` is in one of ``states``, then return what
        `cmux status --json` says of it. The registry is polled in-process:
        a `cmux status` process every 0.2 s would load the 2 cores the agents
        under test run on."""

        def check() -> dict[str, Any]:
            if self.record(name).state not in states:
                return {}
            a = self.project.status().get(name)
            return a if a and a["state"] in states else {}

        return wait_until(check, timeout=timeout, interval=0.1, what=f"{name} in {states}")

    def record(self, name: str) -> Any:
        from cmux.agents import registry

        return registry.get(self.project.config().data, name)

    def session(self, name: str) -> str:
        sid = self.record(name).session_id
        assert sid, f"{name} has no session id"
        return str(sid)

    def seen_by(self, name: str) -> str:
        return self.server.texts(self.session(name))

    def wait_seen(self, name: str, *needles: str, timeout: float = 30) -> str:
        def check() -> str:
            text = self.seen_by(name)
            return text if all(n in text for n in needles) else ""

        return wait_until(check, timeout=timeout, interval=0.2, what=f"{needles} reach {name}")

    def times_given(self, name: str, mail_id: str) -> int:
        """How many user messages of ``name``'s conversation (as its latest
        request carries it whole) hold the mail ``mail_id``."""
        turns = self.server.conversation(self.session(name))
        head = f"[cmux mail {mail_id} "
        return sum(
            1
            for item in turns[-1].body.get("input") or []
            if item.get("type") == "message" and item.get("role") == "user"
            for text in _content_texts(item.get("content"))
            if head in text
        )

    def screen(self, name: str) -> str:
        pane = self.record(name).pane_id
        return self.project.tmux("capture-pane", "-p", "-J", "-t", pane)

    def events(self, kind: str, agent: str | None = None) -> list[dict[str, Any]]:
        return self.project.events_of(kind, agent)

    def states_of(self, name: str) -> list[str]:
        """The states ``name`` went through, in order, from the event log."""
        return self.project.states_of(name)

    def hooks_log(self) -> str:
        path = self.project.data / "state" / "hooks.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def mail_to(self, name: str) -> list[dict[str, Any]]:
        return self.project.mail_to(name)

    def spawn(self, name: str, task: str, *more: str) -> None:
        self.project.ok("spawn", name, "--agent", "codex", "--task", task, *more)


@pytest.fixture
def codex_bin() -> Path:
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


def use_codex(project: Project, codex_bin: Path, server: CodexServer) -> None:
    """Point the project's [codex] at the real CLI and the scripted server."""
    with open(project.root / "cmux.toml", "a", encoding="utf-8") as fh:
        fh.write(
            f'\n[codex]\ncommand = "{codex_bin}"\nmodel = "{MODEL}"\n'
            f'base_url = "{server.base_url}"\nenv_key = "{API_KEY_ENV}"\n'
            # Every key of cmux's config.toml is one this version knows.
            'args = ["--strict-config"]\n'
        )
    # What every pane gets: the key of the scripted provider, and any
    # address but loopback goes to a dead proxy.
    project.env.update(
        {
            API_KEY_ENV: API_KEY,
            "HTTPS_PROXY": "http://127.0.0.1:9",
            "HTTP_PROXY": "http://127.0.0.1:9",
            "ALL_PROXY": "http://127.0.0.1:9",
            "NO_PROXY": "127.0.0.1,localhost",
            "CMUX_HOOK_DEBUG": "1",  # state/hooks.log lists every hook call
        }
    )


@pytest.fixture
def team(codex_bin: Path, project: Project) -> Iterator[CodexTeam]:
    with CodexServer() as server:
        use_codex(project, codex_bin, server)
        t0 = time.monotonic()
        project.ok("start", "--no-attach", "--command", "cat")
        t = CodexTeam(project, server)
        t.wait_state("supervisor", "idle")
        print(f"started in {time.monotonic() - t0:.1f}s")
        yield t
        for name in ("w1",):
            try:
                print(f"--- {name} screen ---\n{t.screen(name)}")
            except Exception as exc:
                print(f"--- {name}: no screen ({exc})")
        hooks_log = project.data / "state" / "hooks.log"
        if hooks_log.exists():
            print("--- hooks.log ---\n" + hooks_log.read_text(errors="replace")[-3000:])


def codex_pid(team: CodexTeam, name: str) -> int:
    """The pid of the codex process in ``name``'s pane (below cmux's wrapper)."""
    pane_pid = int(
        team.project.tmux("display-message", "-p", "-t", team.record(name).pane_id, "#{pane_pid}")
    )

    def parent(stat: Path) -> int | None:
        try:
            return int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            return None

    kids = [int(s.parent.name) for s in Path("/proc").glob("[0-9]*/stat") if parent(s) == pane_pid]
    assert kids, f"no process under {name}'s pane"
    return min(kids)


def test_a_codex_worker_reports_done_takes_typed_mail_once_counts_tokens_and_exits(
    team: CodexTeam,
) -> None:
    task = (
        "RUN: echo work > work.txt && git add work.txt && git commit -qm 'w1: the work'\n"
        "RUN: mailbox done 'w1 finished the task'"
    )
    team.spawn("w1", task, "--worktree")
    team.wait_state("w1", "done")
    # It committed on its branch from inside Codex's sandbox (the worktree's
    # git dirs are writable roots of its config.toml).
    log = git(team.project.root, "log", "--format=%s", "-1", "cmux/w1")
    assert log.strip() == "w1: the work"
    # Its hooks drove it: starting, idle (SessionStart), busy (prompt, tool), done (mailbox).
    states = team.states_of("w1")
    assert states[:3] == ["starting", "idle", "busy"], states
    assert states[-1] == "done"
    # Codex picked the session id; the SessionStart hook reported it and the
    # transcript, in cmux's own CODEX_HOME (never ~/.codex).
    rec = team.record("w1")
    assert rec.session_id in team.server.sessions()
    home = team.project.data / "state" / "settings" / "codex" / "w1"
    assert rec.transcript and Path(rec.transcript).is_relative_to(home / "sessions")
    assert not (Path(team.project.env["HOME"]) / ".codex").exists()
    # The role prompt reached the model as developer instructions; the task as the prompt.
    first = team.server.conversation(rec.session_id)[0]
    developer = [
        t
        for i in first.body["input"]
        if i.get("role") == "developer"
        for t in _content_texts(i.get("content"))
    ]
    assert any("Your role: a cmux worker" in t for t in developer)
    assert "RUN: mailbox done 'w1 finished the task'" in first.text()
    assert Path(rec.cwd) == team.project.data / "worktrees" / "w1"
    # The report reached the supervisor: its mailbox, then its pane.
    [done] = [m for m in team.mail_to("supervisor") if m["kind"] == "done"]
    assert done["from"] == "w1" and "w1 finished the task" in str(done["body"])
    wait_until(
        lambda: "w1 finished the task" in team.screen("supervisor"),
        timeout=20,
        what="the report in the supervisor's pane",
    )

    # Mail to the idle worker is typed into its composer, once each, and acted
    # on: one line (keys: Enter must not become a new line of a paste burst),
    # then several (a bracketed paste).
    for via, body in (
        ("keys", "RUN: mailbox send supervisor 'typed-in line arrived'"),
        ("paste", "One more thing.\nRUN: mailbox send supervisor 'typed-in lines arrived'"),
    ):
        sent = team.project.ok("send", "w1", body, "--json").json()
        reply = body.rsplit("'", 2)[1]
        wait_until(
            lambda: any(reply == str(m["body"]) for m in team.mail_to("supervisor")),  # noqa: B023
            timeout=30,
            what=f"w1's answer to the typed mail ({via})",
        )
        [delivery] = [e for e in team.events("deliver", "w1") if e["id"] == sent["id"]]
        assert delivery["via"] == via
        print(
            f"{via}: typed in {delivery.get('ms')} ms, Enter again {delivery.get('retries') or 0}x"
        )
        assert team.times_given("w1", sent["id"]) == 1
        team.wait_state("w1", "idle")  # its turn is over: the next mail is typed too
    assert len(team.events("deliver", "w1")) == 2

    # Tokens: what the server reported, read from the rollout transcript.
    def cost() -> dict[str, Any]:
        by_name = {a["name"]: a for a in team.project.ok("cost", "--json").json()["agents"]}
        sent_usage = team.server.usage_sent(rec.session_id)
        got = by_name["w1"]
        return got if got["total"] == sent_usage["total_tokens"] else {}

    w1 = wait_until(cost, timeout=20, what="w1's tokens in cmux cost")
    usage = team.server.usage_sent(rec.session_id)
    assert w1["input"] + w1["cache_read"] == usage["input_tokens"] > 0
    assert w1["output"] == usage["output_tokens"] > 0

    # A killed worker shows exited.
    os.kill(codex_pid(team, "w1"), signal.SIGKILL)
    team.wait_state("w1", "exited", timeout=20)


def test_mail_to_a_busy_codex_worker_is_handed_over_at_its_turn_end_once(
    team: CodexTeam,
) -> None:
    gate = team.project.root / "go"  # w1 works until the test creates it
    team.spawn("w1", "RUN: while [ ! -e go ]; do sleep 0.1; done")
    team.wait_state("w1", "busy")
    team.wait_seen("w1", "while [ ! -e go ]")
    sent = team.project.ok(
        "send", "w1", "RUN: mailbox send supervisor 'w1 got the news while busy'", "--json"
    ).json()
    # While w1 works nothing is typed into its pane: the mail waits for its
    # Stop hook (one delivery in all, through the hook: asserted below).
    assert team.state("w1") == "busy"
    gate.touch()
    wait_until(
        lambda: any("got the news" in str(m["body"]) for m in team.mail_to("supervisor")),
        timeout=30,
        what="w1's answer to the handed-over mail",
    )
    [delivery] = team.events("deliver", "w1")
    assert delivery["id"] == sent["id"] and delivery["via"] == "stop-hook"
    # Codex gave it to the model as the Stop hook's reason, in the same turn, once.
    assert f"[cmux mail {sent['id']} " in team.seen_by("w1")
    assert "<hook_prompt" in team.seen_by("w1")
    assert team.times_given("w1", sent["id"]) == 1
    assert "Blocked by hook" in team.screen("w1")
    team.wait_state("w1", "idle")


def test_an_approval_prompt_is_waiting_cmux_approve_runs_it_and_cmux_deny_does_not(
    team: CodexTeam,
) -> None:
    team.server.escalate = True  # every shell call asks to leave the sandbox
    team.spawn("w1", "RUN: echo approved > approved.txt\nRUN: echo denied > denied.txt")
    waiting = team.wait_state("w1", "waiting")
    assert "echo approved > approved.txt" in waiting["last_event"]
    # Codex's PermissionRequest hook reached cmux as a permission Notification
    # (the screen may have said so first: both are the same waiting).
    wait_until(
        lambda: re.search(r"Notification w1: .*(-> waiting|told)", team.hooks_log()),
        timeout=10,
        what="the PermissionRequest hook in hooks.log",
    )
    assert APPROVAL in team.screen("w1")
    assert not (team.project.root / "approved.txt").exists()
    # Approving an agent with no dialog is refused, and nothing is typed.
    r = team.project.cmux("approve", "supervisor")
    assert r.code == 1 and "no permission dialog" in r.err
    r = team.project.ok("approve", "w1", "--json").json()
    assert (r["dialog"], r["key"]) == ("permission", "y")
    wait_until((team.project.root / "approved.txt").exists, timeout=20, what="the approved command")
    assert (team.project.root / "approved.txt").read_text() == "approved\n"

    # The next command asks too; cmux deny presses Esc: it does not run, and
    # Codex ends the turn without a Stop hook, so cmux itself says idle.
    wait_until(
        lambda: "$ echo denied > denied.txt" in team.screen("w1"),
        timeout=20,
        what="the second approval prompt",
    )
    team.wait_state("w1", "waiting")
    r = team.project.ok("deny", "w1", "--json").json()
    assert (r["dialog"], r["key"], r["state"]) == ("permission", "Escape", "idle")
    wait_until(
        lambda: "Conversation interrupted" in team.screen("w1"), timeout=10, what="the turn ended"
    )
    assert team.state("w1") == "idle"
    assert not (team.project.root / "denied.txt").exists()
    # (A look at the screen between Esc and the end of the turn may pass busy.)
    states = ", ".join(team.states_of("w1"))
    assert re.search(r"waiting(, busy)+, waiting(, busy)?, idle$", states), states
