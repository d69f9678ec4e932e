"""tools/workers: the supervisor's hands (the same as `cmux spawn/kill/status`).

    workers spawn NAME --task TEXT [--worktree] [--agent PROFILE] [--dir DIR]
    workers kill NAME ; workers approve NAME ; workers deny NAME
    workers merge NAME [--wait]   queue NAME's branch to land on trunk (tested)
    workers list [--json]

The caller ($CMUX_AGENT, verified by its token) becomes the parent of what it
spawns: the new worker's done and blocked reports come back to it.

What each caller may do is cmux/ops/agents.py ``decide``'s answer, checked
there whatever Claude Code's allow rules say (docs/CLAUDE.md, "Who may do
what"): a person everything, the supervisor its own workers (never
``--command`` nor a shell agent), a worker only ``list``.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import TYPE_CHECKING

from cmux.agenttools import identity, run

if TYPE_CHECKING:
    from cmux.config import Config

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
    s.add_argument(
        "--agent", dest="profile", help="claude, codex, gemini, demo, shell or a [profiles] entry"
    )
    s.add_argument("--command", help="run this command instead of a profile (a person only)")
    s.add_argument("--dir", dest="cwd", help="working directory (default: the project)")
    s.add_argument("--worktree", action="store_true", help="own git worktree and branch cmux/NAME")
    s.add_argument("--host", help="run it on [hosts.NAME] over SSH, in a clone on cmux/NAME")
    s.add_argument("--json", action="store_true")
    k = sub.add_parser("kill", help="end a worker (unmerged worktree work is kept)")
    k.add_argument("name")
    k.add_argument("--json", action="store_true")
    for verb, what in (("approve", "say yes to"), ("deny", "say no to")):
        a = sub.add_parser(verb, help=f"{what} the permission prompt or dialog NAME waits on")
        a.add_argument("name")
    m = sub.add_parser(
        "merge",
        help="queue a --worktree worker's branch to land on trunk once the checks pass",
        description="Queue NAME's branch (cmux/NAME). The merger tests trunk plus the branch "
        "and lands it only if the checks pass; NAME and you are told either way.",
    )
    m.add_argument("name")
    m.add_argument("--wait", action="store_true", help="wait until it landed or was refused")
    m.add_argument("--timeout", type=float, help="with --wait: stop waiting after S seconds")
    m.add_argument("--json", action="store_true")
    ls = sub.add_parser("list", help="every agent with its state")
    ls.add_argument("--json", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from cmux.config import load_config
    from cmux.ops import agents as ops

    cfg = load_config()
    me = identity(cfg)  # what `me` may do is ops.agents.decide's answer
    if args.cmd == "spawn":
        agent = ops.spawn(
            cfg,
            args.name,
            task=args.task,
            task_file=args.task_file,
            profile=args.profile,
            command=args.command,
            cwd=args.cwd,
            worktree=args.worktree,
            host=args.host,
            caller=me,
        )
        if args.json:
            print(json.dumps(agent.to_dict()))
        else:
            extra = f" on branch {agent.branch} in {agent.worktree}" if agent.worktree else ""
            if agent.host:
                extra = f" on host {agent.host}, branch {agent.branch}"
            print(
                f"spawned {agent.name} ({agent.profile}){extra}; "
                "it reports back to you with mailbox done"
            )
        return 0
    if args.cmd == "kill":
        r = ops.kill(cfg, args.name, caller=me)
        if args.json:
            print(json.dumps(vars(r)))
        else:
            print(
                f"killed {args.name}"
                + (f"; kept branch {r.kept_branch} ({r.reason})" if r.kept_branch else "")
            )
        return 0
    if args.cmd == "merge":
        return _merge(cfg, me, args)
    if args.cmd in ("approve", "deny"):
        answered = ops.answer(cfg, args.name, yes=args.cmd == "approve", by=me, caller=me)
        print(f"{args.cmd}d {args.name}: {answered.detail}; now {answered.state}")
        return 0
    agents = ops.agents(cfg, caller=me)
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


def _merge(cfg: Config, me: str, args: argparse.Namespace) -> int:
    from cmux.ops import merge as ops

    entry, already = ops.enqueue(cfg, args.name, caller=me)
    if args.wait:
        entry = ops.wait(cfg, entry.n, timeout=args.timeout)
    if args.json:
        print(json.dumps({**entry.to_dict(), "already": already}))
    elif entry.state == "landed":
        print(f"landed: {entry.branch} on {entry.trunk} at {(entry.landed or '')[:12]}")
    elif entry.state in ("queued", "testing", "waiting"):
        what = "already queued" if already else "queued"
        print(
            f"{what}: merge #{entry.n} of {entry.branch} onto {entry.trunk}; "
            f"you and {args.name} get a message when it lands or is refused"
        )
    else:
        print(f"{entry.state}: {entry.branch}: {entry.reason}")
    return 0 if entry.state not in ("conflict", "failed", "cancelled") else 1


if __name__ == "__main__":
    run(main, PROG)
