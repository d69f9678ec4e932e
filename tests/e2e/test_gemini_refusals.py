"""The Gemini CLI's answer to a refusing model API: it retries by itself.

A 429 (RESOURCE_EXHAUSTED) or 503 (UNAVAILABLE) from the model fires no hook
(no AfterAgent, no Notification: the CLI's retryWithBackoff runs inside the
turn), and with the default ``ui.errorVerbosity`` ("low") the CLI goes on
retrying past its attempts (0.61.0: the fallback handler says "retry_once"),
so the turn does not end. cmux leaves it to the CLI: the agent stays busy
(not ``rate-limited``: the watchdog's "continue" notice would be typed into a
pane that is still at work), and once the API answers the CLI finishes the
turn itself and its AfterAgent hook says idle. docs/AGENTS.md, Gemini CLI.
"""

from __future__ import annotations

import time

import pytest

from tests.e2e.test_gemini import Team, gemini_bin, team
from tests.helpers import wait_until

__all__ = ["gemini_bin", "team"]  # fixtures this module uses

pytestmark = [pytest.mark.gemini]


@pytest.mark.timeout(120)
def test_a_refused_gemini_turn_is_retried_by_the_cli_and_ends_when_the_api_answers(
    team: Team,
) -> None:
    t0 = time.monotonic()
    team.project.ok("start", "--no-attach", "--agent", "shell")
    team.server.fail(429, count=1)
    team.project.ok("spawn", "w1", "--agent", "gemini", "--task", "SAY: through-after-refusals")
    wait_until(lambda: team.server.refused == 1, timeout=60, interval=0.1, what="a 429")
    # The CLI waits ~5 s (with jitter) before its next attempt: time to refuse it again.
    team.server.fail(503, count=1)
    assert team.agent("w1")["state"] == "busy"
    wait_until(lambda: team.server.refused == 2, timeout=40, interval=0.1, what="a 503")
    assert team.agent("w1")["state"] == "busy"
    team.wait_state("w1", "idle", timeout=60)
    # Three requests of the one turn, each with the task: two refused, one answered.
    turn = [r for r in team.server.conversation(team.session("w1")) if "through-after" in r.text()]
    assert len(turn) == 3, [r.path for r in turn]
    # Busy from its first prompt until its turn ended (AfterAgent): never
    # rate-limited, overloaded or idle in between.
    assert team.states_of("w1") == ["starting", "idle", "busy", "idle"]
    [end] = [e for e in team.events("state", "w1") if e.get("from") == "busy"]
    assert (end["to"], end["reason"]) == ("idle", "finished its turn")
    print(f"the whole test: {time.monotonic() - t0:.1f}s")
