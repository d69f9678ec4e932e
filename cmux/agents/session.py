"""Start and stop the project's session: the monitor window and the supervisor.

One tmux session on the project's private server (``tmux -L``), never the
person's own. A start is serialised by a lock and refuses a second session;
a stop touches only this project's server and keeps all state on disk.
"""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass, field

from cmux import events, pidfile
from cmux.agents import profiles, registry
from cmux.agents.deaths import reconcile
from cmux.agents.server import MONITOR, base_env, cmux_argv, monitor_argv
from cmux.agents.spawn import save_log, spawn
from cmux.config import Config, write_project_marker
from cmux.errors import AlreadyRunning
from cmux.fsutil import locked
from cmux.paths import SUPERVISOR
from cmux.tmux import Tmux, format_literal


def session_options(cfg: Config) -> list[tuple[str, ...]]:
    """Server-wide settings of our private server, set with the session.

    Panes stay when their process exits (so the exit code can be read), and
    tmux tells cmux at once through the pane-died hook. Both the status line
    and run-shell expand formats: every path and name in them is a
    format_literal, so a project in ``proj-#(cmd)`` runs nothing.
    """
    env_prefix = " ".join(f"{k}={shlex.quote(v)}" for k, v in base_env(cfg).items())
    run = format_literal(f"{env_prefix} {shlex.join(cmux_argv('_pane-died'))}")
    # The server's identity goes with the pane id: pane ids restart on a new server.
    hook = f"{run} '#{{pane_id}}' '#{{pane_dead_status}}' '#{{pid}}:#{{start_time}}'"
    return [
        ("set-option", "-wg", "remain-on-exit", "on"),
        ("set-option", "-g", "history-limit", "50000"),
        ("set-option", "-g", "status-right", f"cmux · {format_literal(cfg.project_root.name)}"),
        ("set-hook", "-g", "pane-died", f"run-shell -b {shlex.quote(hook)}"),
    ]


@dataclass
class StartResult:
    session: str
    socket: str
    monitor_pane: str
    supervisor_pane: str
    seconds: float
    # Agents a dead tmux server had left marked live, now marked exited.
    left_by_dead_server: list[str] = field(default_factory=list)


def _record_trunk(cfg: Config) -> None:
    """Remember the branch checked out now as the one the merge queue lands on
    (kept from an earlier start when HEAD is detached or there is no git)."""
    from cmux import git
    from cmux.errors import GitError
    from cmux.fsutil import atomic_write

    try:
        branch = git.Repo(cfg.project_root).current_branch()
    except GitError:
        return
    if branch:
        atomic_write(cfg.data.trunk_file, branch + "\n")


def start(cfg: Config, *, profile: str | None = None, command: str | None = None) -> StartResult:
    """Create the session: a monitor window and the supervisor's window.

    A second start while the session runs raises AlreadyRunning and creates
    nothing; concurrent starts are serialised by a lock. The registry is
    reconciled first: agents of a tmux server that has ended are marked
    exited, so a start after a crash just works.
    """
    t0 = time.monotonic()
    cfg.data.ensure()
    write_project_marker(cfg.data, cfg.project_root)
    _record_trunk(cfg)
    prof = None if command else profiles.resolve(cfg, profile)
    if prof is not None:
        profiles.require_binary(prof)
    tmux = Tmux.for_config(cfg)
    with locked(cfg.data.run_dir / "start.lock"):
        if tmux.has_session(cfg.session_name):
            raise AlreadyRunning(
                f"cmux is already running for {cfg.project_root} (session {cfg.session_name})",
                "attach with `cmux attach`, or end it with `cmux stop` first",
            )
        left = [a.name for a in reconcile(cfg, tmux) if a.state == "exited"]
        # (Resuming what `left` names, rather than starting afresh, goes here.)
        monitor = tmux.new_session(
            cfg.session_name,
            MONITOR,
            monitor_argv(),
            cwd=str(cfg.project_root),
            env=base_env(cfg),
            then=session_options(cfg),
        )
        events.record(
            cfg.data,
            "session-start",
            session=cfg.session_name,
            socket=cfg.socket_name,
            server=monitor.server,
        )
        try:
            sup = spawn(
                cfg,
                SUPERVISOR,
                task="",
                profile=profile,
                command=command,
                role="supervisor",
                tmux=tmux,
                _profile=prof,
            )
        except BaseException:
            tmux.kill_server()
            raise
    assert sup.pane_id
    return StartResult(
        session=cfg.session_name,
        socket=cfg.socket_name,
        monitor_pane=monitor.pane_id,
        supervisor_pane=sup.pane_id,
        seconds=time.monotonic() - t0,
        left_by_dead_server=left,
    )


@dataclass
class StopResult:
    ended: list[str] = field(default_factory=list)
    was_running: bool = True


def stop(cfg: Config) -> StopResult:
    """End the session cmux created, its daemons and agents; keep state on disk.

    Only this project's private tmux server is touched.
    """
    tmux = Tmux.for_config(cfg)
    result = StopResult(was_running=tmux.has_session(cfg.session_name))
    server = tmux.server_id() if result.was_running else None
    for agent in registry.list_agents(cfg.data):
        if agent.state != "killed" and registry.on_server(agent, server):
            save_log(cfg, tmux, agent)
        if agent.live:
            registry.transition(cfg.data, agent.name, "killed", reason="cmux stop", strict=False)
            result.ended.append(agent.name)
    if result.was_running:
        tmux.kill_server()
    _stop_daemons(cfg)
    events.record(cfg.data, "session-stop", session=cfg.session_name)
    return result


def _stop_daemons(cfg: Config) -> None:
    """Daemons die with their pane; pid files catch one that was detached.

    Only a process that is verifiably the one that wrote the file is
    signalled (its pid and start time, see cmux/pidfile.py): a pid file left
    by a crashed daemon whose pid another program now has is just removed.
    """
    for path in sorted(cfg.data.run_dir.glob("*.pid")):
        pidfile.stop(path)
