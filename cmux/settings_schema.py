"""The one schema of cmux.toml: every section, every key, its type and range.

:func:`validate` checks a parsed file as a whole; :func:`check_env` checks
the value of a ``CMUX_*`` variable that overrides a key. Both raise
ConfigError naming the key, the value and what is allowed, so a typo or an
``inf`` is never silently ignored and never switches the safety net off.

Invariants:

- Every section and every key cmux reads is listed here, and nothing else is
  accepted: an unknown section or key is an error ("did you mean ...?").
- Numbers are finite and within their range; booleans are not numbers; a
  table is never accepted where a value belongs, nor the reverse.
- Validation only checks: the values are used as TOML gave them (the readers
  in cmux.config and cmux.health.config convert int/float and fill defaults).

Imported only when cmux.toml is parsed: cmux.config caches a file that
passed (keyed by its stat and ``config.SCHEMA_VERSION``, to bump whenever
this schema changes), so an agent's ``tools/mailbox send`` does not pay.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from cmux.agents.adapters import capabilities
from cmux.errors import ConfigError

# The agent programs cmux knows without a [profiles.X] entry (cmux/agents/profiles.py
# knows how to start each one).
BUILTIN_PROFILES = ("claude", "codex", "gemini", "demo", "shell")
PERMISSION_MODES = ("default", "acceptEdits", "auto", "bypassPermissions", "dontAsk", "plan")
DAY = 86400.0


def show(value: Any) -> str:
    """A value as a person wrote it in TOML (a table is "a table")."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, list):
        text = "[" + ", ".join(show(v) for v in value[:4]) + (", ...]" if len(value) > 4 else "]")
        return text if len(text) <= 60 else text[:57] + "..."
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _wrong(where: str, value: Any, allowed: str, hint: str | None = None) -> ConfigError:
    return ConfigError(f"{where} must be {allowed}, not {show(value)}", hint)


# -- values ---------------------------------------------------------------------
# A validator is called with (value, where) and raises ConfigError, or returns.


def _num(x: float) -> str:
    return str(int(x)) if x == int(x) else f"{x:g}"


class Number:
    """A finite number (``kind`` int: a whole one) from ``lo`` to ``hi``."""

    def __init__(self, kind: type, lo: float, hi: float, unit: str = "") -> None:
        self.kind, self.lo, self.hi, self.unit = kind, lo, hi, unit

    @property
    def allowed(self) -> str:
        what = "a whole number" if self.kind is int else "a number"
        unit = f" {self.unit}" if self.unit else ""
        return f"{what}{unit} from {_num(self.lo)} to {_num(self.hi)}"

    def __call__(self, value: Any, where: str) -> None:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        ok = ok and math.isfinite(value) and self.lo <= value <= self.hi
        if ok and self.kind is int:
            ok = value == int(value)
        if not ok:
            raise _wrong(where, value, self.allowed)


class Text:
    """A string that is not blank; with ``choices``, one of them."""

    def __init__(self, choices: tuple[str, ...] = ()) -> None:
        self.choices = choices

    @property
    def allowed(self) -> str:
        if self.choices:
            return "one of " + ", ".join(f'"{c}"' for c in self.choices)
        return "a non-empty string"

    def __call__(self, value: Any, where: str) -> None:
        if not isinstance(value, str) or not value.strip():
            raise _wrong(where, value, self.allowed)
        if self.choices and value not in self.choices:
            raise _wrong(where, value, self.allowed, _near(value, self.choices))


def flag(value: Any, where: str) -> None:
    if not isinstance(value, bool):
        raise _wrong(where, value, "true or false")


def strings(value: Any, where: str) -> None:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _wrong(where, value, 'a list of strings, e.g. ["--verbose"]')


def command(value: Any, where: str) -> None:
    if isinstance(value, str) and value.strip():
        return
    if isinstance(value, list) and value and all(isinstance(a, str) and a for a in value):
        return
    raise _wrong(where, value, 'a command line, or a list of strings such as ["pytest", "-q"]')


