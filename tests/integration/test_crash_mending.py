"""Crashes are mended: every daemon comes back from SIGKILL and SIGTERM, many
times; `cmux stop` signals only what cmux started; a dead pane's exit code is
never lost to a race between the pane-died hook and a reconcile.

Real tmux, real cmux processes, real signals.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest

from cmux import pidfile
from cmux.agents import deaths, registry
from cmux.tmux import Pane, Tmux
from tests.helpers import Project, wait_until

SLEEP = "sleep 600"
KILLS = 20
CHECKS = """
[health]
interval = 3600

[[health.checks]]
name = "ok"
command = "true"
"""


def run_dir(project: Project) -> Path:
    return project.data / "state" / "run"


def gone(pid: int) -> bool:
    return pidfile.start_time(pid) is None  # (a zombie counts as gone)


def pid_of(path: Path) -> int | None:
    """The pid a daemon's pid file names, if that process runs."""
    try:
        pid = int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return None if gone(pid) else pid


def successor(path: Path, old: int | None) -> int | None:
    """The pid in ``path`` if a process other than ``old`` wrote it and runs."""
    pid = pid_of(path)
    return pid if pid not in (None, old) else None


def wait_for_pid(path: Path, old: int | None = None, *, what: str) -> int:
    """Poll until a process (other than ``old``) that runs is named in ``path``."""
    pid = wait_until(partial(successor, path, old), timeout=15, what=what)
    assert pid is not None
    return pid


def screen(project: Project, pane: str) -> str:
    return project.tmux("capture-pane", "-p", "-J", "-t", pane)


def daemons_of(project: Project, what: str) -> list[int]:
    """Live processes running `cmux <what>` for this project (by their environment)."""
    mine = f"CMUX_HOME={project.data}".encode()
    out = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            env = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        ours = argv[1:4] == [b"-m", b"cmux", what.encode()] and mine in env
        if ours and not gone(int(proc.name)):
            out.append(int(proc.name))
    return out


# -- every daemon comes back ------------------------------------------------------


@pytest.mark.timeout(240)
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
@pytest.mark.parametrize("daemon", ["monitor", "router", "merger", "health"])
def test_each_daemon_comes_back_after_being_killed_again_and_again(
    project: Project, daemon: str, sig: signal.Signals
) -> None:
    with (project.root / "cmux.toml").open("a") as fh:
        fh.write(CHECKS)
    project.ok("start", "--command", SLEEP, "--no-attach")
    project.ok("spawn", "echo", "--command", "cat", "--task", "x")
    path = run_dir(project) / f"{daemon}.pid"
    pid = wait_for_pid(path, what=f"the {daemon}")
    for i in range(KILLS):
        os.kill(pid, sig)
        old = pid
        pid = wait_for_pid(path, old, what=f"a new {daemon} after kill {i + 1}")
        wait_until(partial(gone, old), what=f"the old {daemon} gone")
    # And the session still works: mail is delivered, one router and one
    # health monitor run (none left behind by a killed monitor).
    wait_until(lambda: pid_of(run_dir(project) / "router.pid"), what="a router")
    project.ok("send", "echo", f"after {KILLS} kills")
    pane = project.status()["echo"]["pane_id"]
    try:
        wait_until(lambda: f"after {KILLS} kills" in screen(project, pane), what="delivery")
    except AssertionError:
        print([e for e in project.events() if e.get("agent") == "echo"])
        raise
    wait_until(lambda: len(daemons_of(project, "router")) == 1, what="exactly one router")
    wait_until(lambda: len(daemons_of(project, "health")) == 1, what="exactly one health daemon")
    wait_until(lambda: len(daemons_of(project, "merger")) == 1, what="exactly one merger")


def keeper_pid(project: Project) -> int:
    pane = next(
        line.split()
        for line in project.tmux(
            "list-panes", "-a", "-F", "#{window_name} #{pane_pid}"
        ).splitlines()
        if line.startswith("monitor ")
    )
    return int(pane[1])


@pytest.mark.timeout(120)
def test_a_dead_monitor_pane_is_mended_by_the_next_command_without_the_hook(
    project: Project,
) -> None:
    project.ok("start", "--command", SLEEP, "--no-attach")
    project.tmux("set-hook", "-gu", "pane-died")  # as when tmux < 3.5 loses it
    path = run_dir(project) / "monitor.pid"
    for i in range(5):
        monitor = wait_for_pid(path, what="the monitor")
        keeper = keeper_pid(project)
        os.kill(keeper, signal.SIGKILL)
        os.kill(monitor, signal.SIGKILL)
        wait_until(
            lambda: (
                "monitor 1" in project.tmux("list-panes", "-a", "-F", "#{window_name} #{pane_dead}")
            ),
            what=f"the monitor pane dead ({i + 1})",
        )
        project.ok("status")
        wait_for_pid(path, monitor, what="a new monitor")


def test_a_stray_sigterm_to_the_keeper_stops_nothing(project: Project) -> None:
    project.ok("start", "--command", SLEEP, "--no-attach")
    path = run_dir(project) / "monitor.pid"
    monitor = wait_until(lambda: pid_of(path), what="the monitor")
    keeper = keeper_pid(project)
    os.kill(keeper, signal.SIGTERM)
    wait_until(
        lambda: any(e["event"] == "signal-ignored" for e in project.events()),
        what="the keeper's word that it ignored it",
    )
    assert pid_of(path) == monitor
    assert keeper_pid(project) == keeper and not gone(keeper)


