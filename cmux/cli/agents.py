"""spawn, kill, status, logs: the agents of the running session."""

from __future__ import annotations

import time
from pathlib import Path

import click

from cmux import ui
from cmux.config import load_config


def spawn_options(f):
    for opt in reversed(
        [
            click.argument("name"),
            click.option("--task", metavar="TEXT", help="The worker's task ('-' reads stdin)."),
            click.option(
                "--task-file",
                type=click.Path(dir_okay=False, path_type=Path),
                help="Read the task from a file.",
            ),
            click.option(
                "--agent",
                "profile",
                metavar="PROFILE",
                help="claude, codex, gemini, demo, shell, or a [profiles] entry.",
            ),
            click.option(
                "--command", metavar="CMD", help="Run CMD in the window instead of a profile."
            ),
            click.option(
                "--dir",
                "cwd",
                type=click.Path(file_okay=False),
                help="Working directory (default: the project).",
            ),
            click.option(
                "--worktree",
                is_flag=True,
                help="Give the worker its own git worktree and branch cmux/NAME.",
            ),
            click.option(
                "--host",
                metavar="NAME",
                help="Run it on [hosts.NAME] over SSH, in a clone on branch cmux/NAME "
                "('local': here; default: [hosts] default).",
            ),
            click.option("--json", "as_json", is_flag=True, help="Print the new agent as JSON."),
        ]
    ):
        f = opt(f)
    return f


def do_spawn(name, task, task_file, profile, command, cwd, worktree, host, as_json):
    """Spawn worker NAME (its parent: the supervisor) and say so."""
    from cmux.ops import agents

    agent = agents.spawn(
        load_config(),
        name,
        task=task,
        task_file=task_file,
        profile=profile,
        command=command,
        cwd=cwd,
        worktree=worktree,
        host=host,
    )
    warn_if_shell(agent)
    if as_json:
        ui.print_json(agent.to_dict())
        return
    where = f" in worktree {agent.worktree} (branch {agent.branch})" if agent.worktree else ""
    if agent.host:
        where = f" on host {agent.host} in {agent.cwd} (branch {agent.branch})"
    pane = f" in pane {agent.pane_id}" if agent.pane_id else ""
    ui.out(f"spawned {agent.name} ({agent.profile}){pane}{where}")


def warn_if_shell(agent) -> None:
    """Say, at spawn, that a shell-type agent runs the mail typed into it."""
    from cmux.mail.render import SHELL_PROFILES

    if agent.profile in SHELL_PROFILES:
        ui.warn(
            f"{agent.name} runs a {agent.profile}, not a model: its shell executes the mail "
            f"typed into it (`cmux send {agent.name} ...`, mail from agents); cmux's own "
            "notices arrive as # comments"
        )


@click.command("spawn")
@spawn_options
def spawn_cmd(name, task, task_file, profile, command, cwd, worktree, host, as_json):
    """Start a worker NAME in a new window with a task.

    Writes contexts/NAME.md (its role, its task, how to report) and starts the
    agent with the task. --worktree gives it its own git worktree and branch.

    \b
    Examples:
      cmux spawn fix-api --task "make tests/api pass"
      cmux spawn docs --task-file brief.md --agent demo
      cmux spawn probe --command "htop" --task "watch the load"
      cmux spawn w1 --host b --task "port the parser"   (on [hosts.b], over SSH)
    """
    do_spawn(name, task, task_file, profile, command, cwd, worktree, host, as_json)


def do_kill(name: str, force: bool, as_json: bool) -> None:
    from cmux.ops import agents

    r = agents.kill(load_config(), name, force=force)
    if as_json:
        ui.print_json(vars(r))
        return
    ui.out(f"killed {name}")
    if r.kept_branch:
        ui.out(f"kept branch {r.kept_branch} and worktree {r.kept_worktree}: {r.reason}")
        ui.out(
            f"  merge it with `git merge {r.kept_branch}`, or drop it with "
            f"`git worktree remove {r.kept_worktree} && git branch -D {r.kept_branch}`"
        )
    elif r.removed_worktree:
        ui.out(f"removed worktree {r.removed_worktree} (nothing unmerged)")


