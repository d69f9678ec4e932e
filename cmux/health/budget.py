"""Token budgets: ``[claude] max_tokens`` per worker, ``[cmux] max_tokens_total``
for the whole team, counted from the transcripts as ``cmux cost`` counts.

What happens to a worker (the watchdog acts, cmux/health/watchdog.py):

- at ``WARN_AT`` (80 %) of a budget: the worker and its parent are told, once;
- at 100 %: the worker is interrupted (Escape, as a person would) and asked
  to commit and report; its parent is told;
- ``[health] worker_grace`` seconds later, if it still runs, it is stopped
  (`cmux kill`: its worktree and branch are kept while they hold work).

Over the team's total budget every live worker is treated so, and the person
is told. :func:`decide` is pure: it gets the use, the limit and what was done
already, and says what to do next.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

WARN_AT = 0.8

Action = Literal["warn", "interrupt", "end"]


@dataclass(frozen=True)
class Budgets:
    per_worker: int = 0  # 0: none
    total: int = 0

    @property
    def any(self) -> bool:
        return bool(self.per_worker or self.total)


def budgets(raw: dict[str, Any]) -> Budgets:
    """The budgets of a parsed cmux.toml (validated by cmux.settings_schema)."""
    claude = raw.get("claude", {}) if isinstance(raw.get("claude"), dict) else {}
    cmux = raw.get("cmux", {}) if isinstance(raw.get("cmux"), dict) else {}
    return Budgets(int(claude.get("max_tokens", 0) or 0), int(cmux.get("max_tokens_total", 0) or 0))


@dataclass
class Marks:
    """What was done about one worker's budget (kept in the watchdog's memory)."""

    warned: float | None = None
    interrupted: float | None = None
    ended: float | None = None


def decide(used: int, limit: int, marks: Marks, now: float, grace: float) -> Action | None:
    """The next step for a worker that used ``used`` tokens of ``limit``."""
    if limit <= 0 or marks.ended is not None:
        return None
    if used >= limit:
        if marks.interrupted is None:
            return "interrupt"
        return "end" if now - marks.interrupted >= grace else None
    if used >= WARN_AT * limit and marks.warned is None:
        return "warn"
    return None


def share(used: int, limit: int) -> str:
    """``12.3k of 50k (25 %)`` for messages and `cmux cost`."""
    from cmux.agents.cost import short

    if limit <= 0:
        return short(used)
    return f"{short(used)} of {short(limit)} ({100 * used // limit} %)"
