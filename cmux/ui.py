"""All user-facing output: messages, tables, live status, --json.

rich is imported only where a table or live view is drawn, so quick commands
stay quick.

Invariant: nothing stored (a mail body, a journal file, a task, a name, a
check's output) reaches the terminal as anything but text. ``out``, ``write``,
``err`` and every rich ``console()`` pass text through ``cmux.text.sanitize``
(no escape sequences, no control characters), and the console reads no
markup or emoji codes in strings: cmux's own styling is given as ``style=``
or ``Text``. JSON is printed exact (``print_json``, ``out_json``).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from cmux.errors import CmuxError
from cmux.text import json_text, one_line, sanitize

if TYPE_CHECKING:
    from rich.console import Console
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
    "rate-limited": "bold yellow",
    "overloaded": "bold yellow",
    "auth-error": "bold red",
    "stuck": "bold red",
    "crashed": "bold red",
    "unreachable": "bold yellow",
    "lost": "bold red",
}


def out(text: str = "") -> None:
    """One line (or several) on stdout, made safe for a terminal."""
    sys.stdout.write(sanitize(text) + "\n")
    sys.stdout.flush()


def write(text: str) -> None:
    """Text as it is (a journal file), made safe for a terminal."""
    sys.stdout.write(sanitize(text))
    sys.stdout.flush()


def err(text: str) -> None:
    sys.stderr.write(f"cmux: {sanitize(text)}\n")
    sys.stderr.flush()


def warn(text: str) -> None:
    err(f"warning: {text}")


def error(exc: CmuxError) -> None:
    sys.stderr.write(f"cmux: error: {sanitize(exc.message)}\n")
    if exc.hint:
        sys.stderr.write(f"  hint: {sanitize(exc.hint)}\n")
    sys.stderr.flush()


def progress(text: str) -> None:
    """A step of something slow, on stderr so --json output stays clean."""
    sys.stderr.write(f"… {sanitize(text)}\n")
    sys.stderr.flush()


def print_json(obj: Any) -> None:
    out_json(json.dumps(obj, indent=2, ensure_ascii=False, default=str))


def out_json(text: str) -> None:
    """A JSON document on stdout, exact: the values read back are the stored
    ones, and no raw control character reaches the terminal (text.json_text)."""
    sys.stdout.write(json_text(text) + "\n")
    sys.stdout.flush()


def console(**kwargs: Any) -> Console:
    """A rich Console for anything that may show stored text: every string
    it renders (a table cell, a printed line) is sanitized first and read
    with no markup and no emoji codes, so ``[bold]`` or ``:smile:`` in a
    task or a title is shown as typed. Style with ``style=`` or ``Text``."""
    from rich.console import Console
    from rich.text import Text

    class SafeConsole(Console):
        def render_str(self, text: str, **kw: Any) -> Text:
            return super().render_str(sanitize(text), **kw)

    kwargs.setdefault("markup", False)
    kwargs.setdefault("emoji", False)
    return SafeConsole(**kwargs)


def styled(text: str, style: str = "") -> Any:
    """A rich Text of stored ``text`` on one line, safe, with cmux's ``style``."""
    from rich.text import Text

    return Text(one_line(text), style=style)


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


# Columns a narrow terminal drops first (the rest are cut with an ellipsis):
# below 120 columns LAST EVENT, below 100 also ROLE and TOKENS.
DROP_BELOW = {"LAST EVENT": 120, "ROLE": 100, "TOKENS": 100}


def status_cells(r: dict[str, Any]) -> dict[str, str]:
    """One status row as the text of each column (what --watch compares)."""
    from cmux.agents.cost import short

    state = str(r["state"])
    shown = (
        f"exited({r['exit_code'] if r['exit_code'] is not None else '?'})"
        if state == "exited"
        else state
    )
    parts = []
    if r.get("pending") or r.get("held"):
        parts.append(f"{r.get('pending', 0)} pending")
    if r.get("held"):
        parts.append(f"{r['held']} held")
    if r.get("unread"):
        parts.append(f"{r['unread']} unread")
    total = (r.get("tokens") or {}).get("total", 0)
    return {
        "AGENT": str(r["name"]),
        "ROLE": str(r["role"]),
        "HOST": str(r.get("host") or ""),
        "STATE": shown,
        "MERGE": str(r.get("queue") or ""),
        "TASK": str(r["task"] or ""),
        "AGE": age(r["age_seconds"]),
        "MAIL": ", ".join(parts),
        "TOKENS": short(total) if total else "",
        "LAST EVENT": r["last_event"] + (f" [{r['note']}]" if r.get("note") else ""),
    }


