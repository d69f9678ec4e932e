"""`cmux doctor`: what is missing or broken, and what to do about each."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cmux.errors import CmuxError

if TYPE_CHECKING:
    from cmux.config import Config


@dataclass
class Check:
    name: str
    status: str  # ok | warn | fail
    detail: str
    fix: str = ""


def _version(argv: list[str]) -> str | None:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (proc.stdout or proc.stderr).strip() if proc.returncode == 0 else None


def check_tmux() -> Check:
    from cmux.tmux import version

    v = version()
    if v is None:
        return Check(
            "tmux", "fail", "not found", "install tmux >= 3.2: `sudo apt-get install tmux`"
        )
    m = re.search(r"(\d+)\.(\d+)", v)
    if not m or (int(m.group(1)), int(m.group(2))) < (3, 2):
        return Check("tmux", "fail", f"{v} is too old", "cmux needs tmux >= 3.2")
    return Check("tmux", "ok", v)


def check_git() -> Check:
    from cmux import git

    v = git.version()
    if v is None:
        return Check("git", "fail", "not found", "install git: `sudo apt-get install git`")
    return Check("git", "ok", v)


def configured_programs(cfg: Config) -> list[str]:
    """The agent programs cmux.toml uses: the default agent, Claude Code,
    every [profiles.X] entry, and each built-in program it has a section for
    ([codex], [gemini])."""
    from cmux.agents.adapters import base as adapters

    names = {cfg.agent, "claude", *cfg.profiles}
    names |= {n for n in adapters.names() if n in adapters.PROGRAMS and cfg.section(n)}
    return sorted(names)


def parse_version(text: str | None) -> tuple[int, ...] | None:
    """The first dotted version number in ``text`` ("2.1.197 (Claude Code)")."""
    m = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", text or "")
    return tuple(int(g) for g in m.groups() if g is not None) if m else None


def judge_program(
    path: str, text: str | None, hooks_since: str, tested: str
) -> tuple[str, str, str]:
    """(status, detail, fix) for an agent program found at ``path`` that
    printed ``text`` as its version: fail when older than the first version
    with the hooks cmux relies on (its states would be guesses), warn when it
    printed no version or is older than the tested one, else ok."""
    have = parse_version(text)
    where = f"{path} ({text.splitlines()[0][:60]})" if text else path
    if not (hooks_since or tested):
        return "ok", where, ""
    if have is None:
        return "warn", f"{path}: printed no version", f"cmux is tested with {tested or hooks_since}"
    need = parse_version(hooks_since)
    if need and have < need:
        return (
            "fail",
            f"{where}: too old for cmux's hooks (needs >= {hooks_since})",
            f"upgrade to {tested or hooks_since} or newer",
        )
    want = parse_version(tested)
    if want and have < want:
        return "warn", f"{where}: older than the tested {tested}", f"upgrade to {tested}"
    return "ok", where, ""


def run_checks() -> list[Check]:
    from cmux.agents import profiles
    from cmux.agents.adapters import base as adapters
    from cmux.config import load_config

    checks = [check_tmux(), check_git()]
    try:
        cfg = load_config()
    except CmuxError as exc:
        checks.append(Check("project", "fail", exc.message, exc.hint or ""))
        return checks
    checks.append(Check("project", "ok", f"{cfg.project_root} (cmux.toml)"))
    root = cfg.data.root
    if not root.is_dir():
        checks.append(Check("data root", "fail", f"{root} is missing", "run `cmux init`"))
    elif not os.access(root, os.W_OK):
        checks.append(
            Check("data root", "fail", f"{root} is not writable", f"fix: chmod u+w {root}")
        )
    else:
        usage = shutil.disk_usage(root)
        free_mb = usage.free // (1024 * 1024)
        status = "ok" if free_mb > 100 else "warn"
        checks.append(
            Check(
                "data root",
                status,
                f"{root} ({free_mb} MB free)",
                "free disk space" if status != "ok" else "",
            )
        )
    for name in configured_programs(cfg):
        try:
            prof = profiles.resolve(cfg, name)
        except CmuxError as exc:
            checks.append(Check(f"agent {name}", "fail", exc.message, exc.hint or ""))
            continue
        adapter = adapters.for_profile(prof)
        exe = shlex.split(prof.command)[0] if prof.command else ""
        found = shutil.which(exe)
        wanted = name == cfg.agent
        if not found:
            fix = adapter.install_hint(prof, exe)
            checks.append(
                Check(
                    f"agent {name}", "fail" if wanted else "warn", f"{exe} not found on PATH", fix
                )
            )
            continue
        text = None
        if adapter.hooks_since or adapter.tested_version:
            text = _version([*shlex.split(prof.command), *adapter.version_args])
        status, detail, fix = judge_program(
            found, text, adapter.hooks_since, adapter.tested_version
        )
        if status == "fail":
            fix = f"{fix}: {adapter.install_hint(prof, exe)}"
        checks.append(Check(f"agent {name}", status, detail, fix))
    checks += check_hosts(cfg)
    from cmux.tmux import Tmux

    tmux = Tmux.for_config(cfg)
    running = tmux.has_session(cfg.session_name)
    checks.append(
        Check(
            "session",
            "ok",
            f"{cfg.session_name} is running" if running else "not running (`cmux start`)",
        )
    )
    if running:
        pid_file = cfg.data.run_dir / "router.pid"
        alive = False
        try:
            os.kill(int(pid_file.read_text().split()[0]), 0)
            alive = True
        except (OSError, ValueError, IndexError):
            pass
        checks.append(
            Check(
                "router",
                "ok" if alive else "fail",
                "running" if alive else "not running: mail is not being delivered",
                "the monitor restarts it within seconds; if not, `cmux stop` then `cmux start`",
            )
        )
    return checks


def check_hosts(cfg: Config) -> list[Check]:
    """Each host of ``[hosts]``, probed over one ssh call: ssh, tmux, git,
    python, cmux, the agent programs (cmux/remote/probe.py says what is wrong)."""
    from cmux import __version__
    from cmux.remote import probe

    out = []
    for info in probe.probe_all(cfg):
        for f in probe.decide(info, local_cmux=__version__):
            out.append(Check(f"host {info.name}: {f.what}", f.status, f.detail, f.fix))
    return out