def url(value: Any, where: str) -> None:
    from urllib.parse import urlsplit

    parts = urlsplit(value) if isinstance(value, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        raise _wrong(
            where,
            value,
            "an http:// or https:// address",
            'for example: url = "http://127.0.0.1:8000/health"',
        )


Validator = Callable[[Any, str], None]


# -- tables ---------------------------------------------------------------------


def _closest(word: str, known: tuple[str, ...]) -> str | None:
    import difflib

    close = difflib.get_close_matches(word, list(known), n=1, cutoff=0.6)
    return close[0] if close else None


def _near(word: str, known: tuple[str, ...]) -> str | None:
    close = _closest(word, known)
    return f"did you mean {close!r}?" if close else None


class Table:
    """A TOML table with these keys (each a validator) and nothing else;
    ``rule`` checks what involves more than one key."""

    def __init__(
        self,
        keys: dict[str, Validator],
        required: tuple[str, ...] = (),
        rule: Callable[[dict[str, Any], str], None] | None = None,
        doc: str = "README.md",
    ) -> None:
        self.keys, self.required, self.rule, self.doc = keys, required, rule, doc

    def __call__(self, value: Any, where: str) -> None:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a table, not {show(value)}")
        for key in value:
            if key not in self.keys:
                near = _near(key, tuple(self.keys))
                raise ConfigError(
                    f"{where} has an unknown key: {key}",
                    (near + " " if near else "")
                    + f"the keys of {where}: {', '.join(self.keys)} (see {self.doc})",
                )
        for key in self.required:
            if key not in value:
                raise ConfigError(f"{where} needs a {key}")
        for key, check in self.keys.items():
            if key in value:
                check(value[key], f"{where} {key}")
        if self.rule is not None:
            self.rule(value, where)


class Named:
    """``[NAME.*]``: any number of tables, each checked by ``table``."""

    def __init__(self, section: str, table: Table) -> None:
        self.section, self.table = section, table

    def __call__(self, value: Any, where: str) -> None:
        if not isinstance(value, dict):
            raise ConfigError(
                f"[{self.section}] must hold tables such as [{self.section}.NAME], "
                f"not {show(value)}"
            )
        for name, spec in value.items():
            if not isinstance(spec, dict):
                raise ConfigError(f"[{self.section}.{name}] must be a table, not {show(spec)}")
            self.table(spec, f"[{self.section}.{name}]")


# -- [health] -------------------------------------------------------------------


def _seconds(lo: float, hi: float = DAY) -> Number:
    return Number(float, lo, hi, "of seconds")


def _one_of_command_or_url(spec: dict[str, Any], where: str) -> None:
    if ("command" in spec) == ("url" in spec):
        raise ConfigError(
            f"{where} needs exactly one of command or url",
            'command = "pytest -q -x", or url = "http://127.0.0.1:8000/health"',
        )


CHECK = Table(
    {"name": Text(), "command": command, "url": url, "timeout": _seconds(0.01)},
    rule=_one_of_command_or_url,
    doc="docs/HEALTH.md",
)


def check_name(i: int, spec: dict[str, Any]) -> str:
    """A check's name: its own, or check1, check2 ... by position."""
    name = spec.get("name")
    return name.strip() if isinstance(name, str) and name.strip() else f"check{i + 1}"


class Checks:
    """``[[SECTION.checks]]``: a list of tables (one ``[SECTION.checks]`` table
    also counts as a list of one), each with its own name."""

    def __init__(self, section: str) -> None:
        self.section = section

    def __call__(self, value: Any, where: str) -> None:
        kind = f"[[{self.section}.checks]]"
        if isinstance(value, dict):
            value = [value]
        if not isinstance(value, list):
            raise ConfigError(
                f"{where} must be a list of tables, not {show(value)}",
                f"write each one as {kind}",
            )
        seen: set[str] = set()
        for i, spec in enumerate(value):
            if not isinstance(spec, dict):
                raise ConfigError(
                    f"{kind} #{i + 1} must be a table with a command or a url, not {show(spec)}"
                )
            name = check_name(i, spec)
            CHECK(spec, f"{kind} {name!r}" if "name" in spec else f"{kind} #{i + 1}")
            if name in seen:
                raise ConfigError(
                    f"{kind} {name!r}: two checks have the same name",
                    "give each check its own name",
                )
            seen.add(name)


checks = Checks("health")


HEALTH = Table(
    {
        "interval": _seconds(0.05),
        "threshold": Number(int, 1, 1000),
        "restart": Text(),
        "restart_timeout": _seconds(0.05),
        "restart_wait": _seconds(0),
        "rollback_budget": Number(int, 0, 1000),
        "rollback_window": _seconds(1, 366 * DAY),
        "idle_nudge": _seconds(0, 366 * DAY),
        "worker_time_limit": _seconds(0, 366 * DAY),
        "worker_grace": _seconds(0),
        "supervisor_restarts": Number(int, 0, 1000),
        "supervisor_restart_window": _seconds(1, 366 * DAY),
        "stuck_after": _seconds(0, 366 * DAY),
        "stuck_action": Text(("tell", "interrupt")),
        "checks": checks,
    },
    doc="docs/HEALTH.md",
)


# -- the file -------------------------------------------------------------------

PROFILE = Table(
    {
        "command": Text(),
        "task": Text(("arg", "type", "none")),
        "adapter": Text(capabilities.NAMES),  # cmux/agents/adapters/
    },
    required=("command",),
)

TOKENS = Number(int, 0, 10**13, "of tokens")  # 0: no budget
CMUX = Table({"data_root": Text(), "agent": Text(), "max_tokens_total": TOKENS})
CLAUDE = Table(
    {
        "command": Text(),
        "permission_mode": Text(PERMISSION_MODES),
        "args": strings,
        "trust": flag,
        "max_tokens": TOKENS,
        "retry_after": _seconds(0.05),
    }
)
# [gemini]: the Gemini CLI (cmux/agents/adapters/gemini.py, docs/AGENTS.md).
GEMINI_APPROVAL_MODES = ("default", "auto_edit", "yolo", "plan")
GEMINI = Table(
    {
        "command": Text(),
        "approval_mode": Text(GEMINI_APPROVAL_MODES),
        "model": Text(),
        "base_url": url,  # GOOGLE_GEMINI_BASE_URL; {agent} and {session} are filled in
        "auth": Text(),  # security.auth.selectedType, e.g. "gemini-api-key"
        "args": strings,
    },
    doc="docs/AGENTS.md",
)
# [codex]: the Codex CLI (cmux/agents/adapters/codex.py, docs/AGENTS.md).
CODEX_APPROVALS = ("untrusted", "on-failure", "on-request", "never")
CODEX_SANDBOXES = ("read-only", "workspace-write", "danger-full-access")
CODEX = Table(
    {
        "command": Text(),
        "args": strings,
        "model": Text(),
        "base_url": Text(),
        "env_key": Text(),
        "approval_policy": Text(CODEX_APPROVALS),
        "sandbox": Text(CODEX_SANDBOXES),
    },
    doc="docs/AGENTS.md",
)
MAIL = Table(
    {
        "depth_limit": Number(int, 1, 1000),
        "max_body_bytes": Number(int, 1, 1 << 30),
        "read_timeout": Number(float, 0.05, DAY, "of seconds"),
    }
)

# [merge]: the merge queue (docs/MERGE.md); its checks default to the health checks.
MERGE_STRATEGIES = ("merge", "rebase", "squash")
MERGE = Table(
    {
        "trunk": Text(),
        "strategy": Text(MERGE_STRATEGIES),
        "batch": Number(int, 1, 64),
        "auto": flag,
        "checks": Checks("merge"),
    },
    doc="docs/MERGE.md",
)

# [dashboard]: the web dashboard `cmux start` runs in the monitor window (docs/DASHBOARD.md).
DASHBOARD = Table(
    {
        "enabled": flag,
        "host": Text(),
        "port": Number(int, 0, 65535),  # 0: a free port, picked when it starts
    },
    doc="docs/DASHBOARD.md",
)

# -- [cluster] and [hosts] (docs/CLUSTER.md) ----------------------------------------

HOST_NAME_RULE = "1-32 letters, digits, '-' or '_', starting with a letter or digit"
# Words [hosts] default takes besides a host's name; no host may be called so.
PLACEMENTS = ("load", "local")


def host_name(value: Any, where: str) -> None:
    """A host's name: it is part of NATS subjects and keys, so no dots nor spaces."""
    import re

    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}", value):
        raise _wrong(where, value, HOST_NAME_RULE)


