"""The demo agent: a small built-in agent that needs no account.

It shows the whole flow with the same tools a real agent uses:

- as a worker it reads its task, does simple scripted work (each line
  `RUN: <command>` in the task is run; anything else is "thought about"),
  writes what it learned to the journal, and in its own worktree (spawned
  with ``--worktree``) commits a note on its branch; then it reports
  `mailbox done`;
- as the supervisor it waits for mail; a task from a person is split in two
  and handed to two demo workers with `workers spawn --worktree`; each done
  report with a branch behind it is queued with `workers merge`; when every
  worker reported and every queued branch landed (or was refused: the
  merger's notice says which) it tells the person (`mailbox send human`) and
  ends the workers.

Mail arrives typed into its pane, one header line per message:
`[cmux mail <id> from <sender> kind=<kind>] <text>`.
"""

from __future__ import annotations

import argparse
import os
import re
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cmux.agents.registry import State

HEADER = re.compile(r"^\[cmux mail (\S+) from (\S+) kind=(\w+)[^\]]*\]\s?(.*)$")


def pace(factor: float = 1.0) -> None:
    delay = float(os.environ.get("CMUX_DEMO_PACE", "0.4")) * factor
    if delay > 0:
        time.sleep(delay)  # only to let a person follow along


def say(text: str) -> None:
    print(f"\033[1;36mdemo\033[0m {text}", flush=True)


def tool(*argv: str) -> str:
    proc = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    out = (proc.stdout + proc.stderr).strip()
    say(
        f"$ {' '.join(argv[:3])}{' …' if len(argv) > 3 else ''}  → "
        f"{out.splitlines()[0] if out else proc.returncode}"
    )
    return out


def set_state(state: State, reason: str = "") -> None:
    from cmux.agents import registry
    from cmux.config import load_config

    try:
        registry.transition(
            load_config().data, os.environ["CMUX_AGENT"], state, reason=reason, strict=False
        )
    except Exception as exc:  # the demo goes on without a registry
        say(f"(could not record state {state}: {exc})")


def read_task() -> str:
    path = os.environ.get("CMUX_TASK_FILE")
    if not path or not os.path.exists(path):
        return ""
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    m = re.search(r"^## Your task\n\n(.*?)\n\n## How to report", text, re.S | re.M)
    return (m.group(1) if m else text).strip()


_pushed_back: list[str] = []


def _next_line() -> str:
    return _pushed_back.pop() if _pushed_back else sys.stdin.readline()


def incoming() -> tuple[str, str, str, str] | None:
    """The next message typed into this pane: (id, sender, kind, text)."""
    line = _next_line()
    if not line:
        raise EOFError
    m = HEADER.match(line.rstrip("\n"))
    if not m:
        return None
    mid, sender, kind, text = m.groups()
    lines = [text] if text else []
    # A multi-line message arrives as a paste: gather what follows at once,
    # up to the next message's header line (kept for the next call).
    while select.select([sys.stdin], [], [], 0.15)[0]:
        more = sys.stdin.readline()
        if not more:
            break
        if HEADER.match(more):
            _pushed_back.append(more)
            break
        lines.append(more.rstrip("\n"))
    return mid, sender, kind, "\n".join(lines).strip()


def worker() -> int:
    name = os.environ.get("CMUX_AGENT", "worker")
    set_state("busy", "reading the task")
    task = read_task()
    say(f"I am {name}. My task: {task or '(none)'}")
    pace()
    results = []
    for line in task.splitlines():
        if line.strip().startswith("RUN:"):
            cmd = line.split("RUN:", 1)[1].strip()
            say(f"running: {cmd}")
            proc = subprocess.run(cmd, shell=True, capture_output=True, text=True, check=False)
            results.append(f"`{cmd}` exited {proc.returncode}")
            print(proc.stdout, end="", flush=True)
    if not results:
        words = len(task.split())
        say(f"thinking about it ({words} words) …")
        pace(2)
        results.append(f"considered the task ({words} words) and wrote down what I learned")
    summary = "; ".join(results)
    note = commit_note(name, task, summary)
    if note:
        summary += f"; committed {note} on my branch"
    tool(
        "journal",
        "add",
        f"{name}: {task.splitlines()[0][:60] if task else 'no task'}",
        "--body",
        f"What was done: {summary}\nWhy: it was my task.",
        "--tags",
        "demo",
    )
    pace()
    tool("mailbox", "done", f"{name} finished: {summary}")
    say("reported done; waiting for more mail (Ctrl-C to end)")
    return listen(name, supervisor=False)


