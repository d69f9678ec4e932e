"""What a host of ``[hosts]`` has: one ssh call per host, all hosts at once.

The call runs a small POSIX sh script there that prints one ``key<TAB>value``
line per fact (load, cores, the versions of tmux, git, python and cmux, where
each agent program is, whether the checkout folder is writable); ``parse``
turns those lines into a :class:`HostInfo` and ``decide`` (pure) says what is
wrong with it and what to do. A host that does not answer is a HostInfo with
``reachable`` False and the error's words and hint, never an exception.
"""

from __future__ import annotations

import os
import re
import shlex
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from cmux.agents import registry
from cmux.config import Config, Host, hosts
from cmux.errors import HostError
from cmux.ssh import Ssh

PROBE_TIMEOUT = 20.0  # seconds one host's probe may take in all
TMUX_MIN = (3, 2)
PYTHON_MIN = (3, 10)
VERSIONED = {"cmux", "git", "python", "tmux"}  # (a set: no argv for the gateway test)


@dataclass
class HostInfo:
    """One host as `cmux hosts` shows it."""

    name: str
    ssh: str
    dir: str
    reachable: bool = False
    error: str = ""
    hint: str = ""
    seconds: float = 0.0  # how long the probe took
    load: float | None = None
    cores: int | None = None
    versions: dict[str, str] = field(default_factory=dict)  # tmux, git, python, cmux
    programs: dict[str, str] = field(default_factory=dict)  # agent program -> its path there
    dir_ok: bool | None = None  # the checkout folder is (or can be made) writable
    agents: int = 0  # agents there this host's registry knows of (not gone)
    states: dict[str, str] = field(default_factory=dict)  # agent -> its state, as it says
    # agent -> its record's ``since`` and ``incarnation`` there (place.take_report)
    since: dict[str, float] = field(default_factory=dict)
    incarnations: dict[str, int] = field(default_factory=dict)
    limit: int | None = None  # [hosts.NAME] agents

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def programs_of(cfg: Config) -> list[str]:
    """The agent programs a host needs: each profile's executable (the
    built-in demo and shell run what cmux and the host already have)."""
    from cmux.agents import profiles
    from cmux.errors import CmuxError

    out: list[str] = []
    for name in sorted({cfg.agent, "claude", *cfg.profiles}):
        if name in ("demo", "shell"):
            continue
        try:
            prof = profiles.resolve(cfg, name)
            exe = shlex.split(prof.command)[0]
        except (CmuxError, ValueError, IndexError):
            continue
        if exe not in out:
            out.append(exe)
    return out


def script(host: Host, programs: list[str], project: str | None = None) -> str:
    """The probe: POSIX sh, one ``key<TAB>value`` line per fact; with
    ``project`` (the project's home there) also each agent's state there."""
    q = shlex.quote
    lines = [
        'fact() { printf \'%s\\t%s\\n\' "$1" "$2"; }',
        'first() { "$@" 2>&1 </dev/null | head -n 1; }',
        'fact load "$(cut -d " " -f 1 /proc/loadavg 2>/dev/null)"',
        'fact cores "$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN 2>/dev/null)"',
        'command -v tmux >/dev/null && fact tmux "$(first tmux -V)"',
        'command -v git >/dev/null && fact git "$(first git --version)"',
        'command -v python3 >/dev/null && fact python "$(first python3 --version)"',
        f'command -v {q(host.cmux)} >/dev/null && fact cmux "$(first {q(host.cmux)} --version)"',
        f'd={q(host.dir)}; while [ ! -e "$d" ]; do d=$(dirname "$d"); done',
        '[ -d "$d" ] && [ -w "$d" ] && fact dir yes || fact dir no',
    ]
    for exe in programs:
        lines.append(f'fact program:{q(exe)} "$(command -v {q(exe)})"')
    if project:
        # A record is JSON with one space of indent (cmux.fsutil.write_json).
        agents = q(os.path.join(project, ".cmux", "state", "agents"))
        lines += [
            # v KEY PATTERN: the value of a top-level key of the record "$f".
            r"""v() { sed -n "s/^ \"$1\": $2,\{0,1\}\$/\1/p" "$f"; }""",
            f'for f in {agents}/*.json; do [ -f "$f" ] || continue; n=$(basename "$f" .json)',
            r"""  fact "agent:$n" "$(v state '"\([a-z-]*\)"')" """,
            r"""  fact "since:$n" "$(v since '\([0-9.eE+-]*\)')" """,
            r"""  fact "incarnation:$n" "$(v incarnation '\([0-9]*\)')" """,
            "done",
        ]
    return "\n".join(lines) + "\n"


def parse(info: HostInfo, text: str) -> HostInfo:
    """Fill ``info`` from the probe's output."""
    for line in text.splitlines():
        key, _, value = line.partition("\t")
        value = value.strip()
        if key == "load":
            try:
                info.load = float(value)
            except ValueError:
                pass
        elif key == "cores":
            info.cores = int(value) if value.isdigit() else None
        elif key in VERSIONED and value:
            info.versions[key] = value
        elif key == "dir":
            info.dir_ok = value == "yes"
        elif key.startswith("program:"):
            info.programs[key.partition(":")[2]] = value
        elif key.startswith("agent:") and value:
            info.states[key.partition(":")[2]] = value
        elif key.startswith("since:") and value:
            try:
                info.since[key.partition(":")[2]] = float(value)
            except ValueError:
                pass
        elif key.startswith("incarnation:") and value.isdigit():
            info.incarnations[key.partition(":")[2]] = int(value)
    return info


