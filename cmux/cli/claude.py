"""hook, approve, deny, cost: the Claude Code side of cmux."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

import click

from cmux import ui
from cmux.config import load_config

if TYPE_CHECKING:
    from cmux.agents.cost import Tokens


@click.command("hook", hidden=True)
@click.argument("event")
def hook_cmd(event: str) -> None:
    """Called by Claude Code's hooks (cmux's --settings): EVENT is SessionStart,
    UserPromptSubmit, PreToolUse, Stop, Notification or SessionEnd; the hook's
    JSON comes on stdin. Always exits 0; errors go to state/hooks.log."""
    from cmux.delivery import hooks

    hooks.run(event, sys.stdin, sys.stdout, os.environ)


def _answer(name: str, yes: bool, as_json: bool) -> None:
    from cmux.agents import screen
    from cmux.ops import agents

    cfg = load_config()
    by = os.environ.get("CMUX_AGENT") or "human"
    done = agents.answer(cfg, name, yes=yes, by=by)
    if as_json:
        ui.print_json(
            {
                "name": done.name,
                "dialog": done.screen.value,
                "key": done.key,
                "detail": done.detail,
                "state": done.state,
            }
        )
        return
    what = screen.DESCRIPTION.get(done.screen, done.screen.value)
    verb = "approved" if yes else "denied"
    detail = f": {done.detail}" if done.detail else ""
    ui.out(f"{verb} {what} of {name}{detail} (now {done.state})")


@click.command("approve")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print what was answered as JSON.")
def approve_cmd(name: str, as_json: bool) -> None:
    """Say yes to the dialog NAME waits on (a permission prompt; also the
    folder trust, API key and bypass-permissions questions).

    The screen is checked first: with no dialog up, nothing is typed.
    `cmux status` shows agents that wait as `waiting`.

    \b
    Example:
      cmux approve w1
    """
    _answer(name, True, as_json)


@click.command("deny")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print what was answered as JSON.")
def deny_cmd(name: str, as_json: bool) -> None:
    """Say no to the dialog NAME waits on. A refused tool call ends the
    agent's turn; tell it what to do instead with `cmux send NAME "..."`."""
    _answer(name, False, as_json)


@click.command("cost")
@click.option("--json", "as_json", is_flag=True, help="Print tokens per agent as JSON.")
def cost_cmd(as_json: bool) -> None:
    """Tokens each Claude agent used, read from its transcripts.

    Input, output, cache-write and cache-read tokens per agent, over every
    incarnation, and the total.
    """
    from cmux.agents import cost, registry
    from cmux.health.budget import budgets, share

    cfg = load_config()
    agents = registry.list_agents(cfg.data)
    per = cost.usage(cfg.data, agents)
    total = cost.Tokens()
    for t in per.values():
        total = total + t
    b = budgets(cfg.raw)

    def limit(a: registry.Agent) -> int:
        return b.per_worker if a.role == "worker" else 0

    if as_json:
        ui.print_json(
            {
                "agents": [
                    {
                        "name": a.name,
                        "profile": a.profile,
                        **per[a.name].to_dict(),
                        "budget": limit(a) or None,
                    }
                    for a in agents
                ],
                "total": {**total.to_dict(), "budget": b.total or None},
            }
        )
        return
    from rich.table import Table

    table = Table(title="tokens per agent", title_justify="left", pad_edge=False)
    table.add_column("AGENT", style="bold")
    for col in ("INPUT", "OUTPUT", "CACHE WRITE", "CACHE READ", "TOTAL", "CALLS"):
        table.add_column(col, justify="right")
    if b.any:
        table.add_column("BUDGET", justify="right")
    for a in agents:
        t = per[a.name]
        extra = [share(t.total, limit(a)) if limit(a) else "-"] if b.any else []
        table.add_row(ui.styled(a.name), *_cells(t), *extra)
    extra = [share(total.total, b.total) if b.total else "-"] if b.any else []
    table.add_row(ui.styled("total", "bold"), *_cells(total), *extra)
    ui.print_renderable(table)


def _cells(t: Tokens) -> list[str]:
    from cmux.agents.cost import short

    return [
        short(t.input),
        short(t.output),
        short(t.cache_creation),
        short(t.cache_read),
        short(t.total),
        str(t.messages),
    ]
