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
    the agent programs it has. One ssh call per host, all at once; the
    agents placed there take the states seen (unreachable while their host
    does not answer, lost past [cluster] host_timeout).

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

    header = ("HOST", "STATE", "LOAD", "AGENTS", "TMUX", "GIT", "PYTHON", "CMUX", "SSH")
    rows: list[tuple[str, ...]] = []
    notes: list[str] = []
    for i in infos:
        cores = f"/{i.cores}" if i.cores else ""
        v = i.versions
        rows.append(
            (
                i.name,
                "reachable" if i.reachable else "unreachable",
                "" if i.load is None else f"{i.load:.2f}{cores}",
                f"{i.agents}/{i.limit}" if i.limit else str(i.agents),
                v.get("tmux", "-").removeprefix("tmux "),
                v.get("git", "-").removeprefix("git version "),
                v.get("python", "-").removeprefix("Python "),
                v.get("cmux", "-").removeprefix("cmux, version "),
                i.ssh,
            )
        )
        if not i.reachable:
            notes.append(f"{i.name}: {i.error}" + (f"\n  hint: {i.hint}" if i.hint else ""))
        missing = sorted(k for k, path in i.programs.items() if not path)
        if missing:
            notes.append(f"{i.name}: agent programs not found there: {', '.join(missing)}")
        if i.dir_ok is False:
            notes.append(f"{i.name}: {i.dir} cannot be written")
    # Every column as wide as its widest cell, SSH last and cut when the
    # terminal is narrow: a host's line always stays one line.
    table = Table(box=None, pad_edge=False, show_edge=False)
    for n, col in enumerate(header):
        widest = max(len(col), *(len(r[n]) for r in rows))
        if col == "SSH":
            table.add_column(col, no_wrap=True, overflow="ellipsis")
        else:
            table.add_column(col, no_wrap=True, min_width=widest, style="bold" if n == 0 else "")
    for r in rows:
        state = ui.styled(r[1], "green" if r[1] == "reachable" else "red")
        table.add_row(r[0], state, *r[2:])
    ui.print_renderable(table)
    for note in notes:
        ui.out(note)


@click.command("_host-spawn", hidden=True)
def host_spawn_cmd() -> None:
    """Run on another host by `cmux spawn --host` over ssh: the spec as JSON
    on stdin; prints the new agent's record as JSON (cmux/remote/there.py)."""
    import json
    import sys

    from cmux.remote.there import spawn_here

    ui.print_json(spawn_here(json.loads(sys.stdin.read())))


@click.command("_host-stop", hidden=True)
def host_stop_cmd() -> None:
    """Run on another host by `cmux stop` over ssh: {"root", "names"} as JSON
    on stdin; ends those agents and then the session; prints what it did as
    JSON (cmux/remote/halt.py)."""
    import json
    import sys

    from cmux.remote.halt import stop_here

    ui.print_json(stop_here(json.loads(sys.stdin.read())))
