"""The health monitor's memory: ``state/health.json``.

One JSON file, read and written whole, atomically, under
``state/.health.lock`` (:func:`editing`), shared by the daemon and the
commands a person runs (``cmux health``, ``--clear-alert``, ``cmux rollback``),
so a restarted daemon carries on where the last one stopped. An unreadable
file is a fresh state, never a crash. Old and unknown keys are ignored.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from cmux.fsutil import locked, read_json, write_json
from cmux.health.checks import OUTPUT_TAIL, CheckResult
from cmux.paths import DataRoot

if TYPE_CHECKING:
    from cmux.health.rollback import Rescue

log = logging.getLogger(__name__)

HISTORY = 10  # results kept per check
PASSED_KEPT = 500  # commits remembered as having passed
ROLLBACKS_KEPT = 100

# ok: the last round passed; failing: failures below the threshold (or not yet
# acted on); restarted: the restart command ran for this crisis; alert: a
# person is needed, cmux changes nothing until the checks pass (or, for a spent
# budget, until `cmux health --clear-alert`).
Phase = Literal["ok", "failing", "restarted", "alert"]


@dataclass
class HealthState:
    phase: Phase = "ok"
    consecutive_failures: int = 0
    last_round: float | None = None
    head: str | None = None
    last_good: str | None = None
    last_good_at: float | None = None
    passed: list[str] = field(default_factory=list)
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)
    rollbacks: list[dict[str, Any]] = field(default_factory=list)
    restarts: list[dict[str, Any]] = field(default_factory=list)
    alert: dict[str, Any] | None = None
    v: int = 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HealthState:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})


def state_file(data: DataRoot) -> Path:
    return data.state_dir / "health.json"


def load_state(data: DataRoot) -> HealthState:
    try:
        return HealthState.from_dict(read_json(state_file(data)))
    except FileNotFoundError:
        return HealthState()
    except (OSError, ValueError, TypeError):
        log.warning("state/health.json is unreadable; starting afresh")
        return HealthState()


def save_state(data: DataRoot, st: HealthState) -> None:
    write_json(state_file(data), st.to_dict())


@contextlib.contextmanager
def editing(data: DataRoot) -> Iterator[HealthState]:
    """Read, change and write the state under a lock (daemon and CLI share it)."""
    with locked(data.state_dir / ".health.lock"):
        st = load_state(data)
        yield st
        save_state(data, st)


def record_results(
    st: HealthState, results: list[CheckResult], now: float, head: str | None
) -> None:
    """Add one round's results: the last ``HISTORY`` per check (without their
    output), each check's failures in a row, and the tail of a failure's output."""
    st.last_round = now
    st.head = head
    for r in results:
        c = st.checks.setdefault(r.name, {"results": [], "consecutive_failures": 0})
        entry = r.to_dict()
        entry.pop("output", None)
        entry["head"] = head
        c["results"] = [*c.get("results", []), entry][-HISTORY:]
        c["consecutive_failures"] = 0 if r.ok else c.get("consecutive_failures", 0) + 1
        if not r.ok:
            c["last_output"] = r.output[-OUTPUT_TAIL:]


def mark_passed(st: HealthState, head: str) -> None:
    """Remember ``head`` as having passed (the newest last; the oldest forgotten)."""
    if head in st.passed:
        st.passed.remove(head)
    st.passed = [*st.passed, head][-PASSED_KEPT:]


def acknowledge_alert(st: HealthState) -> dict[str, Any] | None:
    """A person dealt with the alert: it goes, and the rollbacks so far stop
    counting towards the budget. Returns the alert there was."""
    had = st.alert
    st.alert = None
    if st.phase == "alert":
        st.phase = "failing" if st.consecutive_failures else "ok"
    for r in st.rollbacks:
        r["counted"] = False
    return had


def rollback_entry(rescue: Rescue, *, auto: bool) -> dict[str, Any]:
    """A rollback as ``HealthState.rollbacks`` keeps it: only an automatic one
    counts towards the budget, and ``verified`` is set once the checks ran."""
    return {
        "ts": rescue.ts,
        "rescue": rescue.id,
        "branch": rescue.branch,
        "from": rescue.head,
        "to": rescue.target,
        "stash": rescue.stash,
        "undone": len(rescue.undone),
        "auto": auto,
        "counted": auto,
        "verified": None,
    }