# -- cmux stop signals only what cmux started ------------------------------------


def test_stop_never_signals_a_process_that_got_a_dead_daemons_pid(project: Project) -> None:
    project.ok("start", "--command", SLEEP, "--no-attach")
    stranger = subprocess.Popen(["sleep", "600"])
    try:
        wait_until(lambda: pidfile.start_time(stranger.pid), what="the stranger")
        # A router that crashed left its pid file; the kernel gave the pid to `sleep`.
        run_dir(project).joinpath("router.pid").write_text(f"{stranger.pid} 12345\n")
        run_dir(project).joinpath("old.pid").write_text(f"{stranger.pid}\n")  # no start time
        project.ok("stop")
        assert stranger.poll() is None, "cmux stop signalled a process it did not start"
        assert not list(run_dir(project).glob("*.pid"))
    finally:
        stranger.kill()
        stranger.wait()


def start_router(project: Project, *, detached: bool = False) -> subprocess.Popen[bytes]:
    """A router started by hand, outside tmux (``detached``: in its own session)."""
    env = {**project.env, "CMUX_HOME": str(project.data), "CMUX_PROJECT": str(project.root)}
    return subprocess.Popen(
        [sys.executable, "-m", "cmux", "router"],
        cwd=project.root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=detached,
    )


def test_stop_ends_a_detached_daemon_it_did_start(project: Project) -> None:
    router = start_router(project, detached=True)
    try:
        wait_until(lambda: pid_of(run_dir(project) / "router.pid") == router.pid)
        project.ok("stop")
        assert router.wait(timeout=5) is not None
    finally:
        router.kill()
        router.wait()


def test_a_daemon_removes_its_pid_file_when_it_ends(project: Project) -> None:
    path = run_dir(project) / "router.pid"
    router = start_router(project)
    wait_until(lambda: pid_of(path) == router.pid, what="the router's pid file")
    router.send_signal(signal.SIGTERM)
    router.wait(timeout=10)
    assert not path.exists()


# -- the exit code is never lost (the flake of test_an_exiting_agent_...) ----------


def close_terminal_then_exit(project: Project, name: str, code: int) -> tuple[str, Path]:
    """Make ``name``'s pane a real pane whose terminal is closed while its
    process still runs: tmux shows it dead without an exit status (the state
    between a pane's two deaths, and where a lost SIGCHLD leaves it for good).
    The process exits with ``code`` once the returned file exists."""
    go = project.root / f"go-{name}"
    pane = registry.get(project.config().data, name).pane_id
    assert pane
    # (It ignores SIGHUP: the kernel hangs up on it when tmux closes the terminal.)
    script = 'trap "" HUP; exec </dev/null >/dev/null 2>&1; '
    script += f"while [ ! -e {go} ]; do sleep 0.02; done; exit {code}"
    project.tmux("respawn-pane", "-k", "-t", pane, f"sh -c '{script}'")
    wait_until(
        lambda: (
            project.tmux(
                "display-message", "-p", "-t", pane, "#{pane_dead}:#{pane_dead_status}"
            ).strip()
            == "1:"
        ),
        what="the pane dead without a status",
    )
    return pane, go


class ThenExit(Tmux):
    """The real tmux; right after a reconcile has listed the panes, the
    process exits (the interleaving that lost the code)."""

    go: Path

    def list_panes(self) -> list[Pane]:
        panes = super().list_panes()
        self.go.touch()
        return panes


def test_a_code_that_arrives_just_after_reconcile_looked_is_kept(project: Project) -> None:
    project.ok("start", "--command", SLEEP, "--no-attach")
    project.ok("spawn", "quitter", "--command", SLEEP, "--task", "x")
    cfg = project.config()
    _, go = close_terminal_then_exit(project, "quitter", 7)
    tmux = ThenExit(cfg.socket_name)
    tmux.go = go
    deaths.reconcile(cfg, tmux)
    agent = registry.get(cfg.data, "quitter")
    assert (agent.state, agent.exit_code) == ("exited", 7)


def test_a_code_the_hook_recorded_is_not_undone_by_a_reconcile_that_read_earlier(
    project: Project,
) -> None:
    project.ok("start", "--command", SLEEP, "--no-attach")
    project.ok("spawn", "quitter", "--command", SLEEP, "--task", "x")
    cfg = project.config()
    pane, go = close_terminal_then_exit(project, "quitter", 7)
    stale = registry.get(cfg.data, "quitter")  # what a reconcile read: live
    go.touch()  # the process exits; tmux's pane-died hook records 7
    reg = project.data / "state" / "agents" / "quitter.json"
    wait_until(lambda: json.loads(reg.read_text())["exit_code"] == 7, what="the hook's code")
    project.tmux("kill-pane", "-t", pane)
    # ... and the reconcile acts on what it read: the pane is gone, no code.
    deaths._mark_exited(cfg, stale, None, "its pane is gone")
    assert registry.get(cfg.data, "quitter").exit_code == 7