def status_table(
    rows: Sequence[dict[str, Any]],
    title: str | None = None,
    *,
    width: int | None = None,
    changed: dict[str, set[str]] | None = None,
) -> Table:
    """One line per agent, whatever the width: every cell stays on its line
    (cut with an ellipsis), and a terminal narrower than ``DROP_BELOW`` loses
    the columns that matter least. ``changed`` (agent -> columns) is shown
    highlighted: what `cmux status --watch` saw change."""
    from rich.table import Table

    width = width or console().width
    table = Table(title=title, title_justify="left", expand=False, pad_edge=False)
    merging = any(r.get("queue") for r in rows)
    remote = any(r.get("host") for r in rows)
    names = ["AGENT", "ROLE", *(["HOST"] if remote else []), "STATE"]
    names += [*(["MERGE"] if merging else []), "TASK"]
    names += ["AGE", "MAIL", "TOKENS", "LAST EVENT"]
    names = [c for c in names if width >= DROP_BELOW.get(c, 0)]
    all_cells = [status_cells(r) for r in rows]

    def need(col: str) -> int:  # a column's width: its widest cell (LAST EVENT: 48 at most)
        widest = max([len(col), *(len(c[col]) for c in all_cells)])
        return min(widest, 48) if col == "LAST EVENT" else widest

    # Every column but TASK as wide as its widest cell; TASK gets what is left
    # (3 columns of border and padding per column), cut with an ellipsis.
    fixed = sum(need(c) + 3 for c in names if c != "TASK")
    task_width = max(8, min(need("TASK"), 60, width - fixed - 4))
    for col in names:
        kw: dict[str, Any] = {"no_wrap": True, "overflow": "ellipsis"}
        if col == "TASK":
            kw.update(width=task_width)
        else:
            kw.update(min_width=need(col), max_width=need(col))
        if col == "AGENT":
            kw["style"] = "bold"
        if col in ("AGE", "MAIL", "TOKENS"):
            kw["justify"] = "right"
        table.add_column(col, **kw)
    columns: list[tuple[str, dict[str, Any]]] = [(c, {}) for c in names]
    for r, cells in zip(rows, all_cells, strict=True):
        hot = (changed or {}).get(str(r["name"]), set())
        out = []
        for col, _ in columns:
            style = STATE_STYLE.get(str(r["state"]), "") if col == "STATE" else ""
            if col in hot:
                style = (style + " reverse").strip()
            out.append(styled(cells[col], style))
        table.add_row(*out)
    return table


def changes(
    before: dict[str, dict[str, str]], after: dict[str, dict[str, str]]
) -> dict[str, set[str]]:
    """Which columns of which agents differ (a new agent: all of them).
    AGE is left out: it changes every second by itself."""
    out: dict[str, set[str]] = {}
    for name, cells in after.items():
        old = before.get(name)
        diff = {c for c, v in cells.items() if c != "AGE" and (old is None or old.get(c) != v)}
        if diff:
            out[name] = diff
    return out


def print_renderable(obj: Any) -> None:
    console().print(obj)


def status_screen(header: str, rows: Sequence[dict[str, Any]]) -> None:
    """The monitor window's screen: the header (yellow when mail waits for
    the human, with a bell), the status table, and what the window is."""
    out_console = console()
    out_console.clear()
    human = header.count("for you")
    out_console.print(header, style="bold" if not human else "bold yellow")
    out_console.print(status_table(rows))
    out_console.print(
        "this window runs cmux's daemons; leave it open. "
        "`cmux send NAME text` to talk to an agent, `cmux inbox` for your mail.",
        style="dim",
    )
    if human:
        sys.stdout.write("\a")
        sys.stdout.flush()
