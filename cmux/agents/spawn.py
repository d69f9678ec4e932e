"""Spawn, kill and respawn agents, each in its own window of the session.

Everything goes through the registry (state changes, events) and the tmux
gateway. A spawn reserves its name under a lock, records the agent before its
window exists (so the pane-died hook always finds it) and removes the record
again if tmux refuses the window. A kill saves the pane's scrollback first,
and never closes a pane of another server (its id may name someone else's).
The front ends (cmux/cli, cmux/agenttools) reach these through cmux/ops.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from cmux import events
from cmux.agents import profiles, registry, resume, worktrees
from cmux.agents.adapters import base as adapters
from cmux.agents.adapters import capabilities
from cmux.agents.deaths import reconcile
from cmux.agents.registry import Agent
from cmux.agents.server import journal_note, require_running
from cmux.config import Config
from cmux.errors import DuplicateAgent, TmuxError, UsageError
from cmux.fsutil import atomic_write, locked
from cmux.mail import store
from cmux.paths import SUPERVISOR
from cmux.text import sanitize
from cmux.tmux import Tmux

log = logging.getLogger(__name__)


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


def write_context(
    cfg: Config,
    name: str,
    role: str,
    task: str,
    parent: str | None,
    *,
    notice: str = "",
    memory: bool = False,
) -> Path:
    """The agent's context file ($CMUX_TASK_FILE): role, task, how to report;
    ``notice`` first when there is one (a fresh start after a lost
    conversation); the journal's memory for the supervisor, or with ``memory``."""
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
        + (f"{notice}\n\n" if notice else "")
        + f"{profiles.role_prompt(role).strip()}\n\n"
        f"## Your task\n\n{task.strip() or '(none yet: wait for a message)'}\n\n"
        f"{report}\n"
        f"Project: {cfg.project_root}\nData root (CMUX_HOME): {cfg.data.root}\n"
    )
    if role == "supervisor" or memory:
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
    checkout: tuple[Path, str] | None = None,
    trunk: str | None = None,
    env: dict[str, str] | None = None,
    _profile: profiles.Profile | None = None,
    _back: Comeback | None = None,
) -> Agent:
    """Start an agent in a new window of the running session.

    ``checkout`` (path, branch): a clone made for it on this host of the
    trunk repository at ``trunk`` (a git URL), where its branch is pushed at
    done and kill (cmux/remote/there.py); ``env``: more of its environment.

    ``_back`` (from ``respawn``) brings a gone agent back: its worktree and
    branch are kept, and its plan says whether its Claude conversation is
    continued, or it starts afresh and is told why (cmux/agents/resume.py).
    """
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
            # (A record `cmux start` reserved for this comeback: starting, no pane.)
            reserved = _back is not None and old.state == "starting" and not old.pane_id
            if old.live and not reserved:
                raise DuplicateAgent(
                    f"an agent named {name!r} already exists ({old.state})",
                    f"choose another name, or end it with `cmux kill {name}`",
                )
            if old.state == "crashed":
                _close_window(cfg, tmux, old)  # the shell its program left behind
        workdir = Path(cwd).resolve() if cwd else cfg.project_root
        if cwd and not workdir.is_dir():
            raise UsageError(f"--dir {cwd}: no such directory")
        branch = wt_path = None
        if worktree:
            wt_path, branch = worktrees.add(cfg, name)
            workdir = wt_path
        elif checkout is not None:
            wt_path, branch = checkout
            workdir = wt_path
        elif _back is not None and _back.old.worktree:
            wt_path, branch = Path(_back.old.worktree), _back.old.branch
        if _back is not None and trunk is None:
            trunk = _back.old.trunk
        cfg.data.ensure()
        how = _back.plan.how if _back else ""
        notice = resume.fresh_notice(_back.plan.why, role) if how == "fresh" and _back else ""
        write_context(cfg, name, role, task, parent, notice=notice, memory=how == "fresh")
        incarnation = (
            registry.get(cfg.data, name).incarnation + 1 if registry.exists(cfg.data, name) else 1
        )
        launch = profiles.build_launch(
            cfg,
            name=name,
            role=role,
            profile=prof,
            task=task,
            command=command,
            resume_session=_back.plan.session_id if _back and how == "conversation" else None,
            prompt="\n\n".join(p for p in (notice, task) if p) if notice else None,
            memory=how == "fresh",
        )
        launch.env["CMUX_INCARNATION"] = str(incarnation)  # hooks of an older one are ignored
        launch.env.update(env or {})
        agent = Agent(
            name=name,
            role=role,
            profile=prof.name if prof else "command",
            adapter=_recorded_adapter(prof),
            state="starting",
            cwd=str(workdir),
            task=task,
            parent=parent if role == "worker" else None,
            worktree=str(wt_path) if wt_path else None,
            branch=branch,
            session_id=launch.session_id,
            command=launch.argv,
            incarnation=incarnation,
            resume=how,
            trunk=trunk,
        )
        registry.save(cfg.data, agent, event=None)
        store.ensure(cfg.data, name)  # after the registry: a mailbox means a known agent
        try:
            pane = tmux.new_window(
                cfg.session_name, name, launch.wrapped(), cwd=str(workdir), env=launch.env
            )
        except TmuxError:
            if _back is not None:
                registry.save(cfg.data, _back.old, event=None)  # a comeback keeps its record
            else:
                registry.remove(cfg.data, name)
            raise
        # Agents that report their own state (claude via hooks, demo) start in
        # `starting`; anything else is ready for input as soon as it runs.
        first: registry.State = (
            "starting" if capabilities.for_agent(agent).reports_start else "idle"
        )
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
            resume=how or None,
        )
        if launch.type_task:
            _queue_typed_task(cfg, name, launch.type_task)
    if _back is None:
        journal_note(cfg, name, f"spawned {role} {name}", task or "(no task)", ["spawn"])
    return agent


