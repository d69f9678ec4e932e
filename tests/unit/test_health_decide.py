"""The pure decisions of the health monitor: no git, no processes, no clock."""

from __future__ import annotations

from cmux.health.policy import (
    BUDGET,
    HOLD,
    PASS,
    RESTART,
    ROLLBACK,
    WAIT,
    Policy,
    decide,
    rollbacks_in_window,
)
from cmux.health.state import HealthState


def run(st: HealthState, rounds: str, policy: Policy, now: float = 1000.0) -> list[str]:
    """Feed a string of rounds ('.' pass, 'x' fail) and collect the actions."""
    return [decide(st, r == ".", now, policy).action for r in rounds]


def test_nothing_happens_below_the_threshold() -> None:
    st = HealthState()
    assert run(st, "xx.xx.", Policy(threshold=3)) == [WAIT, WAIT, PASS, WAIT, WAIT, PASS]
    assert st.consecutive_failures == 0 and st.phase == "ok"


def test_the_threshold_rolls_back_without_a_restart_command() -> None:
    st = HealthState()
    assert run(st, "xxx", Policy(threshold=3)) == [WAIT, WAIT, ROLLBACK]


def test_a_restart_comes_first_and_only_once() -> None:
    st = HealthState()
    p = Policy(threshold=2, can_restart=True)
    assert run(st, "xxx", p) == [WAIT, RESTART, ROLLBACK]
    # A restart that fixes it: back to normal, and the next crisis restarts again.
    st = HealthState()
    assert run(st, "xx.xx", p) == [WAIT, RESTART, PASS, WAIT, RESTART]


def test_threshold_one_acts_at_once() -> None:
    assert run(HealthState(), "x", Policy(threshold=1)) == [ROLLBACK]


def test_the_budget_counts_automatic_rollbacks_in_the_window() -> None:
    p = Policy(threshold=1, budget=2, window=100)
    st = HealthState(
        rollbacks=[
            {"ts": 950, "auto": True},
            {"ts": 960, "auto": False},  # by hand: not counted
            {"ts": 800, "auto": True},  # outside the window
        ]
    )
    assert rollbacks_in_window(st, 1000, 100) == 1
    assert decide(st, False, 1000, p).action == ROLLBACK
    st.rollbacks.append({"ts": 990, "auto": True})
    st.consecutive_failures = 0
    assert decide(st, False, 1000, p).action == BUDGET
    # Forgiven by a person (`cmux health --clear-alert`): counted no more.
    for r in st.rollbacks:
        r["counted"] = False
    st.phase = "ok"
    assert decide(st, False, 1000, p).action == ROLLBACK
    # And once the window has slid past, the budget is back too.
    st2 = HealthState(rollbacks=[{"ts": 950, "auto": True}, {"ts": 990, "auto": True}])
    assert decide(st2, False, 1000, p).action == BUDGET
    assert decide(HealthState(rollbacks=st2.rollbacks), False, 1100, p).action == ROLLBACK


def test_a_budget_of_zero_never_rolls_back() -> None:
    assert run(HealthState(), "xx", Policy(threshold=2, budget=0)) == [WAIT, BUDGET]


def test_an_alert_holds_until_a_pass_and_a_pass_ends_it() -> None:
    p = Policy(threshold=1)
    st = HealthState(alert={"kind": "stuck", "text": "t", "ts": 1})
    assert run(st, "xx", p) == [HOLD, HOLD]
    d = decide(st, True, 1000, p)
    assert d.action == PASS and d.clear_alert and st.alert is None


def test_a_spent_budget_waits_for_a_person_even_after_a_pass() -> None:
    p = Policy(threshold=1)
    st = HealthState(alert={"kind": "budget", "text": "t", "ts": 1})
    d = decide(st, True, 1000, p)
    assert d.action == PASS and not d.clear_alert and st.alert is not None
    assert decide(st, False, 1000, p).action == HOLD