def project_token(value: Any, where: str) -> None:
    """[cluster] project: part of every NATS subject, so no dots nor spaces."""
    import re

    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", value):
        raise _wrong(where, value, "1-64 letters, digits, '-' or '_'")


def nats_url(value: Any, where: str) -> None:
    from urllib.parse import urlsplit

    ok = isinstance(value, str)
    for part in value.split(",") if ok else ():
        bits = urlsplit(part.strip())
        ok = ok and bits.scheme in ("nats", "tls") and bool(bits.hostname)
    if not ok:
        raise _wrong(
            where,
            value,
            "a nats:// or tls:// address (several: comma-separated)",
            'for example: nats = "nats://10.0.0.1:4222"',
        )


def _one_kind_of_credentials(spec: dict[str, Any], where: str) -> None:
    kinds = [k for k in ("token", "user", "creds") if k in spec]
    if len(kinds) > 1:
        raise ConfigError(
            f"{where} has {' and '.join(kinds)}: give one kind of credentials",
            'token = "...", or user = "..." with password = "...", or creds = "file.creds"',
        )
    if ("user" in spec) != ("password" in spec):
        raise ConfigError(f"{where} needs user and password together")
    if ("tls_cert" in spec) != ("tls_key" in spec):
        raise ConfigError(f"{where} needs tls_cert and tls_key together")


