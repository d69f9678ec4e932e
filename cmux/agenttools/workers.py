"""tools/workers: the supervisor's hands (the same as `cmux spawn/kill/status`).

    workers spawn NAME --task TEXT [--worktree] [--agent PROFILE] [--dir DIR]
    workers kill NAME ; workers approve NAME ; workers deny NAME
    workers list [--json]

The caller ($CMUX_AGENT, verified by its token) becomes the parent of what it
spawns: the new worker's done and blocked reports come back to it.

What each caller may do is ``decide``'s answer, checked here whatever Claude
Code's allow rules say (docs/CLAUDE.md, "Who may do what"):

- a person (no CMUX_AGENT): everything, as with `cmux spawn/kill/approve`;
- the supervisor: spawn a worker with a profile and a task, inside the
  project; end, approve or deny its own workers; list. Not ``--command`` (a
  command line run unprompted) nor the ``shell`` profile (a shell runs its mail
  as commands): either would let an agent run any command without a prompt;
- a worker: list only. It asks its supervisor for anything else.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from cmux.agenttools import identity, run
from cmux.errors import UnknownAgent, UsageError
from cmux.paths import HUMAN, SUPERVISOR

PROG = "workers"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Spawn, list and end worker agents, each in its own tmux window.",
        epilog="Example:  workers spawn fix-login --worktree --task "
        '"make tests/test_login.py pass; '
        'report with mailbox done"',
    )
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    s = sub.add_parser("spawn", help="start a worker with a task")
    s.add_argument("name", help="lowercase letters, digits, - and _; starts with a letter")
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("--task", help="the task ('-' reads standard input)")
    g.add_argument("--task-file", help="read the task from this file")
    s.add_argument("--agent", dest="profile", help="claude, demo, shell or a [profiles] entry")
    s.add_argument("--command", help="run this command instead of a profile (a person only)")
    s.add_argument("--dir", dest="cwd", help="working directory (default: the project)")
    s.add_argument("--worktree", action="store_true", help="own git worktree and branch cmux/NAME")
    s.add_argument("--json", action="store_true")
    k = sub.add_parser("kill", help="end a worker (unmerged worktree work is kept)")
    k.add_argument("name")
    k.add_argument("--json", action="store_true")
    for verb, what in (("approve", "say yes to"), ("deny", "say no to")):
        a = sub.add_parser(verb, help=f"{what} the permission prompt or dialog NAME waits on")
        a.add_argument("name")
    ls = sub.add_parser("list", help="every agent with its state")
    ls.add_argument("--json", action="store_true")
    return p


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
            f"a worker cannot `workers {cmd}`: only the supervisor spawns, ends and "
            "answers for workers",
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
    if cmd in ("kill", "approve", "deny") and target_parent != caller:
        return (
            f"{target} is not a worker of {caller}: an agent can {cmd} only its own workers",
            f"a person can: cmux {cmd} {target}",
        )
    return None


def _role(cfg: Any, me: str) -> str:
    from cmux.agents import registry

    if me == HUMAN:
        return HUMAN
    try:
        return registry.get(cfg.data, me).role
    except UnknownAgent:
        return "worker"  # an agent cmux has no record of gets the least


def _outside(cfg: Any, *paths: str | None) -> str | None:
    root = cfg.project_root.resolve()
    for p in paths:
        if p and p != "-" and not Path(p).resolve().is_relative_to(root):
            return p
    return None


def _check(cfg: Any, me: str, args: argparse.Namespace) -> None:
    from cmux.agents import profiles, registry
    from cmux.identity import NotAllowed

    if me == HUMAN:
        return
    facts: dict[str, Any] = {}
    if args.cmd == "spawn":
        facts["command"] = args.command is not None
        if args.command is None:
            prof = profiles.resolve(cfg, args.profile)
            facts["shell"] = prof.name == "shell" and prof.builtin
        facts["outside"] = _outside(cfg, args.cwd, args.task_file)
    elif args.cmd in ("kill", "approve", "deny"):
        facts["target"] = args.name
        try:
            facts["target_parent"] = registry.get(cfg.data, args.name).parent
        except UnknownAgent:
            facts["target_parent"] = None
    refused = decide(me, _role(cfg, me), args.cmd, **facts)
    if refused:
        raise NotAllowed(*refused)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from cmux.agents import deaths, registry, spawn
    from cmux.config import load_config

    cfg = load_config()
    me = identity(cfg)
    _check(cfg, me, args)
    if args.cmd == "spawn":
        agent = spawn.spawn(
            cfg,
            args.name,
            task=spawn.read_task(args.task, args.task_file),
            profile=args.profile,
            command=args.command,
            cwd=args.cwd,
            worktree=args.worktree,
            parent=me if me != "human" else "supervisor",
        )
        if args.json:
            print(json.dumps(agent.to_dict()))
        else:
            extra = f" on branch {agent.branch} in {agent.worktree}" if agent.worktree else ""
            print(
                f"spawned {agent.name} ({agent.profile}){extra}; "
                "it reports back to you with mailbox done"
            )
        return 0
    if args.cmd == "kill":
        target = registry.get(cfg.data, args.name)
        if target.role == "supervisor":
            raise UsageError(
                "workers kill cannot end the supervisor",
                "a person can: cmux kill supervisor --force",
            )
        r = spawn.kill(cfg, args.name, reason=f"killed by {me}")
        if args.json:
            print(json.dumps(vars(r)))
        else:
            print(
                f"killed {args.name}"
                + (f"; kept branch {r.kept_branch} ({r.reason})" if r.kept_branch else "")
            )
        return 0
    if args.cmd in ("approve", "deny"):
        from cmux.agents import screen

        answered = screen.answer(cfg, args.name, yes=args.cmd == "approve", by=me)
        print(f"{args.cmd}d {args.name}: {answered.detail}; now {answered.state}")
        return 0
    deaths.reconcile(cfg)
    agents = registry.list_agents(cfg.data)
    if args.json:
        print(json.dumps([a.to_dict() for a in agents]))
        return 0
    from cmux.text import one_line

    now = time.time()
    for a in agents:
        state = f"exited({a.exit_code})" if a.state == "exited" else a.state
        age = f"{int(now - a.created):>6}s"
        print(one_line(f"{a.name:<16} {a.role:<10} {state:<12} {age}  {a.task_summary}"))
    return 0


if __name__ == "__main__":
    run(main, PROG)