@click.command("kill")
@click.argument("name")
@click.option("--force", is_flag=True, help="Needed to kill the supervisor.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def kill_cmd(name: str, force: bool, as_json: bool) -> None:
    """End one agent. A worktree with unmerged commits or changes is kept."""
    do_kill(name, force, as_json)


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print every agent as JSON.")
@click.option("--watch", is_flag=True, help="Refresh live until Ctrl-C.")
@click.option(
    "--interval", default=1.0, show_default=True, help="Seconds between refreshes with --watch."
)
def status_cmd(as_json: bool, watch: bool, interval: float) -> None:
    """Every agent: role, state, task, age, mail and last event, one line each
    (cut to the terminal's width; a narrow one drops LAST EVENT, then ROLE
    and TOKENS).

    States: starting, idle, busy, waiting (a permission prompt), done and
    blocked (reported by the agent), rate-limited, overloaded, auth-error,
    stuck, crashed, exited(code), killed (the table in README.md); an agent
    on another host (the HOST column) is unreachable while its host does not
    answer and lost after [cluster] host_timeout. With [cluster] nats, when
    NATS does not answer (2 s), a line above the table says the other hosts'
    agents are missing and what to check (with --json: on stderr, the list
    of this host's agents unchanged on stdout; the exit code stays 0).
    With --watch, what changed since the last refresh is shown highlighted
    for a few seconds.
    """
    from cmux.status import cluster_warning, collect_team, status_header

    cfg = load_config()
    if as_json:
        rows, problem = collect_team(cfg)
        ui.print_json(rows)  # a list, as scripts read it; the warning on stderr
        if problem:
            line, hint = cluster_warning(cfg, problem)
            ui.warn(f"{line}\n  hint: {hint}")
        return
    if not watch:
        ui.out(status_header(cfg))
        rows, problem = collect_team(cfg)
        if problem:
            line, hint = cluster_warning(cfg, problem)
            ui.out(f"{line}\n  hint: {hint}")
        if not rows:
            ui.out("no agents yet: `cmux start` starts the supervisor")
            return
        ui.print_renderable(ui.status_table(rows))
        return
    from rich.console import Group
    from rich.live import Live
    from rich.text import Text

    HOT = 3.0  # seconds a change stays highlighted
    seen: dict[str, dict[str, str]] = {}
    hot: dict[tuple[str, str], float] = {}

    def render() -> Group:
        nonlocal seen
        rows, problem = collect_team(cfg)
        now = time.monotonic()
        cells = {str(r["name"]): ui.status_cells(r) for r in rows}
        if seen:
            for name, cols in ui.changes(seen, cells).items():
                for col in cols:
                    hot[(name, col)] = now
        seen = cells
        changed: dict[str, set[str]] = {}
        for (name, col), at in list(hot.items()):
            if now - at > HOT:
                del hot[(name, col)]
            else:
                changed.setdefault(name, set()).add(col)
        header = status_header(cfg)
        if problem:
            header += "\n" + cluster_warning(cfg, problem)[0]
        return Group(Text(header), ui.status_table(rows, changed=changed))

    with Live(render(), console=ui.console(), auto_refresh=False, screen=False) as live:
        while True:
            time.sleep(interval)
            live.update(render(), refresh=True)


@click.command("logs")
@click.argument("name")
@click.option("--lines", "-n", type=int, default=0, help="Only the last N lines.")
def logs_cmd(name: str, lines: int) -> None:
    """What NAME's pane showed (its whole scrollback, or the saved copy)."""
    from cmux.ops import agents

    text = agents.log(load_config(), name)
    out: list[str] = []
    for line in text.rstrip().splitlines():
        if line.strip() or (out and out[-1].strip()):
            out.append(line.rstrip())
    if lines:
        out = out[-lines:]
    ui.out("\n".join(out))


@click.command("_pane-died", hidden=True)
@click.argument("pane_id")
@click.argument("status", required=False, default="")
@click.argument("server", required=False, default="")
def pane_died_cmd(pane_id: str, status: str, server: str) -> None:
    """Called by tmux's pane-died hook (SERVER: the identity of tmux's server)."""
    from cmux.monitor import pane_died

    pane_died(load_config(), pane_id, status, server)
