"""All user-facing output: messages, tables, live status, --json.

rich is imported only where a table or live view is drawn, so quick commands
stay quick.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from cmux.errors import CmuxError

if TYPE_CHECKING:
    from rich.table import Table

    from cmux.agents.registry import Agent

STATE_STYLE = {
    "starting": "cyan",
    "idle": "green",
    "busy": "yellow",
    "waiting": "bold magenta",
    "done": "bold green",
    "blocked": "bold red",
    "exited": "red",
    "killed": "dim",
}


def out(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def err(text: str) -> None:
    sys.stderr.write(f"cmux: {text}\n")
    sys.stderr.flush()


def error(exc: CmuxError) -> None:
    sys.stderr.write(f"cmux: error: {exc.message}\n")
    if exc.hint:
        sys.stderr.write(f"  hint: {exc.hint}\n")
    sys.stderr.flush()


def progress(text: str) -> None:
    """A step of something slow, on stderr so --json output stays clean."""
    sys.stderr.write(f"… {text}\n")
    sys.stderr.flush()


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()


def age(seconds: float) -> str:
    s = int(max(0, seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d{(s % 86400) // 3600:02d}h"


def state_text(agent: Agent) -> str:
    if agent.state == "exited":
        code = agent.exit_code
        return f"exited({code if code is not None else '?'})"
    return agent.state


def status_rows(
    agents: Iterable[Agent], mail: dict[str, dict[str, int]] | None = None
) -> list[dict[str, Any]]:
    now = time.time()
    rows = []
    for a in agents:
        m = (mail or {}).get(a.name, {})
        rows.append(
            {
                "name": a.name,
                "role": a.role,
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


def status_table(rows: Sequence[dict[str, Any]], title: str | None = None) -> Table:
    from rich.table import Table

    from cmux.agents.cost import short

    table = Table(title=title, title_justify="left", expand=False, pad_edge=False)
    for col, kw in (
        ("AGENT", {"style": "bold"}),
        ("ROLE", {}),
        ("STATE", {}),
        ("TASK", {"overflow": "ellipsis", "max_width": 48}),
        ("AGE", {"justify": "right"}),
        ("MAIL", {"justify": "right"}),
        ("TOKENS", {"justify": "right"}),
        ("LAST EVENT", {"overflow": "ellipsis", "max_width": 48}),
    ):
        table.add_column(col, **kw)
    for r in rows:
        state = r["state"]
        shown = (
            f"exited({r['exit_code'] if r['exit_code'] is not None else '?'})"
            if state == "exited"
            else state
        )
        style = STATE_STYLE.get(state, "")
        mail = ""
        if r.get("pending") or r.get("held"):
            mail = f"{r.get('pending', 0)} pending"
            if r.get("held"):
                mail += f", {r['held']} held"
        last = r["last_event"] + (f" [{r['note']}]" if r.get("note") else "")
        total = (r.get("tokens") or {}).get("total", 0)
        tokens = short(total) if total else ""
        table.add_row(
            r["name"],
            r["role"],
            f"[{style}]{shown}[/]",
            r["task"],
            age(r["age_seconds"]),
            mail,
            tokens,
            last,
        )
    return table


def print_renderable(obj: Any) -> None:
    from rich.console import Console

    Console().print(obj)