CLUSTER = Table(
    {
        "nats": nats_url,
        "token": Text(),
        "user": Text(),
        "password": Text(),
        "creds": Text(),
        "tls_ca": Text(),
        "tls_cert": Text(),
        "tls_key": Text(),
        "host": host_name,
        "host_timeout": _seconds(1, 366 * DAY),
        "heartbeat": _seconds(0.1, 3600),
        # The short id in every NATS subject (default: the trunk's root commit).
        "project": project_token,
        # Seconds before a delivery not acked (its node died) comes again.
        "ack_wait": _seconds(0.1, 3600),
        # Hours a spool's sent/ file (mail JetStream stored) is kept; at
        # least a quarter of an hour, past the streams' duplicate window.
        "keep_sent": Number(float, 0.25, 366 * 24, "of hours"),
        # Copies JetStream keeps of each stream and bucket (3 on a 3-server
        # NATS cluster: one server may restart or be cut off); default 1.
        "replicas": Number(int, 1, 5),
        # The trunk repository as the other hosts reach it (a git URL); by
        # default ssh://<[hosts.<host>] ssh>/<project root>.
        "trunk": Text(),
    },
    rule=_one_kind_of_credentials,
    doc="docs/CLUSTER.md",
)


def ssh_destination(value: Any, where: str) -> None:
    import re

    if not isinstance(value, str) or not re.fullmatch(r"([^@\s]+@)?[^@\s:/-][^@\s:/]*", value):
        raise _wrong(where, value, '"user@host" or "host"', 'for example: ssh = "cmux@10.0.0.2"')


HOST = Table(
    {
        "ssh": ssh_destination,
        "port": Number(int, 1, 65535),
        "identity": Text(),
        "dir": Text(),
        "agents": Number(int, 1, 100000),
        # How to run cmux there (default: cmux on the PATH of a non-interactive ssh).
        "cmux": Text(),
    },
    required=("dir", "ssh"),
    doc="docs/CLUSTER.md",
)


