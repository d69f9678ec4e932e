"""A Gemini supervisor whose CLI dies comes back with its conversation.

The real Gemini CLI (CMUX_TEST_GEMINI) as the supervisor of a real cmux
project, against the scripted Gemini API server (tests/e2e/gemini_server.py).
It has a turn; its process is SIGKILLed, as a crash would; the watchdog
brings it back (``spawn.respawn``), and since Gemini's adapter resumes, it
runs ``gemini --resume <session id>``: the same session (and so the same
``{session}`` in its base URL), and the next request the model gets carries
the turn from before the crash. Mirrors tests/e2e/test_resume.py's Claude
Code test.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_gemini import Team, gemini_bin, gemini_pid, team
from tests.helpers import wait_until

__all__ = ["gemini_bin", "team"]  # fixtures this module uses

pytestmark = [pytest.mark.gemini]


def ready_screen(team: Team, name: str, still: float = 2.0) -> None:
    """Wait until ``name``'s screen reads idle and has not changed for ``still`` s."""
    from cmux.agents.adapters import base as adapters
    from cmux.agents.screen import Screen

    program = adapters.get("gemini")
    last: dict[str, Any] = {"text": None, "since": 0.0}

    def check() -> bool:
        text = team.screen(name)
        now = time.monotonic()
        if text != last["text"]:
            last.update(text=text, since=now)
        idle = program.read_screen(text).screen == Screen.IDLE
        return idle and now - last["since"] >= still

    wait_until(check, timeout=30, interval=0.2, what=f"{name}'s screen idle and still")


def dump(team: Team) -> None:
    """What a failed wait leaves in the test log."""
    print("--- supervisor's screen ---\n" + team.screen("supervisor"))
    for e in [e for e in team.project.events() if e.get("agent") == "supervisor"][-15:]:
        print("event:", e)
    for log in ("hooks.log", "router.log"):
        path = team.project.data / "state" / log
        if path.exists():
            print(f"--- {log} ---\n" + path.read_text(errors="replace")[-2000:])


@pytest.mark.timeout(200)
def test_a_crashed_gemini_supervisor_comes_back_with_its_conversation(team: Team) -> None:
    from cmux.agents import registry

    data = team.project.config().data
    t0 = time.monotonic()
    team.project.ok("start", "--no-attach", "--agent", "gemini")
    team.wait_state("supervisor", "idle", timeout=60)
    team.project.ok("send", "supervisor", "SAY: gemini-before-the-crash")
    team.wait_prompt("supervisor", "gemini-before-the-crash", timeout=40)
    team.wait_state("supervisor", "idle", timeout=40)
    first = registry.get(data, "supervisor")
    sid, transcript = first.session_id, first.transcript
    assert sid and transcript and Path(transcript).is_file()

    os.kill(gemini_pid(team, "supervisor"), signal.SIGKILL)
    wait_until(
        lambda: (
            registry.get(data, "supervisor").incarnation == 2
            and registry.get(data, "supervisor").state == "idle"
        ),
        timeout=60,
        interval=0.3,
        what="the supervisor back",
    )
    rec = registry.get(data, "supervisor")
    assert rec.resume == "conversation" and rec.session_id == sid
    assert rec.command[rec.command.index("--resume") + 1] == sid
    [event] = team.events("respawn", "supervisor")
    assert event["how"] == "conversation" and event["session"] == sid

    # The resumed CLI redraws its history (and the start context its
    # SessionStart hook gave) after that hook said idle; keys typed in the
    # meantime were seen lost (the watchdog's [mail] read_timeout delivers
    # such mail again, 120 s later). A person types once the screen is
    # still: so does this test.
    ready_screen(team, "supervisor")
    before = len(team.server.conversation(sid))
    team.project.ok("send", "supervisor", "SAY: gemini-after-the-crash")
    try:
        team.wait_prompt("supervisor", "gemini-after-the-crash", timeout=60)
    except AssertionError:
        dump(team)
        raise
    # The request that carries the new turn carries the old one too: the
    # model was given the conversation from before the crash.
    [*_, newest] = [
        r for r in team.server.conversation(sid)[before:] if "gemini-after-the-crash" in r.text()
    ]
    assert "gemini-before-the-crash" in newest.text()
    # The same chat file goes on (cmux cost reads one transcript).
    team.wait_state("supervisor", "idle", timeout=40)
    assert registry.get(data, "supervisor").transcript == transcript
    print(f"the whole test: {time.monotonic() - t0:.1f}s")
