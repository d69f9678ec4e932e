"""What a person sees of the agents: the status rows and the header line.

``cmux status``, its ``--json``, the monitor window and ``cmux demo`` all
show these. Plain data: the front ends (cmux/ui.py's status table) draw it.
A row is a record of the registry as it is, with the agent's mail counts and,
when it has a transcript, its token use; nothing here guesses a state.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from cmux.agents.adapters import capabilities
from cmux.agents.registry import Agent
from cmux.config import Config
from cmux.text import one_line


def status_rows(
    agents: Iterable[Agent], mail: dict[str, dict[str, int]] | None = None
) -> list[dict[str, Any]]:
    """One row per agent, from its record and its mail counts."""
    now = time.time()
    rows = []
    for a in agents:
        m = (mail or {}).get(a.name, {})
        rows.append(
            {
                "name": a.name,
                "role": a.role,
                "host": a.host,
                "profile": a.profile,
                "state": a.state,
                "exit_code": a.exit_code,
                "task": a.task_summary,
                "age_seconds": round(now - a.created, 1),
                "last_event": a.last_event,
                "updated": a.updated,
                "pane_id": a.pane_id,
                "cwd": a.cwd,
                "branch": a.branch,
                "pending": m.get("pending", 0),
                "held": m.get("held", 0),
                "note": a.note,
            }
        )
    return rows


def collect_status(
    cfg: Config,
    *,
    reconcile: bool = True,
    names: Iterable[str] | None = None,
    team: Callable[[list[Agent]], list[Agent]] | None = None,
) -> list[dict[str, Any]]:
    """Every agent as a status row. ``reconcile=False`` for the monitor, whose
    own loop reconciles (from inside the server, see deaths.reconcile);
    ``names`` only those agents (the dashboard's row of one that changed);
    ``team``: how to add the other hosts' agents to this host's (the
    dashboard's live feed, cmux/cluster/feed.py), instead of asking NATS."""
    return collect_team(cfg, reconcile=reconcile, names=names, team=team)[0]


def collect_team(
    cfg: Config,
    *,
    reconcile: bool = True,
    names: Iterable[str] | None = None,
    team: Callable[[list[Agent]], list[Agent]] | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """:func:`collect_status`, and why the other hosts' agents are missing
    from it: None with every host's there (or with no ``[cluster] nats``, or
    from ``team``), else what NATS said (see :func:`cluster_warning`)."""
    from cmux.agents import deaths, registry
    from cmux.mail import receipts, store

    if reconcile:
        deaths.reconcile(cfg)
    agents = registry.list_agents(cfg.data)
    here = {a.name for a in agents if not a.host}  # their receipts live on this host
    problem = None
    if team is not None:
        agents = team(agents)
    elif cfg.section("cluster").get("nats"):  # one machine: not even the import
        from cmux.cluster import view

        agents, problem = view.team(cfg, agents)
    if names is not None:
        wanted = set(names)
        agents = [a for a in agents if a.name in wanted]
    mail = store.counts(cfg.data, [a.name for a in agents])
    rows = status_rows(agents, mail)
    for row, a in zip(rows, agents, strict=True):
        # Delivered, not yet read by the model (None: its program gives no receipts).
        has = receipts.has_receipts(capabilities.adapter_of(a))
        mine = a.name in here and not a.host
        row["unread"] = len(receipts.unread(cfg.data, a.name)) if has and mine else None
    if any(a.branch for a in agents):
        from cmux.merge.queue import agent_states

        merging = agent_states(cfg.data)
        for row in rows:
            row["queue"] = merging.get(row["name"])
    if any(a.transcript for a in agents):
        from cmux.agents import cost

        tokens = cost.usage(cfg.data, agents)
        for row in rows:
            row["tokens"] = tokens[row["name"]].to_dict()
    return rows, problem


def cluster_warning(cfg: Config, problem: str) -> tuple[str, str]:
    """What ``cmux status`` says when NATS did not answer: the line (only
    this host's agents are shown, and why) and its hint."""
    url = cfg.section("cluster").get("nats")
    return (
        f"other hosts' agents not shown: {problem}",
        f"is nats-server up at {url} and reachable from here (`cmux doctor` checks it), "
        "and is [cluster] nats in cmux.toml its URL? This host's node daemon says "
        "what it sees in state/node.log",
    )


def status_header(cfg: Config) -> str:
    """The session's name and whether it runs; then, a line each, the mail
    waiting for the human and the alert, when there are any."""
    from cmux.agents import server
    from cmux.health.alerts import read_alert
    from cmux.mail import store

    running = server.is_running(cfg)
    title = f"cmux · {cfg.session_name} · {'running' if running else 'stopped'}"
    extra = []
    n = store.pending_count(cfg.data, "human")
    if n:
        extra.append(f"{n} message{'s' if n != 1 else ''} for you: `cmux inbox`")
    alert = read_alert(cfg.data)
    if alert is not None:
        extra.append("ALERT: " + one_line((alert.strip().splitlines() or [""])[0]))
    return title + "".join(f"\n{e}" for e in extra)
