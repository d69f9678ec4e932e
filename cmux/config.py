"""One place for settings: flags > CMUX_* environment > cmux.toml > defaults.

``load_config`` finds the project (CMUX_HOME for an agent, otherwise the
nearest cmux.toml upwards from the working directory) and returns a frozen
Config. Nothing else reads cmux.toml or the CMUX_* variables.
"""

import os
import re
import sys
from pathlib import Path
from typing import Any, NamedTuple

from cmux.errors import ConfigError, NotInitialized
from cmux.paths import DataRoot

CONFIG_NAME = "cmux.toml"
# Bump whenever cmux.settings_schema changes: a file cached as valid under an
# older schema is then parsed and checked again.
SCHEMA_VERSION = 3
PROJECT_MARKER = "project"  # state/project: absolute path of the project root

DEFAULT_TOML = """\
# cmux configuration: see `cmux --help` and README.md.
# Precedence: command-line flags > CMUX_* environment > this file > defaults.

[cmux]
# Where mailboxes, journal and state live; relative to this file.
data_root = ".cmux"
# The agent profile the supervisor and workers run by default:
# "claude" (Claude Code), "demo" (built in, needs no account), "shell",
# or a profile defined under [profiles] below.
agent = "claude"

[claude]
# The Claude Code binary and its permission mode for cmux's agents:
# default, acceptEdits, auto, bypassPermissions, dontAsk or plan.
command = "claude"
permission_mode = "acceptEdits"
# Extra arguments for every Claude Code agent.
args = []

[mail]
# Replies deeper than this go to deadletter (stops agents bouncing forever).
depth_limit = 8
# Bodies over this many bytes are refused at send time.
max_body_bytes = 8388608

# [profiles.myagent]
# command = "aider --yes"     # the task is appended as the last argument
# task = "arg"                # "arg" (default), "type" (typed in) or "none"

# [health]
# interval = 30               # seconds between checks
# threshold = 3               # consecutive failures before restart/rollback
# restart = "systemctl --user restart myapp"
# rollback_budget = 3         # rollbacks allowed per window
# rollback_window = 3600      # seconds
# [[health.checks]]
# name = "tests"
# command = "pytest -q -x"
# timeout = 300
# [[health.checks]]
# name = "web"
# url = "http://127.0.0.1:8000/health"
# timeout = 5
"""


# NamedTuple, not dataclass: importing dataclasses pulls in inspect (~15 ms),
# and every tools/ call and hook is a new process that reads the config. No
# `from __future__ import annotations` in this module: with it, every field's
# annotation is a string that typing.NamedTuple compiles into a ForwardRef
# (~1.5 ms on `tools/mailbox send`, see docs/PERFORMANCE.md).
class Profile(NamedTuple):
    """How to start an agent: a command line and how its task reaches it."""

    name: str
    command: str
    task: str = "arg"  # arg | type | none
    builtin: bool = False


class Config(NamedTuple):
    project_root: Path
    data: DataRoot
    agent: str = "claude"
    claude_command: str = "claude"
    claude_permission_mode: str = "acceptEdits"
    claude_args: tuple[str, ...] = ()
    depth_limit: int = 8
    max_body_bytes: int = 8 * 1024 * 1024
    profiles: dict[str, Profile] = {}  # noqa: RUF012 (immutable by convention)
    raw: dict[str, Any] = {}  # noqa: RUF012

    @property
    def socket_name(self) -> str:
        """A private tmux socket per data root, never the user's default."""
        env = os.environ.get("CMUX_TMUX_SOCKET")
        if env:
            return env
        import hashlib  # only here: most processes never need the socket name

        digest = hashlib.sha1(str(self.data.root).encode()).hexdigest()[:10]
        return f"cmux-{digest}"

    @property
    def session_name(self) -> str:
        return os.environ.get("CMUX_SESSION") or session_name_for(self.project_root)

    def section(self, name: str) -> dict[str, Any]:
        value = self.raw.get(name, {})
        return value if isinstance(value, dict) else {}


def session_name_for(project_root: Path) -> str:
    base = re.sub(r"[^A-Za-z0-9_-]+", "-", project_root.name).strip("-") or "project"
    return f"cmux-{base}"[:40]


def write_project_marker(data: DataRoot, project_root: Path) -> None:
    """state/project: how an agent with only CMUX_HOME finds its project."""
    from cmux.fsutil import atomic_write

    atomic_write(data.state_dir / PROJECT_MARKER, f"{project_root}\n")


