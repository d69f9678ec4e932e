"""The health monitor as a person works it: what `cmux health` shows, a
round by hand (``--now``), the alert acknowledged (``--clear-alert``).

Nothing here prints: the front ends (cmux/cli/health.py) print what these
return, and these raise CmuxError for what a person must fix.
"""

from __future__ import annotations

import time
from typing import Any

from cmux.config import Config
from cmux.errors import GitError, UsageError
from cmux.health import alerts, state
from cmux.health.config import settings as load_settings
from cmux.health.daemon import HealthMonitor, RoundReport, daemon_pid
from cmux.health.policy import rollbacks_in_window


def collect_health(cfg: Config) -> dict[str, Any]:
    """Everything `cmux health` shows, as plain data (also its --json)."""
    from cmux.health.rollback import Repo

    s = load_settings(cfg)
    st = state.load_state(cfg.data)
    now = time.time()
    head = last_good = None
    last_good_commit: dict[str, Any] | None = None
    ahead = None
    try:
        repo = Repo(cfg.project_root, cfg.data)
        head = repo.head()
        last_good = repo.last_good()
        if last_good:
            lgc = repo.commit(last_good)
            last_good_commit = {"sha": lgc.sha, "subject": lgc.subject, "committed": lgc.when}
            if head and repo.is_ancestor(last_good, head):
                ahead = len(repo.commits_between(last_good, head))
    except GitError:
        pass
    checks = []
    for c in s.checks:
        cs = st.checks.get(c.name, {})
        results = cs.get("results", [])
        checks.append(
            {
                "name": c.name,
                "kind": c.kind,
                "target": c.target,
                "timeout": c.timeout,
                "consecutive_failures": cs.get("consecutive_failures", 0),
                "results": results,
                "last": results[-1] if results else None,
                "last_output": cs.get("last_output", ""),
            }
        )
    alert = (alerts.read_alert(cfg.data) or "").strip() or None
    return {
        "enabled": s.enabled,
        "daemon_pid": daemon_pid(cfg.data),
        "phase": st.phase,
        "consecutive_failures": st.consecutive_failures,
        "threshold": s.threshold,
        "interval": s.interval,
        "last_round": st.last_round,
        "head": head,
        "last_good": last_good_commit,
        "commits_since_last_good": ahead,
        "checks": checks,
        "rollbacks": st.rollbacks[-10:],
        "rollbacks_in_window": rollbacks_in_window(st, now, s.rollback_window),
        "rollback_budget": s.rollback_budget,
        "rollback_window": s.rollback_window,
        "restart": s.restart,
        "alert": alert,
    }


def clear_alert(cfg: Config) -> bool:
    """``cmux health --clear-alert``: the alert (whoever raised it) goes, and the
    rollback budget starts afresh. Whether there was anything to clear."""
    with state.editing(cfg.data) as st:
        had = state.acknowledge_alert(st)
    cleared = alerts.clear_alert(cfg.data)
    return bool(cleared or had)


def check_now(cfg: Config) -> RoundReport:
    """``cmux health --now``: one round, recorded, that counts towards nothing
    (HealthMonitor.check_now)."""
    s = load_settings(cfg)
    if not s.enabled:
        raise UsageError("no health checks are configured", "add [[health.checks]] to cmux.toml")
    return HealthMonitor.for_config(cfg, s).check_now()


def rollback_plan(cfg: Config, ref: str | None = None, *, force: bool = False) -> Any:
    """What `cmux rollback [--to REF]` would do (a rollback.Plan), changing nothing."""
    from cmux.health.rollback import Repo, plan

    repo = Repo(cfg.project_root, cfg.data)
    return plan(repo, state.load_state(cfg.data).passed, ref, force=force)


def roll_back(cfg: Config, target: str, *, restart: bool = True) -> Any:
    """Roll back to ``target`` by hand, saving everything first (a rescues.Rescue)."""
    monitor = HealthMonitor.for_config(cfg, load_settings(cfg))
    return monitor.manual_rollback(target, restart=restart)


def rescue_views(cfg: Config) -> list[Any]:
    """What `cmux rescue list` shows: every rescue, newest first."""
    from cmux.health.rescues import list_rescues
    from cmux.health.rollback import Repo

    return list_rescues(Repo(cfg.project_root, cfg.data))


def rescue_view(cfg: Config, name: str) -> Any:
    """One rescue by id or branch (`cmux rescue show`); UsageError if unknown."""
    from cmux.health.rescues import find_rescue
    from cmux.health.rollback import Repo

    return find_rescue(Repo(cfg.project_root, cfg.data), name)
