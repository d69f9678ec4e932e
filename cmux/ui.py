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


def status_table(rows: Sequence[dict[str, Any]], title: str | None = None) -> Table:
    from rich.table import Table

    from cmux.agents.cost import short

    table = Table(title=title, title_justify="left", expand=False, pad_edge=False)
    merging = any(r.get("queue") for r in rows)
    columns: list[tuple[str, dict[str, Any]]] = [
        ("AGENT", {"style": "bold"}),
        ("ROLE", {}),
        ("STATE", {}),
        *([("MERGE", {})] if merging else []),
        ("TASK", {"overflow": "ellipsis", "max_width": 48}),
        ("AGE", {"justify": "right"}),
        ("MAIL", {"justify": "right"}),
        ("TOKENS", {"justify": "right"}),
        ("LAST EVENT", {"overflow": "ellipsis", "max_width": 48}),
    ]
    for col, kw in columns:
        table.add_column(col, **kw)
    for r in rows:
        state = str(r["state"])
        shown = (
            f"exited({r['exit_code'] if r['exit_code'] is not None else '?'})"
            if state == "exited"
            else state
        )
        style = STATE_STYLE.get(state, "")
        parts = []
        if r.get("pending") or r.get("held"):
            parts.append(f"{r.get('pending', 0)} pending")
        if r.get("held"):
            parts.append(f"{r['held']} held")
        if r.get("unread"):
            parts.append(f"{r['unread']} unread")
        mail = ", ".join(parts)
        last = r["last_event"] + (f" [{r['note']}]" if r.get("note") else "")
        total = (r.get("tokens") or {}).get("total", 0)
        tokens = short(total) if total else ""
        table.add_row(
            styled(r["name"]),
            styled(r["role"]),
            styled(shown, style),
            *((styled(r.get("queue") or ""),) if merging else ()),
            styled(r["task"] or ""),
            age(r["age_seconds"]),
            mail,
            tokens,
            styled(last),
        )
    return table


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
