"""hosts: the other machines of [hosts] and what each has."""

from __future__ import annotations

import click

from cmux import ui
from cmux.config import load_config


@click.command("hosts")
@click.argument("names", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Print every host as JSON.")
@click.option(
    "--timeout",
    default=20.0,
    show_default=True,
    help="Seconds to wait for each host before calling it unreachable.",
)
def hosts_cmd(names: tuple[str, ...], as_json: bool, timeout: float) -> None:
    """Each host of [hosts.NAME] in cmux.toml: reachable or not, its load,
    the agents placed there, and the versions of tmux, git, python, cmux and
    the agent programs it has. One ssh call per host, all at once.

    \b
    Examples:
      cmux hosts                 every host, a line each
      cmux hosts b --json        one host, for a script
      cmux doctor                the same facts, with what to fix
    """
    from cmux.ops import hosts

    infos = hosts.hosts(load_config(), only=list(names) or None, timeout=timeout)
    if as_json:
        ui.print_json([i.to_dict() for i in infos])
        return
    if not infos:
        ui.out("no hosts: add [hosts.NAME] entries to cmux.toml (docs/CLUSTER.md)")
        return
    from rich.table import Table

    table = Table(pad_edge=False)
    for col in ("HOST", "SSH", "STATE", "LOAD", "AGENTS", "TMUX", "GIT", "PYTHON", "CMUX"):
        table.add_column(col, no_wrap=True)
    table.add_column("AGENT PROGRAMS / ERROR")
    for i in infos:
        state = ui.styled("reachable", "green") if i.reachable else ui.styled("unreachable", "red")
        limit = f"/{i.limit}" if i.limit else ""
        cores = f" ({i.cores} cores)" if i.cores else ""
        load = "" if i.load is None else f"{i.load:.2f}{cores}"
        v = i.versions
        progs = ", ".join(k + ("" if p else " (missing)") for k, p in sorted(i.programs.items()))
        table.add_row(
            i.name,
            i.ssh,
            state,
            load,
            f"{i.agents}{limit}",
            v.get("tmux", "-").removeprefix("tmux "),
            v.get("git", "-").removeprefix("git version "),
            v.get("python", "-").removeprefix("Python "),
            v.get("cmux", "-").removeprefix("cmux, version "),
            progs if i.reachable else f"{i.error} ({i.hint})" if i.hint else i.error,
        )
    ui.print_renderable(table)


@click.command("_host-spawn", hidden=True)
def host_spawn_cmd() -> None:
    """Run on another host by `cmux spawn --host` over ssh: the spec as JSON
    on stdin; prints the new agent's record as JSON (cmux/remote/there.py)."""
    import json
    import sys

    from cmux.remote.there import spawn_here

    ui.print_json(spawn_here(json.loads(sys.stdin.read())))
