"""Read receipts with the real Claude Code CLI: a message's id reaches
`read` only after a request to the model contained it, whether it was typed
into an idle agent or handed over at the Stop of a busy one."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import Team, started
from tests.helpers import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]


def read_event(team: Team, msg_id: str) -> dict[str, Any] | None:
    found = [e for e in team.events("read", "w1") if e.get("id") == msg_id]
    return found[0] if found else None


def test_read_only_after_the_model_was_given_it(team: Team) -> None:
    started(team)
    team.project.ok("spawn", "w1", "--agent", "claude", "--task", "SAY: ready")
    wait_until(
        lambda: "busy" in team.states_of("w1") and team.state("w1") == "idle",
        timeout=60,
        what="w1 idle after its first turn",
    )

    # Typed into the idle agent.
    typed = team.project.ok("send", "w1", "RUN: echo typed-mail-arrived", "--json").json()
    seen_when_read: list[bool] = []

    def read_yet() -> dict[str, Any] | None:
        e = read_event(team, typed["id"])
        if e is not None and not seen_when_read:
            seen_when_read.append(typed["id"] in team.seen_by("w1"))
        return e

    e = wait_until(read_yet, timeout=60, interval=0.05, what="the typed mail read")
    assert e is not None and e["via"] == "prompt"
    assert seen_when_read == [True]  # the model had it before cmux called it read
    trail = team.project.ok("mail", "show", typed["id"], "--json").json()
    assert trail["state"] == "read"
    assert [s["event"] for s in trail["steps"]][-1] in ("read", "deliver")

    # Handed over at the Stop of a busy agent.
    team.project.ok("send", "w1", "RUN: sleep 6")
    team.wait_state("w1", "busy", timeout=30)
    wait_until(lambda: "sleep 6" in team.seen_by("w1"), timeout=30, what="w1 sleeping")
    handed = team.project.ok("send", "w1", "SAY: noted", "--json").json()
    assert read_event(team, handed["id"]) is None
    e = wait_until(lambda: read_event(team, handed["id"]), timeout=60, what="handed mail read")
    assert e is not None and e["via"] == "stop-hook"
    assert handed["id"] in team.seen_by("w1")
    [delivery] = [d for d in team.events("deliver", "w1") if d.get("id") == handed["id"]]
    assert delivery["via"] == "stop-hook"
    assert team.project.status()["w1"]["unread"] == 0
