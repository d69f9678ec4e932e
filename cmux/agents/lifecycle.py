"""Start and stop the session; spawn, kill and notice the death of agents.

Everything here goes through the registry (state changes, events) and the
tmux gateway. The CLI and tools/workers call these functions; they print
nothing themselves.
"""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from cmux import events, pidfile
from cmux.agents import profiles, registry
from cmux.agents.registry import LIVE, Agent
from cmux.config import Config, write_project_marker
from cmux.errors import (
    AgentError,
    AlreadyRunning,
    DuplicateAgent,
    GitError,
    NotAGitRepo,
    NotRunning,
    TmuxError,
    UsageError,
)
from cmux.fsutil import atomic_write, locked
from cmux.mail import store
from cmux.paths import SUPERVISOR
from cmux.text import sanitize
from cmux.tmux import Pane, Tmux, format_literal
from cmux.umask import user_umask

log = logging.getLogger(__name__)

MONITOR = "monitor"
DEAD_GRACE = 2.0  # seconds to wait for the exit status of a pane that just died
SERVER_ENDED = "the tmux server ended"


def tmux_for(cfg: Config) -> Tmux:
    return Tmux(cfg.socket_name, binary=os.environ.get("CMUX_TMUX_BIN", "tmux"))


def cmux_argv(*args: str) -> list[str]:
    """How to run cmux itself from inside tmux (same interpreter, no PATH guess)."""
    return [sys.executable, "-m", "cmux", *args]


def monitor_argv(delay: float = 0.0) -> list[str]:
    """The monitor pane's command: the keeper, which runs the monitor and
    starts it again whenever it dies (see cmux/keeper.py)."""
    keeper = [sys.executable, "-m", "cmux.keeper"]
    if delay:
        keeper += ["--delay", f"{delay:g}"]
    return [*keeper, "--", *cmux_argv("monitor")]


def base_env(cfg: Config) -> dict[str, str]:
    return {
        "CMUX_HOME": str(cfg.data.root),
        "CMUX_PROJECT": str(cfg.project_root),
        "CMUX_SESSION": cfg.session_name,
        "CMUX_TMUX_SOCKET": cfg.socket_name,
    }


def is_running(cfg: Config, tmux: Tmux | None = None) -> bool:
    return (tmux or tmux_for(cfg)).has_session(cfg.session_name)


def require_running(cfg: Config, tmux: Tmux | None = None) -> Tmux:
    tmux = tmux or tmux_for(cfg)
    if not tmux.has_session(cfg.session_name):
        raise NotRunning(
            f"cmux is not running for {cfg.project_root}", "start it with `cmux start`"
        )
    return tmux


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


# -- start / stop ----------------------------------------------------------------


@dataclass
class StartResult:
    session: str
    socket: str
    monitor_pane: str
    supervisor_pane: str
    seconds: float
    # Agents a dead tmux server had left marked live, now marked exited.
    left_by_dead_server: list[str] = field(default_factory=list)


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
    prof = None if command else profiles.resolve(cfg, profile)
    if prof is not None:
        profiles.require_binary(prof)
    tmux = tmux_for(cfg)
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
    tmux = tmux_for(cfg)
    result = StopResult(was_running=tmux.has_session(cfg.session_name))
    server = tmux.server_id() if result.was_running else None
    for agent in registry.list_agents(cfg.data):
        if agent.state != "killed" and registry.on_server(agent, server):
            _save_log(cfg, tmux, agent)
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


# -- spawn / kill -----------------------------------------------------------------


def read_task(task: str | None, task_file: str | Path | None) -> str:
    """The task text from --task TEXT or --task-file FILE ('-' is stdin)."""
    if task is not None and task_file is not None:
        raise UsageError("give either --task or --task-file, not both")
    from cmux.inputs import file_text, stdin_text, text_or_stdin

    if task_file is not None:
        if str(task_file) == "-":
            return stdin_text("the task (--task-file -)")
        return file_text(task_file, "--task-file")
    if task is None:
        raise UsageError("a worker needs a task", "give it with --task TEXT or --task-file FILE")
    return text_or_stdin(task, "the task")


