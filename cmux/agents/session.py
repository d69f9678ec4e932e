"""Start and stop the project's session: the monitor window and the supervisor.

One tmux session on the project's private server (``tmux -L``), never the
person's own. A start is serialised by a lock and refuses a second session;
a stop touches only this project's server and keeps all state on disk.

After the server died under a session, ``start`` brings back every agent
that was live on it (cmux/agents/resume.py says which and how); after a clean
``stop`` only ``start --resume`` does; ``--fresh`` never does.
"""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass, field

from cmux import events, pidfile
from cmux.agents import profiles, registry, resume
from cmux.agents.deaths import reconcile
from cmux.agents.registry import Agent
from cmux.agents.server import MONITOR, base_env, cmux_argv, monitor_argv
from cmux.agents.spawn import respawn, save_log, spawn
from cmux.config import Config, write_project_marker
from cmux.errors import AlreadyRunning, CmuxError
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
    # Agents brought back, with how each came (resume.How).
    resumed: dict[str, str] = field(default_factory=dict)
    # Agents that could have been brought back but were not (no --resume after
    # a clean stop, or --fresh), and those whose bringing back failed (why).
    not_resumed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    # Agents on other hosts whose records took what their hosts say now
    # (cmux/remote/halt.py reconcile): name -> state.
    remote: dict[str, str] = field(default_factory=dict)


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


def start(
    cfg: Config,
    *,
    profile: str | None = None,
    command: str | None = None,
    mode: resume.Mode = "auto",
) -> StartResult:
    """Create the session: a monitor window and the supervisor's window.

    A second start while the session runs raises AlreadyRunning and creates
    nothing; concurrent starts are serialised by a lock. The registry is
    reconciled first: agents of a tmux server that has ended are marked
    exited, so a start after a crash just works; agents on other hosts take
    the states their hosts report (``remote``). Then, when
    ``resume.should_resume(mode, ...)`` (by default: the last session's
    server died under it), every agent that was live when the last session
    ended comes back in its own window (``spawn.respawn``), the supervisor
    first; one that cannot come back is reported in ``failed`` and the rest
    still come. A supervisor that cannot come back is started anew.
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
        far = _look_at_hosts(cfg)
        last = resume.load(cfg.data)
        left = [a.name for a in reconcile(cfg, tmux) if a.state == "exited"]
        back = resume.candidates(registry.list_agents(cfg.data), last)
        bring_back = resume.should_resume(mode, last) and bool(back)
        why = "the tmux server ended" if last and last.stopped is None else "`cmux stop`"
        if bring_back:
            _reserve(cfg, back, why)
        try:
            monitor = tmux.new_session(
                cfg.session_name,
                MONITOR,
                monitor_argv(),
                cwd=str(cfg.project_root),
                env=base_env(cfg),
                then=session_options(cfg),
            )
        except BaseException:
            if bring_back:
                _unreserve(cfg, back, "the session could not be created")
            raise
        events.record(
            cfg.data,
            "session-start",
            session=cfg.session_name,
            socket=cfg.socket_name,
            server=monitor.server,
            resume=bring_back or None,
        )
        resume.started(cfg.data, monitor.server)
        result = StartResult(
            session=cfg.session_name,
            socket=cfg.socket_name,
            monitor_pane=monitor.pane_id,
            supervisor_pane="",
            seconds=0.0,
            left_by_dead_server=left,
            remote=far,
        )
        if not bring_back:
            result.not_resumed = [a.name for a in back]
            back = []
        try:
            sup: Agent | None = None
            old_sup = next((a for a in back if a.name == SUPERVISOR), None)
            if old_sup is not None:
                sup = _bring_back(cfg, tmux, old_sup, f"{why} (cmux start)", result)
            if sup is None:
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
        for agent in back:
            if agent.name != SUPERVISOR:
                _bring_back(cfg, tmux, agent, f"{why} (cmux start)", result)
    assert sup is not None and sup.pane_id
    result.supervisor_pane = sup.pane_id
    result.seconds = time.monotonic() - t0
    return result


def _look_at_hosts(cfg: Config) -> dict[str, str]:
    """The records of agents on other hosts left from the last session take
    what their hosts say now (gone there: not shown live here; a host that
    does not answer: unreachable). Never raises: a start does not wait on
    another host's troubles beyond the probe's deadline."""
    from cmux.remote import halt

    try:
        return {a.name: a.state for a in halt.reconcile(cfg)}
    except CmuxError:
        return {}


def ensure_host_session(cfg: Config) -> Tmux:
    """The session of a host that runs workers for a project whose trunk is
    elsewhere (cmux/remote/there.py): the monitor window only (its router,
    its watchdogs), no supervisor (it lives on the trunk's host). Started if
    none runs, under the start lock; the running one is returned as it is."""
    cfg.data.ensure()
    write_project_marker(cfg.data, cfg.project_root)
    tmux = Tmux.for_config(cfg)
    with locked(cfg.data.run_dir / "start.lock"):
        if tmux.has_session(cfg.session_name):
            return tmux
        reconcile(cfg, tmux)
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
            host_session=True,
        )
        resume.started(cfg.data, monitor.server)
    return tmux


def _reserve(cfg: Config, agents: list[Agent], why: str) -> None:
    """Mark the agents about to come back starting, without a pane, before the
    monitor runs: its watchdog must not report them dead (nor restart the
    supervisor twice) and the router holds their mail until they are back.
    Their records as they were are what ``respawn`` is given."""
    for a in agents:
        registry.transition(
            cfg.data,
            a.name,
            "starting",
            reason=f"being brought back ({why})",
            strict=False,
            only_from=registry.GONE,
            pane_id=None,
            server=None,
        )


def _unreserve(cfg: Config, agents: list[Agent], why: str) -> None:
    for a in agents:
        current = registry.get(cfg.data, a.name)
        if current.state == "starting" and not current.pane_id:
            registry.transition(
                cfg.data,
                a.name,
                a.state,
                reason=f"not brought back: {why}",
                strict=False,
                pane_id=a.pane_id,
                server=a.server,
            )


def _bring_back(
    cfg: Config, tmux: Tmux, old: Agent, reason: str, result: StartResult
) -> Agent | None:
    """One agent back in its window; a failure is recorded, never raised."""
    try:
        agent = respawn(cfg, old.name, reason=reason, tmux=tmux, old=old)
    except CmuxError as exc:
        result.failed[old.name] = exc.message
        events.record(cfg.data, "respawn-failed", old.name, reason=reason, error=exc.message)
        _unreserve(cfg, [old], exc.message)
        return None
    result.resumed[old.name] = agent.resume
    return agent


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
    last = resume.load(cfg.data)
    ended: list[Agent] = []
    for agent in registry.list_agents(cfg.data):
        if agent.host:
            continue  # on another host's server: `cmux kill NAME` ends it there
        if agent.state != "killed" and registry.on_server(agent, server):
            save_log(cfg, tmux, agent)
        if agent.live:
            ended.append(
                registry.transition(
                    cfg.data, agent.name, "killed", reason="cmux stop", strict=False
                )
            )
            result.ended.append(agent.name)
        elif (
            last is not None
            and last.stopped is None
            and resume.died_with_server(agent, last.server)
        ):
            ended.append(agent)  # the server died earlier and took it: it was live too
    if result.was_running:
        tmux.kill_server()
    if ended or last is None or last.stopped is None:
        # What `cmux start --resume` brings back (a second stop keeps the list).
        resume.stopped(cfg.data, ended)
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
