"""Agent operations: spawn, kill, list, approve and deny, and who may do them.

``caller`` is the verified name of whoever asks (cmux/identity.py), given by
the agents' front end (tools/workers); ``decide`` says what it may do, and
every operation given a caller refuses with NotAllowed what ``decide``
refuses, whatever Claude Code's allow rules say (docs/CLAUDE.md, "Who may do
what"). Without a caller (a person at the `cmux` CLI) nothing is checked,
as always:

- a person (``human``): everything;
- the supervisor: spawn a worker with a profile and a task, inside the
  project; end, approve, deny or merge (queue the branch of) its own
  workers; list. Not ``--command`` (a
  command line run unprompted) nor the ``shell`` profile (a shell runs its mail
  as commands): either would let an agent run any command without a prompt;
- a worker: list only. It asks its supervisor for anything else.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from cmux.paths import HUMAN, SUPERVISOR

if TYPE_CHECKING:
    from cmux.agents.registry import Agent
    from cmux.agents.screen import Answered
    from cmux.agents.spawn import KillResult
    from cmux.config import Config


def decide(
    caller: str,
    role: str,
    cmd: str,
    *,
    command: bool = False,
    shell: bool = False,
    outside: str | None = None,
    target: str | None = None,
    target_parent: str | None = None,
) -> tuple[str, str] | None:
    """Why ``caller`` (of ``role``) may not ``workers cmd``, as (message, hint);
    None when it may. Pure: the facts are looked up by the caller of this."""
    if caller == HUMAN:
        return None
    if role != SUPERVISOR:
        if cmd == "list":
            return None
        return (
            f"a worker cannot `workers {cmd}`: only the supervisor spawns, ends, merges "
            "and answers for workers",
            'ask your supervisor: mailbox send supervisor "..."',
        )
    if cmd == "spawn":
        if command:
            return (
                "an agent cannot spawn with --command: it would run any command line "
                "without a permission prompt",
                "spawn with a profile (--agent claude) and a task; a person can run "
                "`cmux spawn NAME --command CMD`",
            )
        if shell:
            return (
                "an agent cannot spawn a shell agent: a shell runs the mail it gets as "
                "commands, without a permission prompt",
                "spawn with --agent claude (or another profile from cmux.toml)",
            )
        if outside:
            return (
                f"{outside} is outside the project: an agent spawns workers only inside it",
                "give a --dir or --task-file under the project directory",
            )
    if cmd in ("kill", "approve", "deny", "merge") and target_parent != caller:
        return (
            f"{target} is not a worker of {caller}: an agent can {cmd} only its own workers",
            f"a person can: cmux {cmd} {target}",
        )
    return None


def _role(cfg: Config, me: str) -> str:
    from cmux.agents import registry
    from cmux.errors import UnknownAgent

    if me == HUMAN:
        return HUMAN
    try:
        return registry.get(cfg.data, me).role
    except UnknownAgent:
        return "worker"  # an agent cmux has no record of gets the least


def _outside(cfg: Config, *paths: str | None) -> str | None:
    root = cfg.project_root.resolve()
    for p in paths:
        if p and p != "-" and not Path(p).resolve().is_relative_to(root):
            return p
    return None


def authorize(
    cfg: Config,
    caller: str,
    cmd: str,
    *,
    name: str | None = None,
    profile: str | None = None,
    command: str | None = None,
    cwd: str | None = None,
    task_file: str | None = None,
) -> None:
    """Raise NotAllowed unless ``caller`` may ``cmd`` (see ``decide``); the
    facts ``decide`` needs are looked up here."""
    from cmux.agents import profiles, registry
    from cmux.errors import UnknownAgent
    from cmux.identity import NotAllowed

    if caller == HUMAN:
        return
    facts: dict[str, Any] = {}
    if cmd == "spawn":
        facts["command"] = command is not None
        if command is None:
            prof = profiles.resolve(cfg, profile)
            facts["shell"] = prof.name == "shell" and prof.builtin
        facts["outside"] = _outside(cfg, cwd, task_file)
    elif cmd in ("kill", "approve", "deny", "merge"):
        facts["target"] = name
        try:
            facts["target_parent"] = registry.get(cfg.data, name or "").parent
        except UnknownAgent:
            facts["target_parent"] = None
    refused = decide(caller, _role(cfg, caller), cmd, **facts)
    if refused:
        raise NotAllowed(*refused)


def spawn(
    cfg: Config,
    name: str,
    *,
    task: str | None,
    task_file: str | Path | None = None,
    profile: str | None = None,
    command: str | None = None,
    cwd: str | None = None,
    worktree: bool = False,
    host: str | None = None,
    caller: str | None = None,
) -> Agent:
    """Start worker ``name`` with the task from ``task`` or ``task_file``
    ('-' reads stdin). Its parent, to whom it reports, is ``caller`` when
    that is an agent, else the supervisor.

    ``host``: a ``[hosts.NAME]`` to run it on, over SSH, in a clone of the
    trunk on its own branch cmux/NAME (cmux/remote/place.py), or "local";
    None: ``[hosts] default`` says (local when there are no hosts)."""
    from cmux.agents import spawn as spawning
    from cmux.config import placement

    if caller is not None:
        authorize(
            cfg,
            caller,
            "spawn",
            profile=profile,
            command=command,
            cwd=cwd,
            task_file=None if task_file is None else str(task_file),
        )
    text = spawning.read_task(task, task_file)
    where = host or placement(cfg)
    if where == "load":
        from cmux.remote.place import by_load

        where = by_load(cfg)
    if where != "local":
        from cmux.errors import UsageError
        from cmux.remote.place import spawn_on

        if cwd or worktree:
            raise UsageError(
                "--dir and --worktree are for a worker on this host",
                "a worker on another host always gets its own clone and branch cmux/NAME",
            )
        return spawn_on(
            cfg,
            where,
            name,
            task=text,
            profile=profile,
            command=command,
            parent=caller if caller not in (None, HUMAN) else SUPERVISOR,
        )
    return spawning.spawn(
        cfg,
        name,
        task=text,
        profile=profile,
        command=command,
        cwd=cwd,
        worktree=worktree,
        parent=caller if caller not in (None, HUMAN) else SUPERVISOR,
    )


def kill(cfg: Config, name: str, *, force: bool = False, caller: str | None = None) -> KillResult:
    """End agent ``name`` (the supervisor only with ``force``; never for a
    caller: that is the person's, `cmux kill supervisor --force`)."""
    from cmux.agents import registry
    from cmux.agents import spawn as spawning
    from cmux.errors import UsageError

    if caller is not None:
        authorize(cfg, caller, "kill", name=name)
    target = registry.get(cfg.data, name)
    if caller is not None and target.role == "supervisor":
        raise UsageError(
            "workers kill cannot end the supervisor",
            "a person can: cmux kill supervisor --force",
        )
    reason = f"killed by {caller}" if caller else "killed"
    if target.host:
        from cmux.remote.place import kill_on

        said = kill_on(cfg, target, reason=reason)
        return spawning.KillResult(
            name=name,
            kept_branch=said.get("kept_branch"),
            kept_worktree=said.get("kept_worktree"),
            reason=said.get("reason") or "",
        )
    if caller is None:
        return spawning.kill(cfg, name, force=force)
    return spawning.kill(cfg, name, reason=reason)


def attach_elsewhere(cfg: Config, name: str) -> bool:
    """`cmux attach NAME` of an agent on another host: this process becomes
    ``ssh -t HOST cmux attach NAME`` (never returns then); False for an
    agent of this host."""
    from cmux.agents import registry

    agent = registry.get(cfg.data, name)
    if not agent.host:
        return False
    from cmux.remote.place import attach

    attach(cfg, agent)
    return True


def answer(cfg: Config, name: str, *, yes: bool, by: str, caller: str | None = None) -> Answered:
    """Say yes or no to the dialog ``name`` waits on (cmux/agents/screen.py);
    ``by`` is who answered, for the event log."""
    from cmux.agents import screen

    if caller is not None:
        authorize(cfg, caller, "approve" if yes else "deny", name=name)
    return screen.answer(cfg, name, yes=yes, by=by)


def agents(cfg: Config, *, caller: str | None = None) -> list[Agent]:
    """Every agent, after the registry is brought in line with tmux."""
    from cmux.agents import deaths, registry

    if caller is not None:
        authorize(cfg, caller, "list")
    deaths.reconcile(cfg)
    return registry.list_agents(cfg.data)


def log(cfg: Config, name: str) -> str:
    """What ``name``'s pane shows, its whole scrollback; the copy saved when
    it was closed once the pane is gone (or belongs to another server)."""
    from cmux.agents import registry
    from cmux.errors import TmuxError, UsageError
    from cmux.tmux import Tmux

    agent = registry.get(cfg.data, name)
    text = None
    tmux = Tmux.for_config(cfg)
    if agent.pane_id and agent.state != "killed" and registry.on_server(agent, tmux.server_id()):
        try:
            text = tmux.capture(agent.pane_id, history=True)
        except TmuxError:
            text = None
    if text is None:
        saved = cfg.data.logs_dir / f"{name}.log"
        if not saved.exists():
            raise UsageError(f"no log for {name}: its pane is gone and nothing was saved")
        text = saved.read_text(errors="replace")
    return text


def check(cfg: Config) -> None:
    """The cheap look after a person's command (`cmux send`): a dead monitor
    would leave the mail undelivered; tmux trouble never fails the command."""
    from cmux.agents import deaths

    deaths.check(cfg)