def write_context(cfg: Config, name: str, role: str, task: str, parent: str | None) -> Path:
    path = cfg.data.context_file(name)
    report = (
        "## How to report\n\n"
        f'- `mailbox done "what you did and how you checked it"` tells {parent or "the supervisor"}'
        " you are finished (run the tests first).\n"
        '- `mailbox blocked "what you need"` when you cannot go on.\n'
        '- `mailbox send NAME "text"` for anyone else; `mailbox read` shows your mail.\n'
        '- `journal add "title" --body "..."` records what you learned.\n'
    )
    text = (
        f"# {name}: {role} in cmux session {cfg.session_name}\n\n"
        f"{profiles.role_prompt(role).strip()}\n\n"
        f"## Your task\n\n{task.strip() or '(none yet: wait for a message)'}\n\n"
        f"{report}\n"
        f"Project: {cfg.project_root}\nData root (CMUX_HOME): {cfg.data.root}\n"
    )
    if role == "supervisor":
        from cmux.journal.context import start_context

        text += "\n" + start_context(cfg.data)
    atomic_write(path, sanitize(text))  # the task is anyone's text; this file is printed
    return path


def spawn(
    cfg: Config,
    name: str,
    *,
    task: str,
    profile: str | None = None,
    command: str | None = None,
    cwd: str | None = None,
    worktree: bool = False,
    role: str = "worker",
    parent: str | None = SUPERVISOR,
    tmux: Tmux | None = None,
    _profile: profiles.Profile | None = None,
) -> Agent:
    """Start an agent in a new window of the running session."""
    registry.validate_name(name, allow_supervisor=(role == "supervisor"))
    if profile and command:
        raise UsageError("give either --agent or --command, not both")
    prof = _profile if (_profile or command) else profiles.resolve(cfg, profile)
    if prof is not None:
        profiles.require_binary(prof)
    tmux = require_running(cfg, tmux)
    reconcile(cfg, tmux)  # records of a dead server must not block the name
    if role == "worker" and not task.strip():
        raise UsageError("a worker needs a task", "give it with --task TEXT or --task-file FILE")
    with locked(cfg.data.run_dir / f"spawn-{name}.lock", blocking=False) as got:
        if not got:
            raise DuplicateAgent(f"agent {name!r} is being spawned right now")
        if registry.exists(cfg.data, name):
            old = registry.get(cfg.data, name)
            if old.live:
                raise DuplicateAgent(
                    f"an agent named {name!r} already exists ({old.state})",
                    f"choose another name, or end it with `cmux kill {name}`",
                )
        workdir = Path(cwd).resolve() if cwd else cfg.project_root
        if cwd and not workdir.is_dir():
            raise UsageError(f"--dir {cwd}: no such directory")
        branch = wt_path = None
        if worktree:
            wt_path, branch = _add_worktree(cfg, name)
            workdir = wt_path
        cfg.data.ensure()
        write_context(cfg, name, role, task, parent)
        launch = profiles.build_launch(
            cfg, name=name, role=role, profile=prof, task=task, command=command
        )
        agent = Agent(
            name=name,
            role=role,
            profile=prof.name if prof else "command",
            state="starting",
            cwd=str(workdir),
            task=task,
            parent=parent if role == "worker" else None,
            worktree=str(wt_path) if wt_path else None,
            branch=branch,
            session_id=launch.session_id,
            command=launch.argv,
            incarnation=(registry.get(cfg.data, name).incarnation + 1)
            if registry.exists(cfg.data, name)
            else 1,
        )
        registry.save(cfg.data, agent, event=None)
        store.ensure(cfg.data, name)  # after the registry: a mailbox means a known agent
        try:
            pane = tmux.new_window(
                cfg.session_name, name, launch.wrapped(), cwd=str(workdir), env=launch.env
            )
        except TmuxError:
            registry.remove(cfg.data, name)
            raise
        # Agents that report their own state (claude via hooks, demo) start in
        # `starting`; anything else is ready for input as soon as it runs.
        first: registry.State = "starting" if agent.profile in ("claude", "demo") else "idle"
        agent.pane_id, agent.server = pane
        agent.state = first
        registry.save(
            cfg.data,
            agent,
            event="spawn",
            pane=pane.pane_id,
            server=pane.server,
            profile=agent.profile,
            task=task[:200] or None,
        )
        if launch.type_task:
            _queue_typed_task(cfg, name, launch.type_task)
    _journal(cfg, name, f"spawned {role} {name}", task or "(no task)", ["spawn"])
    return agent


