"""One place for settings: flags > CMUX_* environment > cmux.toml > defaults.

``load_config`` finds the project (CMUX_HOME for an agent, otherwise the
nearest cmux.toml upwards from the working directory) and returns a frozen
Config. Nothing else reads cmux.toml or the CMUX_* variables.

Every tools/ call and hook is a new process that reads the config, so this
module imports only ``os`` and ``sys`` (and cmux's base modules): paths are
strings until a caller asks for a Path (``Config.project_root``), the cached
settings are read with cmux/fastjson.py, and TOML and the schema are loaded
only when the cache misses (docs/PERFORMANCE.md).
"""

from __future__ import annotations

import os
import sys

from cmux import fastjson
from cmux.agents.adapters import capabilities
from cmux.errors import ConfigError, NotInitialized
from cmux.paths import DataRoot

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

CONFIG_NAME = "cmux.toml"
# Bump whenever cmux.settings_schema changes: a file cached as valid under an
# older schema is then parsed and checked again.
SCHEMA_VERSION = 10
PROJECT_MARKER = "project"  # state/project: absolute path of the project root

DEFAULT_TOML = """\
# cmux configuration: see `cmux --help` and README.md.
# Precedence: command-line flags > CMUX_* environment > this file > defaults.

[cmux]
# Where mailboxes, journal and state live; relative to this file.
data_root = ".cmux"
# The agent profile the supervisor and workers run by default:
# "claude" (Claude Code), "codex" (Codex CLI), "demo" (built in, needs no
# account), "shell", or a profile defined under [profiles] below.
agent = "claude"
# A token budget for the whole team (0: none); see [claude] max_tokens.
# max_tokens_total = 0

[claude]
# The Claude Code binary and its permission mode for cmux's agents:
# default, acceptEdits, auto, bypassPermissions, dontAsk or plan.
command = "claude"
permission_mode = "acceptEdits"
# Extra arguments for every Claude Code agent.
args = []
# A worker's token budget, counted as `cmux cost` counts (0: none): at 80 % it
# is warned, at 100 % interrupted and asked to report, then stopped.
# max_tokens = 0

# [codex]                     # the Codex CLI (`--agent codex`, docs/AGENTS.md)
# command = "codex"
# model = "gpt-5-codex"
# base_url = "https://api.openai.com/v1"   # any Responses API endpoint
# env_key = "OPENAI_API_KEY"  # the variable holding its API key
# approval_policy = "on-request"           # or "never", "untrusted", "on-failure"
# sandbox = "workspace-write" # or "read-only", "danger-full-access"
# args = []

# [merge]                     # the merge queue (docs/MERGE.md)
# strategy = "merge"          # or "rebase", "squash"
# batch = 4                   # entries tested together
# auto = false                # queue a worktree worker's branch at `mailbox done`
# [[merge.checks]]            # default: the [[health.checks]]
# name = "tests"
# command = "pytest -q"

[mail]
# Replies deeper than this go to deadletter (stops agents bouncing forever).
depth_limit = 8
# Bodies over this many bytes are refused at send time.
max_body_bytes = 8388608
# A message delivered to a Claude agent but not read by its model after this
# many seconds (while it is idle) is delivered again, once; then its sender
# and you are told.
# read_timeout = 120

# [profiles.myagent]
# command = "aider --yes"     # the task is appended as the last argument
# task = "arg"                # "arg" (default), "type" (typed in) or "none"
# adapter = "program"         # what cmux knows of it: "program" (default; its
#                             # screen is read), "claude", "codex", "demo", "shell",
#                             # "command"

# [dashboard]                 # the web dashboard `cmux start` runs (docs/DASHBOARD.md)
# enabled = true              # `cmux dashboard --url` prints its address with its token
# host = "127.0.0.1"          # listen on loopback only, unless you say otherwise
# port = 0                    # 0: a free port
# [hosts.b]                   # another machine for workers, over SSH (docs/CLUSTER.md)
# ssh = "cmux@10.0.0.2"       # plus port = 22, identity = "~/.ssh/id_ed25519"
# dir = "/srv/cmux"           # where its checkouts and data root live there
# agents = 8                  # the most agents placed there
# [hosts]
# default = "local"           # where `cmux spawn` places a worker: "local", "load" or a host

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


# Plain classes with __slots__, not dataclasses (which import inspect, ~15
# ms) nor typing.NamedTuple (typing costs ~15 ms of a new process): every
# tools/ call and hook reads the config.
class Profile:
    """How to start an agent: a command line and how its task reaches it."""

    __slots__ = ("adapter", "builtin", "command", "name", "task")

    def __init__(
        self,
        name: str,
        command: str,
        task: str = "arg",
        builtin: bool = False,
        adapter: str | None = None,
    ) -> None:
        self.name = name
        self.command = command
        self.task = task  # arg | type | none
        self.builtin = builtin
        # The program's adapter (cmux/agents/adapters/): a built-in profile is
        # its own, a [profiles.X] entry names one or is a plain program.
        if adapter is None:
            adapter = capabilities.adapter_for_profile(name) if builtin else capabilities.PROGRAM
        self.adapter = adapter

    def _fields(self) -> tuple[str, str, str, bool, str]:
        return (self.name, self.command, self.task, self.builtin, self.adapter)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Profile) and other._fields() == self._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        return "Profile(name={!r}, command={!r}, task={!r}, builtin={!r})".format(*self._fields())


class Config:
    """The settings of one project (immutable by convention; ``replace``
    gives a changed copy)."""

    __slots__ = (
        "agent",
        "claude_args",
        "claude_command",
        "claude_permission_mode",
        "data",
        "depth_limit",
        "max_body_bytes",
        "profiles",
        "project",
        "raw",
    )

    def __init__(
        self,
        project_root: Path | str,
        data: DataRoot,
        agent: str = "claude",
        claude_command: str = "claude",
        claude_permission_mode: str = "acceptEdits",
        claude_args: tuple[str, ...] = (),
        depth_limit: int = 8,
        max_body_bytes: int = 8 * 1024 * 1024,
        profiles: dict[str, Profile] | None = None,
        raw: dict[str, Any] | None = None,
    ) -> None:
        self.project = os.fspath(project_root)  # the project's root, as a string
        self.data = data
        self.agent = agent
        self.claude_command = claude_command
        self.claude_permission_mode = claude_permission_mode
        self.claude_args = claude_args
        self.depth_limit = depth_limit
        self.max_body_bytes = max_body_bytes
        self.profiles: dict[str, Profile] = {} if profiles is None else profiles
        self.raw: dict[str, Any] = {} if raw is None else raw

    def replace(self, **changes: Any) -> Config:
        """A copy with ``changes`` (field names as the constructor's)."""
        fields: dict[str, Any] = {k: getattr(self, k) for k in self.__slots__ if k != "project"}
        fields["project_root"] = self.project
        fields.update(changes)
        return Config(**fields)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Config) and all(
            getattr(self, k) == getattr(other, k) for k in self.__slots__
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Config(project_root={self.project!r}, data={self.data!r}, agent={self.agent!r})"

    @property
    def project_root(self) -> Path:
        from pathlib import Path

        return Path(self.project)

    @property
    def socket_name(self) -> str:
        """A private tmux socket per data root, never the user's default."""
        env = os.environ.get("CMUX_TMUX_SOCKET")
        if env:
            return env
        import hashlib  # only here: most processes never need the socket name

        digest = hashlib.sha1(self.data.home.encode()).hexdigest()[:10]
        return f"cmux-{digest}"

    @property
    def session_name(self) -> str:
        return os.environ.get("CMUX_SESSION") or session_name_for(self.project)

    def section(self, name: str) -> dict[str, Any]:
        value = self.raw.get(name, {})
        return value if isinstance(value, dict) else {}


class Host:
    """One ``[hosts.NAME]`` entry: another machine agents can run on, over SSH."""

    __slots__ = ("agents", "cmux", "dir", "identity", "name", "port", "ssh")

    def __init__(
        self,
        name: str,
        ssh: str,
        dir: str,
        port: int | None = None,
        identity: str | None = None,
        agents: int | None = None,
        cmux: str = "cmux",
    ) -> None:
        self.name = name
        self.ssh = ssh  # user@host or host
        self.dir = dir  # where its checkouts and its data root live, on that host
        self.port = port
        self.identity = identity
        self.agents = agents  # the most agents placed there (None: no limit)
        self.cmux = cmux  # how cmux is run there

    @property
    def address(self) -> str:
        """The host part of ``ssh``."""
        return self.ssh.rpartition("@")[2]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Host) and all(
            getattr(self, k) == getattr(other, k) for k in self.__slots__
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Host(name={self.name!r}, ssh={self.ssh!r}, dir={self.dir!r})"


def hosts(cfg: Config) -> dict[str, Host]:
    """The ``[hosts.NAME]`` entries, by name (none: a single machine, as always)."""
    out: dict[str, Host] = {}
    for name, spec in cfg.section("hosts").items():
        if name == "default" or not isinstance(spec, dict):
            continue
        identity = spec.get("identity")
        out[name] = Host(
            name=name,
            ssh=spec["ssh"],
            dir=spec["dir"],
            port=int(spec["port"]) if "port" in spec else None,
            identity=os.path.expanduser(identity) if identity else None,
            agents=int(spec["agents"]) if "agents" in spec else None,
            cmux=spec.get("cmux", "cmux"),
        )
    return out


def this_host(cfg: Config) -> str:
    """This machine's name in the cluster: ``[cluster] host``, else its hostname."""
    name = cfg.section("cluster").get("host")
    if name:
        return str(name)
    import socket

    return socket.gethostname().split(".")[0] or "local"


def placement(cfg: Config) -> str:
    """``[hosts] default``: "local" (the default), "load", or a host's name."""
    return str(cfg.section("hosts").get("default", "local"))


def session_name_for(project_root: Path | str) -> str:
    import re  # not on the send path

    name = os.path.basename(os.path.normpath(os.fspath(project_root)))
    base = re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-") or "project"
    return f"cmux-{base}"[:40]


def write_project_marker(data: DataRoot, project_root: Path | str) -> None:
    """state/project: how an agent with only CMUX_HOME finds its project."""
    from cmux.fsutil import atomic_write

    atomic_write(os.path.join(data.state_path, PROJECT_MARKER), f"{project_root}\n")


def _find_root(start: Path | str | None) -> str | None:
    here = os.path.realpath(start if start is not None else os.getcwd())
    while True:
        if os.path.isfile(os.path.join(here, CONFIG_NAME)):
            return here
        parent = os.path.dirname(here)
        if parent == here:
            return None
        here = parent


def find_project_root(start: Path | str | None = None) -> Path | None:
    """The nearest folder from ``start`` (the working directory) upwards
    that holds a cmux.toml."""
    from pathlib import Path

    root = _find_root(start)
    return None if root is None else Path(root)


def _parse_toml(path: str) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        try:
            import tomli as tomllib
        except ImportError:  # tools/ start Python with -S: site-packages come when needed
            from cmux.sitepath import ensure

            ensure()
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


def _read_toml(path: str, cache: str | None = None) -> dict[str, Any]:
    """cmux.toml as a dict, checked against cmux.settings_schema (ConfigError
    names the key, the value and what is allowed).

    With ``cache``, a file that passed is kept as JSON keyed by its stat and
    the schema's version, because parsing TOML (tomllib compiles its regexes
    at import) and importing the schema cost every agent's tools/ call and
    hook ~12 ms. Only a file that passed is ever cached."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return {}
    key = [st.st_mtime_ns, st.st_size, st.st_ino, SCHEMA_VERSION]
    if cache is not None:
        try:
            with open(cache, "rb") as fh:
                cached = fastjson.loads(fh.read())
            if cached.get("key") == key and isinstance(cached.get("raw"), dict):
                return dict(cached["raw"])
        except (OSError, ValueError, AttributeError):
            pass
    raw = _parse_toml(path)
    from cmux.settings_schema import validate

    validate(raw, path)
    if cache is not None:
        import json

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


def load_config(start: Path | str | None = None, *, agent: str | None = None) -> Config:
    """Find the project and read its settings.

    An agent has CMUX_HOME (absolute) and CMUX_PROJECT in its environment, so a
    worker in a worktree or another directory finds the same data root.
    """
    home = os.environ.get("CMUX_HOME")
    project: str | None
    if home and start is None:
        data_root = home
        env_project = os.environ.get("CMUX_PROJECT")
        marker = os.path.join(data_root, "state", PROJECT_MARKER)
        if env_project:
            project = env_project
        elif os.path.isfile(marker):
            with open(marker, encoding="utf-8") as fh:
                project = fh.read().strip()
        else:
            project = _find_root(None) or os.path.dirname(data_root.rstrip("/")) or "."
        raw = _read_toml(
            os.path.join(project, CONFIG_NAME),
            os.path.join(data_root, "state", "config-cache.json"),
        )
    else:
        project = _find_root(start)
        if project is None:
            where = os.path.realpath(start if start is not None else os.getcwd())
            raise NotInitialized(
                f"no {CONFIG_NAME} in {where} or any folder above it",
                "run `cmux init` in the project's git repository first",
            )
        raw = _read_toml(os.path.join(project, CONFIG_NAME))
        data_root = os.path.join(project, raw.get("cmux", {}).get("data_root", ".cmux"))
    return _build(project, data_root, raw, agent=agent)


def _build(project: str, data_root: str, raw: dict[str, Any], *, agent: str | None) -> Config:
    """Settings from a file that passed the schema, under the CMUX_* overrides."""
    cm = raw.get("cmux", {})
    cl = raw.get("claude", {})
    mail = raw.get("mail", {})
    profiles = {
        name: Profile(
            name=name,
            command=spec["command"],
            task=spec.get("task", "arg"),
            adapter=spec.get("adapter", capabilities.PROGRAM),
        )
        for name, spec in raw.get("profiles", {}).items()
    }
    return Config(
        project_root=os.path.realpath(project),
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