def hosts(value: Any, where: str) -> None:
    """``[hosts]``: ``default`` (the placement) and one ``[hosts.NAME]`` table per host."""
    if not isinstance(value, dict):
        raise ConfigError(f"[hosts] must hold tables such as [hosts.NAME], not {show(value)}")
    for name, spec in value.items():
        if name == "default":
            continue
        host_name(name, f"[hosts.{name}] (a host's name)")
        if name in PLACEMENTS:
            raise ConfigError(
                f"[hosts.{name}]: {name!r} is a word of [hosts] default, not a host's name",
                "call the host something else",
            )
        if not isinstance(spec, dict):
            raise ConfigError(
                f"[hosts] {name} = {show(spec)} is not a key cmux knows",
                "[hosts] takes default = ...; each host is a table [hosts.NAME] (docs/CLUSTER.md)",
            )
        HOST(spec, f"[hosts.{name}]")
    if "default" in value:
        default = value["default"]
        names = tuple(n for n in value if n != "default")
        allowed = (*PLACEMENTS, *names)
        if not isinstance(default, str) or default not in allowed:
            raise _wrong(
                "[hosts] default",
                default,
                "one of " + ", ".join(f'"{c}"' for c in allowed),
                _near(default, allowed) if isinstance(default, str) else None,
            )


SECTIONS: dict[str, Validator] = {
    "cmux": CMUX,
    "claude": CLAUDE,
    "codex": CODEX,
    "gemini": GEMINI,
    "mail": MAIL,
    "profiles": Named("profiles", PROFILE),
    "health": HEALTH,
    "merge": MERGE,
    "dashboard": DASHBOARD,
    "cluster": CLUSTER,
    "hosts": hosts,
}


def validate(raw: dict[str, Any], source: str = "cmux.toml") -> None:
    """Check a whole parsed cmux.toml; raise ConfigError at the first mistake."""
    try:
        _validate(raw)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc.message}", exc.hint) from None


def _validate(raw: dict[str, Any]) -> None:
    for name, value in raw.items():
        if name not in SECTIONS:
            near = _closest(name, tuple(SECTIONS))
            listed = ", ".join(f"[{s}]" for s in SECTIONS).replace("[profiles]", "[profiles.NAME]")
            listed = listed.replace("[hosts]", "[hosts.NAME]")
            raise ConfigError(
                f"[{name}] is not a section cmux knows"
                + ("" if isinstance(value, dict) else f" (nor a key outside one: {name} = ...)"),
                (f"did you mean [{near}]? " if near else "") + f"the sections: {listed}",
            )
        SECTIONS[name](value, f"[{name}]")
    agent = raw.get("cmux", {}).get("agent")
    known = (*BUILTIN_PROFILES, *raw.get("profiles", {}))
    if agent is not None and agent not in known:
        near = _near(agent, known)
        raise ConfigError(
            f"[cmux] agent = {show(agent)} is not a profile",
            (near + " " if near else "") + f"the profiles: {', '.join(known)}",
        )


# -- CMUX_* overrides -----------------------------------------------------------

ENV: dict[str, tuple[str, Table]] = {
    "CMUX_DEPTH_LIMIT": ("[mail] depth_limit", MAIL),
    "CMUX_MAX_BODY": ("[mail] max_body_bytes", MAIL),
    "CMUX_PERMISSION_MODE": ("[claude] permission_mode", CLAUDE),
    "CMUX_CLAUDE": ("[claude] command", CLAUDE),
    "CMUX_AGENT_PROFILE": ("[cmux] agent", CMUX),
}


def check_env(name: str, text: str) -> Any:
    """The value of an overriding variable, checked as its key in the file is."""
    key, table = ENV[name]
    check = table.keys[key.split()[-1]]
    hint = f"it overrides {key}; fix or unset it"
    value: Any = text
    if isinstance(check, Number):
        try:
            value = int(text.strip()) if check.kind is int else float(text)
        except ValueError:
            raise ConfigError(f"{name} must be {check.allowed}, not {text!r}", hint) from None
    try:
        check(value, name)
    except ConfigError as exc:
        raise ConfigError(exc.message, hint) from None
    return value
