"""``[health]`` in cmux.toml: checks, thresholds, the rollback budget, watchdogs.

Read once through :func:`settings`; every value is checked here so that a
typo becomes a clear ConfigError at start, not a safety net that silently
does nothing.

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
from urllib.parse import urlsplit

from cmux.config import Config
from cmux.errors import ConfigError

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

    @property
    def enabled(self) -> bool:
        return bool(self.checks)


_NUMBERS: dict[str, tuple[type, float, str]] = {
    # key: (type, minimum, meaning)
    "interval": (float, 0.05, "seconds between rounds of checks"),
    "threshold": (int, 1, "consecutive failing rounds before acting"),
    "restart_timeout": (float, 0.05, "seconds the restart command may take"),
    "restart_wait": (float, 0, "seconds to wait after a restart before checking again"),
    "rollback_budget": (int, 0, "automatic rollbacks allowed per window (0: never roll back)"),
    "rollback_window": (float, 1, "seconds of the rollback budget's window"),
    "idle_nudge": (
        float,
        0,
        "seconds without agent events before the supervisor is nudged (0: off)",
    ),
    "worker_time_limit": (float, 0, "seconds a worker may run (0: no limit)"),
    "worker_grace": (float, 0, "seconds between the time-limit warning and the end"),
    "supervisor_restarts": (int, 0, "supervisor restarts allowed per window"),
    "supervisor_restart_window": (float, 1, "seconds of the supervisor restart window"),
}
_KNOWN = frozenset({"checks", "restart", *_NUMBERS})
_CHECK_KEYS = frozenset({"name", "command", "url", "timeout"})


def _number(section: dict[str, Any], key: str, default: float) -> Any:
    kind, minimum, meaning = _NUMBERS[key]
    value = section.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(
            f"[health] {key} must be a number ({meaning}), not {value!r}",
            f"for example: {key} = {default:g}",
        )
    if kind is int and value != int(value):
        raise ConfigError(f"[health] {key} must be a whole number, not {value!r}")
    if value < minimum:
        raise ConfigError(f"[health] {key} must be at least {minimum:g}, not {value!r} ({meaning})")
    return int(value) if kind is int else float(value)


def _check(i: int, spec: Any, seen: set[str]) -> Check:
    where = f"[[health.checks]] #{i + 1}"
    if not isinstance(spec, dict):
        raise ConfigError(f"{where} must be a table with a command or a url")
    name = spec.get("name", f"check{i + 1}")
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{where}: name must be a non-empty string, not {name!r}")
    name = name.strip()
    where = f"[[health.checks]] {name!r}"
    if name in seen:
        raise ConfigError(f"{where}: two checks have the same name", "give each check its own name")
    seen.add(name)
    extra = sorted(set(spec) - _CHECK_KEYS)
    if extra:
        raise ConfigError(
            f"{where}: unknown key{'s' if len(extra) > 1 else ''} {', '.join(extra)}",
            "a check has name, command or url, and timeout",
        )
    command, url = spec.get("command"), spec.get("url")
    if (command is None) == (url is None):
        raise ConfigError(
            f"{where} needs exactly one of command or url",
            'command = "pytest -q -x", or url = "http://127.0.0.1:8000/health"',
        )
    cmd: str | tuple[str, ...] | None = None
    if command is not None:
        if isinstance(command, list) and command and all(isinstance(a, str) for a in command):
            cmd = tuple(command)
        elif isinstance(command, str) and command.strip():
            cmd = command
        else:
            raise ConfigError(
                f"{where}: command must be a non-empty string or list of strings, not {command!r}"
            )
    if url is not None:
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(
                f"{where}: url must be an http:// or https:// address, not {url!r}",
                'for example: url = "http://127.0.0.1:8000/health"',
            )
    default_timeout = DEFAULT_URL_TIMEOUT if url is not None else DEFAULT_COMMAND_TIMEOUT
    timeout = spec.get("timeout", default_timeout)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise ConfigError(f"{where}: timeout must be a positive number of seconds, not {timeout!r}")
    return Check(name=name, command=cmd, url=url, timeout=float(timeout))


def parse(section: dict[str, Any]) -> HealthSettings:
    """Validate a ``[health]`` table and return its settings."""
    unknown = sorted(set(section) - _KNOWN)
    if unknown:
        raise ConfigError(
            f"[health] has unknown key{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)}",
            f"known keys: {', '.join(sorted(_KNOWN))} (see docs/HEALTH.md)",
        )
    raw_checks = section.get("checks", [])
    if isinstance(raw_checks, dict):
        raw_checks = [raw_checks]
    if not isinstance(raw_checks, list):
        raise ConfigError(
            "[health] checks must be a list of tables", "write each one as [[health.checks]]"
        )
    seen: set[str] = set()
    checks = tuple(_check(i, spec, seen) for i, spec in enumerate(raw_checks))
    restart = section.get("restart")
    if restart is not None and (not isinstance(restart, str) or not restart.strip()):
        raise ConfigError(f"[health] restart must be a command line, not {restart!r}")
    d = HealthSettings()
    return HealthSettings(
        checks=checks,
        interval=_number(section, "interval", d.interval),
        threshold=_number(section, "threshold", d.threshold),
        restart=restart.strip() if restart else None,
        restart_timeout=_number(section, "restart_timeout", d.restart_timeout),
        restart_wait=_number(section, "restart_wait", d.restart_wait),
        rollback_budget=_number(section, "rollback_budget", d.rollback_budget),
        rollback_window=_number(section, "rollback_window", d.rollback_window),
        idle_nudge=_number(section, "idle_nudge", d.idle_nudge),
        worker_time_limit=_number(section, "worker_time_limit", d.worker_time_limit),
        worker_grace=_number(section, "worker_grace", d.worker_grace),
        supervisor_restarts=_number(section, "supervisor_restarts", d.supervisor_restarts),
        supervisor_restart_window=_number(
            section, "supervisor_restart_window", d.supervisor_restart_window
        ),
    )


def settings(cfg: Config) -> HealthSettings:
    """The project's ``[health]`` settings (defaults when the table is absent)."""
    raw = cfg.raw.get("health")
    if raw is not None and not isinstance(raw, dict):
        raise ConfigError("[health] must be a table", "see docs/HEALTH.md for an example")
    return parse(cfg.section("health"))
