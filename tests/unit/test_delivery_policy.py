"""The one hold/defer policy (cmux/delivery/policy.py), as a pure function."""

from __future__ import annotations

import dataclasses

import pytest

from cmux.agents.registry import Agent
from cmux.delivery import policy
from cmux.delivery.policy import Defer, Deliver, Hold
from cmux.tmux import Pane

SERVER = "4242:1700000000"


def agent(state: str = "idle", profile: str = "claude", **kw: object) -> Agent:
    return Agent(name="w1", profile=profile, state=state, pane_id="%3", server=SERVER, **kw)  # type: ignore[arg-type]


def pane(**kw: object) -> Pane:
    base = Pane(
        pane_id="%3",
        window_id="@1",
        window_name="w1",
        session="s",
        pid=1,
        dead=False,
        dead_status=None,
        in_mode=False,
        current_command="claude",
        width=80,
        height=24,
        server=SERVER,
    )
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


def never() -> str | None:
    raise AssertionError("the screen was read when nothing needed it")


def test_an_idle_agent_gets_its_mail_typed() -> None:
    assert policy.decide(agent("idle"), pane(), lambda: None) == Deliver()
    assert policy.decide(agent("done", profile="shell"), pane(), never) == Deliver()


def test_a_busy_claude_agent_defers_to_its_stop_hook_but_a_busy_shell_does_not() -> None:
    assert policy.decide(agent("busy"), pane(), lambda: None) == Defer()
    assert policy.decide(agent("busy", profile="shell"), pane(), never) == Deliver()


@pytest.mark.parametrize(
    ("state", "pane_kw", "reason"),
    [
        ("exited", {}, "w1 has exited"),
        ("killed", {}, "w1 has killed"),
        ("starting", {}, "w1 is starting"),
        ("idle", {"dead": True}, "w1's pane is not there"),
        ("idle", {"server": "1:2"}, "w1's pane is not there"),
        ("idle", {"in_mode": True}, "w1's pane is in copy mode"),
        ("waiting", {}, "w1 is waiting for a permission answer"),
    ],
)
def test_holds_say_why_without_reading_the_screen(
    state: str, pane_kw: dict[str, object], reason: str
) -> None:
    assert policy.decide(agent(state), pane(**pane_kw), never) == Hold(reason)


def test_no_pane_is_held() -> None:
    assert policy.decide(agent(), None, never) == Hold("w1's pane is not there")


def test_a_dialog_on_a_claude_screen_holds_even_a_busy_agent() -> None:
    got = policy.decide(agent("busy"), pane(), lambda: "a permission prompt")
    assert got == Hold("w1's pane shows a permission prompt")


def test_the_loop_guard_at_stop() -> None:
    assert policy.hand_over_at_stop(chained=False, chain=99)  # a new turn: the count is moot
    assert policy.hand_over_at_stop(chained=True, chain=policy.MAX_CHAINED_HANDOVERS - 1)
    assert not policy.hand_over_at_stop(chained=True, chain=policy.MAX_CHAINED_HANDOVERS)