def _known_agents(cfg: Config) -> dict[str, int]:
    counts: dict[str, int] = {}
    for a in registry.list_agents(cfg.data):
        if a.host and a.state not in registry.GONE:
            counts[a.host] = counts.get(a.host, 0) + 1
    return counts


def _project_there(cfg: Config, host: Host) -> str | None:
    """The project's home on ``host`` (cmux/remote/there.py), when cmux knows
    the trunk's URL it is named after."""
    from cmux.errors import CmuxError
    from cmux.remote.there import project_dir

    try:
        from cmux.remote.place import trunk_url

        return project_dir(host.dir, trunk_url(cfg))
    except CmuxError:
        return None


def probe(cfg: Config, host: Host, *, timeout: float = PROBE_TIMEOUT) -> HostInfo:
    """One host, by one ssh call."""
    info = HostInfo(name=host.name, ssh=host.ssh, dir=host.dir, limit=host.agents)
    ssh = Ssh(host, cfg.data, connect_timeout=min(timeout, 5.0))
    text = script(host, programs_of(cfg), _project_there(cfg, host))
    t0 = time.monotonic()
    try:
        result = ssh.run("sh -s", input=text.encode(), timeout=timeout)
    except HostError as exc:
        info.error, info.hint = exc.message, exc.hint or ""
    else:
        info.reachable = True
        parse(info, result.out)
    info.seconds = round(time.monotonic() - t0, 3)
    return info


def probe_all(
    cfg: Config, *, only: list[str] | None = None, timeout: float = PROBE_TIMEOUT
) -> list[HostInfo]:
    """Every host of ``[hosts]`` (or those named in ``only``), probed at once."""
    targets = [h for n, h in sorted(hosts(cfg).items()) if only is None or n in only]
    if not targets:
        return []
    with ThreadPoolExecutor(max_workers=min(16, len(targets))) as pool:
        infos = list(pool.map(lambda h: probe(cfg, h, timeout=timeout), targets))
    counts = _known_agents(cfg)
    for info in infos:
        info.agents = counts.get(info.name, 0)
    return infos


def _version(text: str) -> tuple[int, int] | None:
    m = re.search(r"(\d+)\.(\d+)", text)
    return (int(m.group(1)), int(m.group(2))) if m else None


@dataclass(frozen=True)
class Finding:
    """One thing checked on a host: ok | warn | fail, and what to do."""

    what: str
    status: str
    detail: str
    fix: str = ""


def decide(info: HostInfo, *, local_cmux: str = "") -> list[Finding]:
    """What is right and wrong with a probed host (pure)."""
    dest = info.ssh
    if not info.reachable:
        return [Finding("ssh", "fail", info.error, info.hint)]
    out = [Finding("ssh", "ok", f"{dest} answered in {info.seconds:.2f} s")]
    apt = f"on {info.name}: sudo apt-get install"
    tmux = info.versions.get("tmux", "")
    tv = _version(tmux)
    if not tmux:
        out.append(Finding("tmux", "fail", "not found", f"{apt} tmux"))
    elif tv is None or tv < TMUX_MIN:
        out.append(Finding("tmux", "fail", f"{tmux} is too old", "cmux needs tmux >= 3.2"))
    else:
        out.append(Finding("tmux", "ok", tmux))
    git = info.versions.get("git", "")
    if git:
        out.append(Finding("git", "ok", git))
    else:
        out.append(Finding("git", "fail", "not found", f"{apt} git"))
    py = info.versions.get("python", "")
    pv = _version(py)
    if not py:
        out.append(Finding("python", "fail", "python3 not found", f"{apt} python3"))
    elif pv is None or pv < PYTHON_MIN:
        out.append(Finding("python", "fail", f"{py} is too old", "cmux needs Python >= 3.10"))
    else:
        out.append(Finding("python", "ok", py))
    cm = info.versions.get("cmux", "")
    if not cm:
        out.append(
            Finding(
                "cmux",
                "fail",
                "not found on the PATH of a non-interactive ssh",
                f"install cmux on {info.name} (`pipx install cmux`), or give its path "
                f'as [hosts.{info.name}] cmux = "/path/to/cmux"',
            )
        )
    elif local_cmux and _version(cm) != _version(local_cmux):
        out.append(
            Finding("cmux", "warn", f"{cm}; here: {local_cmux}", "install the same version on both")
        )
    else:
        out.append(Finding("cmux", "ok", cm))
    if info.dir_ok is False:
        out.append(
            Finding(
                "dir",
                "fail",
                f"{info.dir} cannot be written",
                f"on {info.name}: mkdir -p {info.dir}, owned by the ssh user",
            )
        )
    for exe, path in sorted(info.programs.items()):
        if path:
            out.append(Finding(f"agent {exe}", "ok", path))
        else:
            out.append(
                Finding(
                    f"agent {exe}",
                    "warn",
                    f"{exe} not found on {info.name}",
                    f"install it there to run those agents on {info.name}",
                )
            )
    return out
