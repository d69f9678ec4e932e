"""When the health monitor acts: the pure decision after each round.

:func:`decide` reads nothing and touches nothing but the counters of the
state it is given: given the state, whether this round passed, the clock and
the :class:`Policy`, it says what to do. cmux/health/daemon.py does it.
docs/HEALTH.md describes the rule for people.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from cmux.health.config import HealthSettings
from cmux.health.state import HealthState

# What decide() can say after a round.
Action = Literal["pass", "wait", "hold", "restart", "rollback", "budget"]
PASS: Final = "pass"  # the round passed
WAIT: Final = "wait"  # failing, below the threshold
HOLD: Final = "hold"  # failing while an alert is up: keep checking, change nothing
RESTART: Final = "restart"  # run the restart command, check again
ROLLBACK: Final = "rollback"  # roll back to the last commit that passed
BUDGET: Final = "budget"  # a rollback is due but the window's budget is spent: alert


@dataclass(frozen=True)
class Policy:
    threshold: int = 3
    can_restart: bool = False
    budget: int = 3
    window: float = 3600.0

    @classmethod
    def from_settings(cls, s: HealthSettings) -> Policy:
        return cls(
            threshold=s.threshold,
            can_restart=bool(s.restart),
            budget=s.rollback_budget,
            window=s.rollback_window,
        )


@dataclass(frozen=True)
class Decision:
    action: Action
    clear_alert: bool = False


def rollbacks_in_window(st: HealthState, now: float, window: float) -> int:
    """The automatic rollbacks of the last ``window`` seconds that still count
    (``cmux health --clear-alert`` stops the earlier ones counting)."""
    return sum(
        1
        for r in st.rollbacks
        if r.get("auto") and r.get("counted", True) and now - float(r.get("ts", 0)) < window
    )


def decide(st: HealthState, ok: bool, now: float, policy: Policy) -> Decision:
    """What to do after a round; updates the counters in ``st``.

    - a pass resets the count (and ends an alert, except a spent budget,
      which waits for a person: ``cmux health --clear-alert``);
    - fewer failures than the threshold: wait;
    - an alert is up: hold (keep checking, change nothing);
    - the threshold reached: restart once if there is a restart command,
      then roll back, unless the window's budget is spent.
    """
    if ok:
        st.consecutive_failures = 0
        st.phase = "ok"
        clear = st.alert is not None and st.alert.get("kind") != "budget"
        if clear:
            st.alert = None
        return Decision(PASS, clear_alert=clear)
    st.consecutive_failures += 1
    if st.consecutive_failures < policy.threshold:
        if st.phase != "alert":
            st.phase = "failing"
        return Decision(WAIT)
    if st.alert is not None:
        st.phase = "alert"
        return Decision(HOLD)
    if policy.can_restart and st.phase != "restarted":
        st.phase = "restarted"
        return Decision(RESTART)
    if rollbacks_in_window(st, now, policy.window) >= policy.budget:
        st.phase = "alert"
        return Decision(BUDGET)
    return Decision(ROLLBACK)