@dataclass(frozen=True)
class Comeback:
    """An agent being brought back: its last record and how it comes back."""

    old: Agent
    plan: resume.Plan


def _queue_typed_task(cfg: Config, name: str, task: str) -> None:
    try:
        store.send(cfg, to=name, body=task, sender="cmux", kind="task")
    except Exception:  # the mailbox is an optional door for typed tasks
        log.exception("could not queue the task for %s", name)


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
    _close_window(cfg, Tmux.for_config(cfg), agent)
    if agent.state != "killed":
        registry.transition(cfg.data, name, "killed", reason=reason, strict=False)
    result = KillResult(name=name)
    if agent.trunk and agent.worktree:
        _push_at_kill(cfg, agent, result)
    elif agent.worktree:
        worktrees.retire(cfg, agent, result)
    journal_note(cfg, name, f"killed {name}", _kill_body(agent, result), ["kill"])
    return result


def _push_at_kill(cfg: Config, agent: Agent, result: KillResult) -> None:
    """A worker in a clone of the trunk on another host: its branch goes to
    the trunk before anything else; the clone is kept (nothing is removed
    from a disk that might hold the only copy)."""
    from cmux.errors import CmuxError
    from cmux.remote.there import push_branch

    result.kept_branch, result.kept_worktree = agent.branch, agent.worktree
    try:
        push_branch(cfg, agent)
        result.reason = f"pushed to the trunk repository as {agent.branch}"
    except CmuxError as exc:
        result.reason = f"could not push it to the trunk repository: {exc.message}"


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
    save_log(cfg, tmux, agent)
    try:
        tmux.kill_window_of(agent.pane_id)
    except TmuxError:
        pass  # already gone


def save_log(cfg: Config, tmux: Tmux, agent: Agent) -> None:
    """Save the agent's pane's scrollback (the caller checked the server)."""
    if not agent.pane_id:
        return
    try:
        text = tmux.capture(agent.pane_id, history=True)
    except TmuxError:
        return
    atomic_write(cfg.data.logs_dir / f"{agent.name}.log", text)


def respawn(
    cfg: Config,
    name: str,
    *,
    reason: str = "restarted",
    tmux: Tmux | None = None,
    conversation: bool = True,
    old: Agent | None = None,
) -> Agent:
    """Start a gone agent again in a fresh window: same name, role, parent,
    profile, working directory, worktree, branch and task; incarnation + 1.

    An agent whose program resumes continues its conversation when it can (``resume.plan``;
    never with ``conversation=False``); else it starts afresh with its task
    and the journal's memory, and is told why. Any other program runs its
    command again. A report (done, blocked) outlives the restart; an agent
    that was at work when it went is told to go on. Used by `cmux start`
    after the server ended and by the watchdog for a dead supervisor.

    ``old``: the record as it was when the agent went, when `cmux start` has
    since reserved it (marked it starting, without a pane, so that neither
    the watchdog nor the router takes it for dead meanwhile).
    """
    old = old or registry.get(cfg.data, name)
    tmux = require_running(cfg, tmux)
    _close_window(cfg, tmux, old)
    if old.live:
        old = registry.transition(cfg.data, name, "exited", reason=reason, strict=False)
    command: str | None = None
    profile: str | None = old.profile
    if old.profile == "command":
        command = (
            old.command[2] if len(old.command) >= 3 and old.command[:2] == ["sh", "-c"] else None
        )
        profile = None
    resumes = command is None and _resumes(cfg, profile)
    plan = resume.plan(old, resumes=resumes, transcript=_transcript(old) if resumes else None)
    if plan.how == "conversation" and not conversation:
        plan = resume.Plan("fresh", why="a fresh start was asked for")
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
        _back=Comeback(old, plan),
    )
    carried = resume.carried_state(old)
    if carried:
        agent = registry.transition(
            cfg.data, name, carried, reason="brought back; its report stands", strict=False
        )
    events.record(
        cfg.data,
        "respawn",
        name,
        reason=reason,
        incarnation=agent.incarnation,
        how=plan.how,
        why=plan.why or None,
        session=plan.session_id,
    )
    if plan.how == "conversation" and resume.was_working(old):
        try:
            store.send(
                cfg, to=name, body=resume.comeback_notice(reason), sender="cmux", kind="notice"
            )
        except Exception:  # the nudge is a courtesy; the agent is back either way
            log.exception("could not tell %s to go on", name)
    body = f"Task: {old.task_summary or '(none)'}\nReason: {reason}\nHow: {plan.how}"
    if plan.why:
        body += f" ({plan.why})"
    journal_note(cfg, name, f"brought back {old.role} {name}", body, ["respawn"])
    return agent


def _recorded_adapter(prof: profiles.Profile | None) -> str:
    """The adapter a new record names: "" where its profile name already says
    it (capabilities.adapter_of), so a record reads the same as before
    adapters; a [profiles.X] entry's own adapter otherwise."""
    if prof is None or prof.adapter == capabilities.adapter_for_profile(prof.name):
        return ""
    return prof.adapter


def _resumes(cfg: Config, profile: str | None) -> bool:
    """Whether ``profile``'s adapter can continue a conversation."""
    try:
        prof = profiles.resolve(cfg, profile)
    except UsageError:
        return False
    return adapters.for_profile(prof).resumes


def _transcript(agent: Agent) -> Path | None:
    """The agent's current transcript, if the file is there."""
    if agent.transcript:
        path = Path(agent.transcript)
        return path if path.is_file() else None
    return adapters.for_agent(agent).transcript(agent)