def commit_note(name: str, task: str, summary: str) -> str | None:
    """In a worktree of its own (branch ``cmux/<name>``): write and commit
    ``notes/<name>.md``. Returns its path, or None outside a worktree."""
    from cmux import git
    from cmux.errors import CmuxError

    try:
        repo = git.Repo(Path.cwd())
        if not (repo.current_branch() or "").startswith("cmux/"):
            return None
        path = os.path.join("notes", f"{name}.md")
        title = task.splitlines()[0][:80] if task else "no task"
        os.makedirs(repo.top / "notes", exist_ok=True)
        (repo.top / path).write_text(f"# {name}: {title}\n\n{summary}\n", encoding="utf-8")
        sha = repo.commit_files([path], f"{name}: {title}", ("cmux demo", "demo@cmux.invalid"))
    except CmuxError as exc:
        say(f"(could not commit a note: {exc})")
        return None
    say(f"committed {path} on {repo.current_branch()} ({sha[:12]})")
    return path


LANDED = re.compile(r"^merged: cmux/(\S+) \(#\d+, head \w+\) landed on (\S+) at (\w+)")
REFUSED = re.compile(r"^merge #\d+ of cmux/(\S+) refused: (.*)")


def supervisor() -> int:
    set_state("idle", "ready for a task")
    say('I am the demo supervisor. Give me a task:  cmux send supervisor "..."')
    return listen("supervisor", supervisor=True)


def listen(name: str, *, supervisor: bool) -> int:
    waiting: set[str] = set()  # workers that have not reported yet
    branches: set[str] = set()  # workers with a worktree and branch of their own
    landing: set[str] = set()  # workers whose branch is in the merge queue
    reports: list[str] = []
    merges: list[str] = []
    n = 0
    while True:
        try:
            msg = incoming()
        except (EOFError, KeyboardInterrupt):
            return 0
        if msg is None:
            continue
        mid, sender, kind, text = msg
        say(f"mail {mid[-6:]} from {sender} ({kind}): {text[:120]}")
        if not supervisor:
            continue
        if kind == "done" and sender in waiting:
            waiting.discard(sender)
            reports.append(f"{sender}: {text}")
            if sender in branches:  # its work is on its branch: queue it to land on trunk
                out = tool("workers", "merge", sender)
                if out.startswith(("queued", "already queued")):
                    landing.add(sender)
                else:
                    merges.append(f"{sender}: not queued: {out.splitlines()[-1] if out else '?'}")
        elif sender == "cmux" and (m := LANDED.match(text) or REFUSED.match(text)):
            who = m.group(1)
            if who in landing:
                landing.discard(who)
                if m.re is LANDED:
                    merges.append(f"{who}: landed on {m.group(2)} at {m.group(3)}")
                else:
                    merges.append(f"{who}: refused: {m.group(2)}")
        elif sender == "human" and kind in ("message", "task"):
            set_state("busy", "splitting the task")
            pace()
            for part in (1, 2):
                n += 1
                wname = f"demo-{n}"
                task = f"Part {part} of 2 of: {text}"
                out = tool(
                    "workers", "spawn", wname, "--worktree", "--agent", "demo", "--task", task
                )
                if " on branch " in out:
                    branches.add(wname)
                else:  # no worktree to be had (say, a branch kept from before): work in place
                    tool("workers", "spawn", wname, "--agent", "demo", "--task", task)
                waiting.add(wname)
            say(f"waiting for {', '.join(sorted(waiting))} to report")
            set_state("idle", "waiting for reports")
            continue
        else:
            continue
        if waiting or landing:
            say(
                "waiting for "
                + ", ".join(
                    [*(f"{w} to report" for w in sorted(waiting))]
                    + [f"{w} to land" for w in sorted(landing)]
                )
            )
            continue
        if not reports:
            continue
        set_state("busy", "collecting reports")
        body = "All done. Reports:\n" + "\n".join(reports)
        if merges:
            body += "\nMerge queue:\n" + "\n".join(merges)
        tool("mailbox", "send", "human", body)
        for r in reports:
            tool("workers", "kill", r.split(":", 1)[0])
        tool("journal", "add", "demo task finished", "--body", body, "--tags", "demo")
        set_state("idle", "task finished")
        reports, merges = [], []


def main() -> int:
    p = argparse.ArgumentParser(prog="cmux-demo-agent")
    p.add_argument("--role", choices=("worker", "supervisor"), default="worker")
    p.add_argument("task", nargs="?")
    args = p.parse_args()
    return supervisor() if args.role == "supervisor" else worker()


if __name__ == "__main__":
    sys.exit(main())
