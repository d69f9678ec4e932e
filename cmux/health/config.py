"""``[health]`` in cmux.toml: checks, thresholds, the rollback budget, watchdogs.

Read once through :func:`settings`; every value is checked by the one
schema of cmux.toml (cmux.settings_schema) so that a typo becomes a clear
ConfigError at start, not a safety net that silently does nothing.

    [health]
    interval = 30              # seconds between rounds of checks
    threshold = 3              # consecutive failing rounds before acting
    restart = "make restart"   # optional; run before rolling back, and after
    rollback_budget = 3        # automatic rollbacks allowed per window (0: never)
    rollback_window = 3600     # seconds
    [[health.checks]]
    name = "tests"
    command = "pytest -q -x"   # or: url = "http://127.0.0.1:8000/health"
    timeout = 300
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cmux.config import Config
from cmux.settings_schema import HEALTH, check_name

DEFAULT_COMMAND_TIMEOUT = 60.0
DEFAULT_URL_TIMEOUT = 10.0


@dataclass(frozen=True)
class Check:
    """One check: exactly one of ``command`` or ``url``."""

    name: str
    command: str | tuple[str, ...] | None = None
    url: str | None = None
    timeout: float = DEFAULT_COMMAND_TIMEOUT

    @property
    def kind(self) -> str:
        return "url" if self.url else "command"

    @property
    def target(self) -> str:
        if self.url:
            return self.url
        if isinstance(self.command, tuple):
            import shlex

            return shlex.join(self.command)
        return self.command or ""


@dataclass(frozen=True)
class HealthSettings:
    checks: tuple[Check, ...] = ()
    interval: float = 30.0
    threshold: int = 3
    restart: str | None = None
    restart_timeout: float = 300.0
    restart_wait: float = 5.0
    rollback_budget: int = 3
    rollback_window: float = 3600.0
    # watchdogs
    idle_nudge: float = 1800.0
    worker_time_limit: float = 0.0
    worker_grace: float = 300.0
    supervisor_restarts: int = 5
    supervisor_restart_window: float = 600.0
    stuck_after: float = 900.0  # busy with nothing moving this long: stuck (0: off)
    stuck_action: str = "tell"  # or "interrupt"
    # [claude] retry_after: seconds before a rate-limited or overloaded agent
    # is asked to continue (the watchdog applies it, so it is carried here).
    retry_after: float = 300.0

    @property
    def enabled(self) -> bool:
        return bool(self.checks)


_NUMBERS = (
    "interval",
    "threshold",
    "restart_timeout",
    "restart_wait",
    "rollback_budget",
    "rollback_window",
    "idle_nudge",
    "worker_time_limit",
    "worker_grace",
    "supervisor_restarts",
    "supervisor_restart_window",
    "stuck_after",
)


def parse_check(i: int, spec: dict[str, Any]) -> Check:
    command, url = spec.get("command"), spec.get("url")
    default_timeout = DEFAULT_URL_TIMEOUT if url is not None else DEFAULT_COMMAND_TIMEOUT
    return Check(
        name=check_name(i, spec),
        command=tuple(command) if isinstance(command, list) else command,
        url=url,
        timeout=float(spec.get("timeout", default_timeout)),
    )


def parse(section: dict[str, Any]) -> HealthSettings:
    """Check a ``[health]`` table against the one schema of cmux.toml
    (cmux.settings_schema.HEALTH) and return its settings."""
    HEALTH(section, "[health]")
    raw_checks = section.get("checks", [])
    if isinstance(raw_checks, dict):
        raw_checks = [raw_checks]
    d = HealthSettings()
    numbers: dict[str, Any] = {}
    for key in _NUMBERS:
        value = section.get(key, getattr(d, key))
        numbers[key] = type(getattr(d, key))(value)  # int or float, as the default
    restart = section.get("restart")
    return HealthSettings(
        checks=tuple(parse_check(i, spec) for i, spec in enumerate(raw_checks)),
        restart=restart.strip() if restart else None,
        stuck_action=str(section.get("stuck_action", d.stuck_action)),
        **numbers,
    )


def settings(cfg: Config) -> HealthSettings:
    """The project's ``[health]`` settings (defaults when the table is absent),
    with ``[claude] retry_after`` for the watchdog's resumes."""
    from dataclasses import replace

    parsed = parse(cfg.raw.get("health", {}))
    retry = cfg.section("claude").get("retry_after")
    return replace(parsed, retry_after=float(retry)) if retry is not None else parsed
