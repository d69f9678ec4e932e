"""A Codex supervisor whose CLI dies comes back with its conversation.

The real Codex CLI (CMUX_TEST_CODEX) as the supervisor of a real cmux
project, against the scripted Responses API server (tests/e2e/codex_server.py).
It has a turn; its process is SIGKILLed, as a crash would; the watchdog
brings it back (``spawn.respawn``), and since Codex's adapter resumes, it runs
``codex resume <session id>`` with the id its hooks reported: the same
session, and the next request the model gets carries the turn from before the
crash. Mirrors tests/e2e/test_resume.py's Claude Code test.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.codex_server import CodexServer
from tests.e2e.test_codex import CodexTeam, codex_bin, codex_pid, use_codex
from tests.helpers import Project, wait_until

__all__ = ["codex_bin"]  # a fixture this module uses

pytestmark = [pytest.mark.codex]


@pytest.fixture
def team(codex_bin: Path, project: Project) -> Iterator[CodexTeam]:
    """A cmux project whose supervisor is the Codex CLI (not yet started)."""
    with CodexServer() as server:
        use_codex(project, codex_bin, server)
        t = CodexTeam(project, server)
        yield t
        try:
            print(f"--- supervisor screen ---\n{t.screen('supervisor')}")
        except Exception as exc:
            print(f"--- supervisor: no screen ({exc})")
        print("--- hooks.log ---\n" + t.hooks_log()[-3000:])
        for r in server.conversation()[-4:]:
            print("request:", r.session_id, r.text()[-300:])


@pytest.mark.timeout(150)
def test_a_crashed_codex_supervisor_comes_back_with_its_conversation(team: CodexTeam) -> None:
    t0 = time.monotonic()
    team.project.ok("start", "--no-attach", "--agent", "codex")
    team.wait_state("supervisor", "idle", timeout=60)
    team.project.ok("send", "supervisor", "SAY: codex-before-the-crash")
    # Codex picks the session id; its first hook (with the first turn) says it.
    wait_until(lambda: team.record("supervisor").session_id, timeout=40, what="a session id")
    team.wait_seen("supervisor", "codex-before-the-crash", timeout=40)
    team.wait_state("supervisor", "idle", timeout=40)
    first = team.record("supervisor")
    sid, transcript = first.session_id, first.transcript
    assert sid and transcript and Path(transcript).is_file()

    os.kill(codex_pid(team, "supervisor"), signal.SIGKILL)
    wait_until(
        lambda: team.record("supervisor").incarnation == 2 and team.state("supervisor") == "idle",
        timeout=60,
        interval=0.3,
        what="the supervisor back",
    )
    rec = team.record("supervisor")
    assert rec.resume == "conversation" and rec.session_id == sid
    assert "resume" in rec.command and sid in rec.command
    [event] = team.events("respawn", "supervisor")
    assert event["how"] == "conversation" and event["session"] == sid

    before = len(team.server.conversation())
    team.project.ok("send", "supervisor", "SAY: codex-after-the-crash")
    text = team.wait_seen("supervisor", "codex-after-the-crash", timeout=40)
    assert text
    # The request that carries the new turn carries the old one too: the
    # model was given the conversation from before the crash.
    [*_, newest] = [
        r for r in team.server.conversation()[before:] if "codex-after-the-crash" in r.text()
    ]
    assert newest.session_id == sid
    assert "codex-before-the-crash" in newest.text()
    # The same rollout file goes on (cmux cost reads one transcript).
    team.wait_state("supervisor", "idle", timeout=40)
    assert team.record("supervisor").transcript == transcript
    print(f"the whole test: {time.monotonic() - t0:.1f}s")