def _queue_typed_task(cfg: Config, name: str, task: str) -> None:
    try:
        store.send(cfg, to=name, body=task, sender="cmux", kind="task")
    except Exception:  # the mailbox is an optional door for typed tasks
        log.exception("could not queue the task for %s", name)


def _journal(cfg: Config, agent: str, title: str, body: str, tags: list[str]) -> None:
    from cmux.journal import note

    note(cfg.data, agent="cmux", title=title, body=body, tags=[*tags, agent])


@dataclass
class KillResult:
    name: str
    kept_branch: str | None = None
    kept_worktree: str | None = None
    removed_worktree: str | None = None
    reason: str = ""


def kill(cfg: Config, name: str, *, force: bool = False, reason: str = "killed") -> KillResult:
    """End one agent. The supervisor only with force. Unmerged work is kept."""
    agent = registry.get(cfg.data, name)
    if agent.role == "supervisor" and not force:
        raise UsageError(
            "the supervisor is not killed without --force",
            f"`cmux kill {name} --force` if you mean it; `cmux stop` ends everything",
        )
    _close_window(cfg, tmux_for(cfg), agent)
    if agent.state != "killed":
        registry.transition(cfg.data, name, "killed", reason=reason, strict=False)
    result = KillResult(name=name)
    if agent.worktree:
        _retire_worktree(cfg, agent, result)
    _journal(cfg, name, f"killed {name}", _kill_body(agent, result), ["kill"])
    return result


def _kill_body(agent: Agent, result: KillResult) -> str:
    lines = [f"Task: {agent.task_summary or '(none)'}", f"State before: {agent.state}"]
    if result.kept_branch:
        lines.append(f"Kept branch {result.kept_branch} at {result.kept_worktree}: {result.reason}")
    return "\n".join(lines)


def _close_window(cfg: Config, tmux: Tmux, agent: Agent) -> None:
    """Save what the pane showed, then close its window (if still there).

    Never a pane of another server: its pane id may now name someone else's.
    """
    if not agent.pane_id or not registry.on_server(agent, tmux.server_id()):
        return
    _save_log(cfg, tmux, agent)
    try:
        tmux.kill_window_of(agent.pane_id)
    except TmuxError:
        pass  # already gone


def _save_log(cfg: Config, tmux: Tmux, agent: Agent) -> None:
    """Save the agent's pane's scrollback (the caller checked the server)."""
    if not agent.pane_id:
        return
    try:
        text = tmux.capture(agent.pane_id, history=True)
    except TmuxError:
        return
    atomic_write(cfg.data.logs_dir / f"{agent.name}.log", text)


# -- git worktrees -----------------------------------------------------------------