def find_project_root(start: Path | None = None) -> Path | None:
    here = (start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if (d / CONFIG_NAME).is_file():
            return d
    return None


def _parse_toml(path: Path) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    try:
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        from cmux.inputs import where_bad

        raise ConfigError(
            f"{path} is not valid UTF-8: {where_bad(data, exc)}",
            "TOML files are UTF-8 text; fix or re-save the file",
        ) from None
    except tomllib.TOMLDecodeError as exc:
        hint = "fix the file and try again"
        raise ConfigError(f"{path} is not valid TOML: {exc}", hint) from None


def _read_toml(path: Path, cache: Path | None = None) -> dict[str, Any]:
    """cmux.toml as a dict, checked against cmux.settings_schema (ConfigError
    names the key, the value and what is allowed).

    With ``cache``, a file that passed is kept as JSON keyed by its stat and
    the schema's version, because parsing TOML (tomllib compiles its regexes
    at import) and importing the schema cost every agent's tools/ call and
    hook ~12 ms. Only a file that passed is ever cached."""
    import json

    try:
        st = os.stat(path)
    except FileNotFoundError:
        return {}
    key = [st.st_mtime_ns, st.st_size, st.st_ino, SCHEMA_VERSION]
    if cache is not None:
        try:
            with open(cache, encoding="utf-8") as fh:
                cached = json.load(fh)
            if cached.get("key") == key and isinstance(cached.get("raw"), dict):
                return dict(cached["raw"])
        except (OSError, ValueError, AttributeError):
            pass
    raw = _parse_toml(path)
    from cmux.settings_schema import validate

    validate(raw, str(path))
    if cache is not None:
        from cmux.fsutil import atomic_write

        try:
            atomic_write(cache, json.dumps({"key": key, "raw": raw}))
        except Exception:  # TOML dates are not JSON, a full disk: parse next time
            pass
    return raw


def _env(name: str) -> Any:
    """A CMUX_* override, checked as the key it overrides; None when unset."""
    text = os.environ.get(name)
    if not text:
        return None
    from cmux.settings_schema import check_env

    return check_env(name, text)


def load_config(start: Path | None = None, *, agent: str | None = None) -> Config:
    """Find the project and read its settings.

    An agent has CMUX_HOME (absolute) and CMUX_PROJECT in its environment, so a
    worker in a worktree or another directory finds the same data root.
    """
    home = os.environ.get("CMUX_HOME")
    project: Path | None
    if home and start is None:
        data_root = Path(home)
        env_project = os.environ.get("CMUX_PROJECT")
        marker = data_root / "state" / PROJECT_MARKER
        if env_project:
            project = Path(env_project)
        elif marker.is_file():
            project = Path(marker.read_text().strip())
        else:
            project = find_project_root() or data_root.parent
        raw = _read_toml(project / CONFIG_NAME, data_root / "state" / "config-cache.json")
    else:
        project = find_project_root(start)
        if project is None:
            where = (start or Path.cwd()).resolve()
            raise NotInitialized(
                f"no {CONFIG_NAME} in {where} or any folder above it",
                "run `cmux init` in the project's git repository first",
            )
        raw = _read_toml(project / CONFIG_NAME)
        data_root = project / raw.get("cmux", {}).get("data_root", ".cmux")
    return _build(project, data_root, raw, agent=agent)


def _build(project: Path, data_root: Path, raw: dict[str, Any], *, agent: str | None) -> Config:
    """Settings from a file that passed the schema, under the CMUX_* overrides."""
    cm = raw.get("cmux", {})
    cl = raw.get("claude", {})
    mail = raw.get("mail", {})
    profiles = {
        name: Profile(name=name, command=spec["command"], task=spec.get("task", "arg"))
        for name, spec in raw.get("profiles", {}).items()
    }
    return Config(
        project_root=project.resolve(),
        data=DataRoot(data_root),
        agent=agent or _env("CMUX_AGENT_PROFILE") or cm.get("agent", "claude"),
        claude_command=_env("CMUX_CLAUDE") or cl.get("command", "claude"),
        claude_permission_mode=_env("CMUX_PERMISSION_MODE")
        or cl.get("permission_mode", "acceptEdits"),
        claude_args=tuple(cl.get("args", ())),
        depth_limit=int(_env("CMUX_DEPTH_LIMIT") or mail.get("depth_limit", 8)),
        max_body_bytes=int(_env("CMUX_MAX_BODY") or mail.get("max_body_bytes", 8 * 1024 * 1024)),
        profiles=profiles,
        raw=raw,
    )