def _git(cwd: Path, *args: str, check: bool = True) -> str:
    proc = subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, check=False, umask=user_umask()
    )
    if check and proc.returncode != 0:
        raise GitError(f"git {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


def branch_name(name: str) -> str:
    return f"cmux/{name}"


def _add_worktree(cfg: Config, name: str) -> tuple[Path, str]:
    root = cfg.project_root
    if _git(root, "rev-parse", "--is-inside-work-tree", check=False).strip() != "true":
        raise NotAGitRepo(f"{root} is not a git repository", "--worktree needs one")
    if not _git(root, "rev-parse", "--verify", "-q", "HEAD", check=False).strip():
        raise GitError(f"{root} has no commits yet", "commit once before using --worktree")
    branch = branch_name(name)
    path = cfg.data.worktree(name)
    if _git(root, "rev-parse", "--verify", "-q", f"refs/heads/{branch}", check=False).strip():
        raise AgentError(
            f"branch {branch} already exists (kept from an earlier worker {name!r})",
            f"merge or delete it (`git branch -D {branch}`), or choose another name",
        )
    if path.exists():
        raise AgentError(
            f"{path} already exists",
            f"remove it (`git worktree remove {path}`) or choose another name",
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    _git(root, "worktree", "add", "-q", "-b", branch, str(path), "HEAD")
    return path, branch


def unmerged_commits(root: Path, branch: str) -> int:
    """Commits on ``branch`` that no other local branch contains."""
    others = [
        ref
        for ref in _git(root, "for-each-ref", "--format=%(refname)", "refs/heads").split()
        if ref != f"refs/heads/{branch}"
    ]
    out = _git(root, "rev-list", "--count", f"refs/heads/{branch}", "--not", *others)
    return int(out.strip() or 0)


def _retire_worktree(cfg: Config, agent: Agent, result: KillResult) -> None:
    root = cfg.project_root
    path = Path(agent.worktree or "")
    branch = agent.branch or branch_name(agent.name)
    reasons = []
    if path.is_dir():
        dirty = _git(path, "status", "--porcelain", check=False).strip()
        if dirty:
            reasons.append("uncommitted changes in the worktree")
    try:
        n = unmerged_commits(root, branch)
    except GitError:
        n = 0
    if n:
        reasons.append(f"{n} commit{'s' if n != 1 else ''} not merged into any other branch")
    if reasons:
        result.kept_branch = branch
        result.kept_worktree = str(path)
        result.reason = "; ".join(reasons)
        events.record(cfg.data, "worktree-kept", agent.name, branch=branch, reason=result.reason)
        return
    _git(root, "worktree", "remove", "--force", str(path), check=False)
    _git(root, "branch", "-D", branch, check=False)
    _git(root, "worktree", "prune", check=False)
    result.removed_worktree = str(path)


# -- noticing deaths ---------------------------------------------------------------


def pane_died(
    cfg: Config, pane_id: str, status: int | None, server: str | None = None
) -> Agent | None:
    """Called by tmux's pane-died hook: the agent in that pane has exited.

    ``server`` is the identity of the server whose pane died; a record of the
    same pane id on another server is someone else (pane ids restart).
    """
    for agent in registry.list_agents(cfg.data):
        if agent.pane_id != pane_id:
            continue
        if server is not None and not registry.on_server(agent, server):
            continue
        if agent.live or agent.state == "exited":
            return _mark_exited(cfg, agent, status, "its process exited")
    return None


def _mark_exited(cfg: Config, agent: Agent, code: int | None, why: str) -> Agent:
    """Mark a live agent exited with ``code``, or add the code to one that is
    already exited without one. Checked under the record's lock, so that of
    two paths noticing the same death (the hook, a reconcile, a SessionEnd
    hook) neither undoes the other: a known code is never replaced by None.
    """
    updated = registry.transition(
        cfg.data,
        agent.name,
        "exited",
        reason=f"{why}, code {code if code is not None else 'unknown'}",
        strict=False,
        only_from=LIVE,
        exit_code=code,
    )
    if updated.state == "exited" and updated.exit_code is None and code is not None:
        # Already exited without a code (a SessionEnd hook, a reconcile): add it.
        updated = registry.transition(
            cfg.data, agent.name, "exited", only_from={"exited"}, exit_code=code, strict=False
        )
    if updated.state == "exited" and agent.state not in ("done", "exited"):
        _journal(
            cfg,
            agent.name,
            f"{agent.name} exited without reporting done (code {code})",
            f"Task: {agent.task_summary or '(none)'}\nState before: {agent.state}",
            ["crash"],
        )
    return updated


def reconcile(cfg: Config, tmux: Tmux | None = None, *, inside: bool = False) -> list[Agent]:
    """Bring the registry in line with the live tmux server (one tmux call).

    An agent recorded on another server than the one running (or when none
    runs) is marked exited: that server ended, and its pane ids now name
    other panes or nothing. A pane that died or vanished while its agent was
    live marks it exited with the code tmux recorded. A dead monitor pane is
    started again. Returns the agents that changed.

    ``inside``: the caller lives in a pane of the server (the monitor). When
    no server answers, such a caller is going down with it and changes
    nothing: the next `cmux start` (or status, send) records what the dead
    server left, and says so.
    """
    tmux = tmux or tmux_for(cfg)
    panes = {p.pane_id: p for p in tmux.list_panes()}
    server = next((p.server for p in panes.values() if p.server), None)
    if server is None and inside:
        return []
    if server is not None:
        mend_monitor(cfg, tmux, list(panes.values()))
    changed = []
    for agent in registry.list_agents(cfg.data):
        if not agent.live:
            continue
        if not registry.on_server(agent, server):
            if agent.pane_id or server is None:
                changed.append(_mark_exited(cfg, agent, None, SERVER_ENDED))
            continue  # (no pane yet, on the live server: being spawned)
        pane = panes.get(agent.pane_id or "")
        if pane is not None and pane.dead and pane.dead_status is None and pane.dead_signal is None:
            pane = _wait_for_status(tmux, pane)
        if pane is None:
            changed.append(_mark_exited(cfg, agent, None, "its pane is gone"))
        elif pane.dead and pane.dead_signal is not None:
            code = 128 + pane.dead_signal
            changed.append(_mark_exited(cfg, agent, code, "a signal ended its process"))
        elif pane.dead and pane.dead_status is None:
            changed.append(_mark_exited(cfg, agent, None, "its process ended"))
        elif pane.dead:
            changed.append(_mark_exited(cfg, agent, pane.dead_status, "its process exited"))
    return changed


def check(cfg: Config) -> None:
    """The cheap look a person's command takes (`cmux send`): reconcile, and so
    mend a dead monitor pane; tmux trouble here never fails the command."""
    try:
        reconcile(cfg)
    except TmuxError as exc:
        log.info("no reconcile: %s", exc)


def _wait_for_status(tmux: Tmux, pane: Pane) -> Pane | None:
    """A pane dead without an exit status, DEAD_GRACE seconds later at most.

    tmux sees a pane die in two steps, its terminal closing and its process
    being reaped; in between (normally a moment, forever if tmux missed the
    SIGCHLD) the status is not known yet. tmux is asked to reap at once, and
    the status awaited, so a code is never lost by looking too early.
    """
    tmux.reap(pane.server)
    deadline = time.monotonic() + DEAD_GRACE
    while True:
        now = tmux.pane(pane.pane_id)
        if now is None or now.server != pane.server:
            return None
        if now.dead_status is not None or now.dead_signal is not None or not now.dead:
            return now
        if time.monotonic() > deadline:
            return now
        time.sleep(0.02)


def mend_monitor(cfg: Config, tmux: Tmux, panes: list[Pane], *, delay: float = 0.0) -> bool:
    """Start the monitor pane again if it is dead (True if it was).

    The keeper in that pane restarts the monitor itself; this is for when the
    keeper is gone too and tmux's pane-died hook did not fire (tmux < 3.5 can
    miss it). Only a dead pane is respawned, so of two menders one wins.
    """
    mine = [p for p in panes if p.window_name == MONITOR and p.session == cfg.session_name]
    if not mine or not mine[0].dead:
        return False
    try:
        tmux.respawn_pane(mine[0].pane_id, monitor_argv(delay), env=base_env(cfg), kill=False)
    except TmuxError:
        return False  # someone else respawned it first, or it is gone
    events.record(cfg.data, "daemon-start", daemon="monitor", reason="its pane was dead")
    return True


def respawn(cfg: Config, name: str, *, reason: str = "restarted") -> Agent:
    """Start a gone agent again in a fresh window, same name, profile and task.

    Used by the watchdogs to bring back a dead supervisor; its new incarnation
    gets a new Claude session id and starts with the journal's memory.
    """
    old = registry.get(cfg.data, name)
    tmux = require_running(cfg)
    _close_window(cfg, tmux, old)
    if old.live:
        registry.transition(cfg.data, name, "exited", reason=reason, strict=False)
    command: str | None = None
    profile: str | None = old.profile
    if old.profile == "command":
        command = (
            old.command[2] if len(old.command) >= 3 and old.command[:2] == ["sh", "-c"] else None
        )
        profile = None
    agent = spawn(
        cfg,
        name,
        task=old.task,
        profile=profile,
        command=command,
        cwd=old.cwd,
        role=old.role,
        parent=old.parent,
        tmux=tmux,
    )
    events.record(cfg.data, "respawn", name, reason=reason, incarnation=agent.incarnation)
    return agent
