"""cmux journal: read, search and write the team's journal as a person.

The same commands agents have in tools/journal, signed ``human``, with
colour. Thin: each command calls cmux/ops/journal.py and prints. The journal is
stored text anyone may have written: it is printed through ui (sanitized, and
never read as rich markup), never raw.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

import click

from cmux import identity, ui
from cmux.config import load_config
from cmux.paths import HUMAN, DataRoot
from cmux.text import one_line

if TYPE_CHECKING:
    from rich.text import Text

    from cmux.journal.index import Hit
    from cmux.journal.store import Entry

# Snippet highlight marks: control characters never occur in stored text.
_ON, _OFF = "\x02", "\x03"


def _data() -> DataRoot:
    return load_config().data


def _shown_path(path: str) -> str:
    """Relative to where the person stands when that is shorter, else absolute."""
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return path if rel.startswith("..") else rel


def _highlight(snippet: str) -> Text:
    """The snippet as rich Text, the matches (between the marks) in bold."""
    from rich.text import Text

    out = Text("    ")
    bold = False
    for piece in re.split(f"([{_ON}{_OFF}])", " ".join(snippet.split())):
        if piece in (_ON, _OFF):
            bold = piece == _ON
        elif piece:
            out.append(one_line(piece), style="bold yellow" if bold else "")
    return out


@click.group("journal", invoke_without_command=True)
@click.pass_context
def journal_group(ctx: click.Context) -> None:
    """The team's long-term memory: what was done, why, what went wrong.

    Markdown files under journal/YYYY-MM-DD.md in the data root (read them,
    edit them, commit them), searched through an index that rebuilds
    itself. journal/MEMORY.md holds the facts every agent is started with.
    Agents write with tools/journal; cmux records spawns, reports, kills,
    crashes and rollbacks itself. Without a subcommand: today's entries.

    \b
    Examples:
      cmux journal search "flaky test"
      cmux journal recent --days 3
      cmux journal add "Switched CI to Python 3.12" --body "Why: ..."
      cmux journal remember "the tests need TZ=UTC"
    """
    if ctx.invoked_subcommand is None:
        ctx.invoke(recent_cmd)


@journal_group.command("add")
@click.argument("title")
@click.argument("body_arg", metavar="[BODY]", required=False)
@click.option("--body", "-b", metavar="TEXT", help="The body (markdown); '-' reads stdin.")
@click.option("--tags", "-t", metavar="A,B", multiple=True, help="Comma-separated tags.")
@click.option("--json", "as_json", is_flag=True, help="Print the entry as JSON.")
def add_cmd(
    title: str, body_arg: str | None, body: str | None, tags: tuple[str, ...], as_json: bool
) -> None:
    """Write an entry signed `human` in today's file.

    Suggested body: What was done / Why / Key decisions / Issues encountered.

    \b
    Examples:
      cmux journal add "Paused the migration" --tags db --body "Why: ..."
      git log -5 --oneline | cmux journal add "Where we stand" -
    """
    from cmux.inputs import arg_text
    from cmux.ops import journal

    text = journal.body_text(body, body_arg)
    title = arg_text(title, "the title")
    tag_list = journal.tags(tags)
    identity.require_person(load_config(), "sign the journal as human")
    entry = journal.add(_data(), agent=HUMAN, title=title, body=text, tags=tag_list)
    if as_json:
        ui.print_json(entry.to_dict())
    else:
        ui.out(f"added {entry.date} {entry.heading}  ({entry.file}:{entry.line})")


@journal_group.command("search")
@click.argument("query", nargs=-1, required=True)
@click.option(
    "--limit",
    "-n",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="At most N hits.",
)
@click.option("--agent", metavar="NAME", help="Only entries written by NAME.")
@click.option("--json", "as_json", is_flag=True, help="Print the hits as JSON.")
def search_cmd(query: tuple[str, ...], limit: int, agent: str | None, as_json: bool) -> None:
    """Full-text search over titles, tags and bodies, best match first.

    Titles count most; words match by stem ('failing' finds 'failed').

    \b
    Query syntax:
      flaky test          entries with both words
      '"flaky test"'      the words in this order
      deploy*             any word starting with deploy
      redis OR memcached  either word
      -- -staging         without this word (`--` first, or the shell's
                          dash reads as an option)
      title:router        only in titles (also tags:, body:)
    """
    from cmux.ops import journal

    text = " ".join(query)
    if as_json:
        hits = journal.search(_data(), text, limit=limit, agent=agent)
        ui.print_json([h.to_dict() for h in hits])
        return
    hits = journal.search(_data(), text, limit=limit, agent=agent, marks=(_ON, _OFF))
    if not hits:
        ui.out(f"no journal entry matches {text!r}")
        return
    _print_hits(hits)


def _heading(date: str, time: str, agent: str, title: str) -> Text:
    from rich.text import Text

    return Text.assemble(
        (one_line(f"{date} {time or '--:--:--'}"), "cyan"),
        "  ",
        (one_line(agent), "magenta"),
        "  ",
        (one_line(title), "bold"),
    )


def _print_hits(hits: list[Hit]) -> None:
    console = ui.console(highlight=False, soft_wrap=True)
    for h in hits:
        line = _heading(h.date, h.time, h.agent, h.title)
        if h.tags:
            line.append(one_line(f"  [{', '.join(h.tags)}]"), style="dim")
        console.print(line)
        if h.snippet.strip():
            console.print(_highlight(h.snippet))
        console.print(f"    {_shown_path(h.file)}:{h.line}", style="dim")


@journal_group.command("recent")
@click.option(
    "--days",
    "-d",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="How many days back.",
)
@click.option("--agent", metavar="NAME", help="Only entries written by NAME.")
@click.option("--full", is_flag=True, help="Whole bodies, not the first lines.")
@click.option("--json", "as_json", is_flag=True, help="Print the entries as JSON.")
def recent_cmd(
    days: int = 1, agent: str | None = None, full: bool = False, as_json: bool = False
) -> None:
    """The entries of the last N days (today included), oldest first."""
    from cmux.ops import journal

    entries = journal.recent(_data(), days=days, agent=agent)
    if as_json:
        ui.print_json([e.to_dict() for e in entries])
        return
    if not entries:
        when = "today" if days == 1 else f"in the last {days} days"
        ui.out(f"no journal entries {when}; `cmux journal recent --days 30` looks further back")
        return
    _print_entries(entries, full=full)


def _print_entries(entries: list[Entry], *, full: bool, lines: int = 6) -> None:
    console = ui.console(highlight=False, soft_wrap=True)
    for e in entries:
        console.print(_heading(e.date, e.time, e.agent, e.title))
        if e.tags:
            console.print(f"tags: {', '.join(e.tags)}", style="dim")
        body = e.body.split("\n") if e.body else []
        if not full and len(body) > lines:
            more = len(body) - lines
            body = [*body[:lines], f"… ({more} more lines: cmux journal show {e.date})"]
        for line in body:
            console.print("    " + line)
        console.print()


@journal_group.command("show", short_help="Print a day's file.")
@click.argument("date", default="today")
@click.option("--json", "as_json", is_flag=True, help="Print the day's entries as JSON.")
def show_cmd(date: str, as_json: bool) -> None:
    """Print a day's file: DATE is YYYY-MM-DD, today, yesterday or -N days ago."""
    from cmux.ops import journal

    shown = journal.show(_data(), date)
    if shown.text is None:
        if as_json:
            ui.print_json([])
            return
        days = shown.latest_days()
        hint = f"; the latest days with entries: {', '.join(days)}" if days else ""
        ui.out(f"no journal entries on {shown.day}{hint}")
        return
    if as_json:
        ui.print_json([e.to_dict() for e in shown.entries()])
    else:
        text = shown.text
        ui.write(text if text.endswith("\n") else text + "\n")


@journal_group.command("remember", short_help="Add a fact to MEMORY.md for every agent.")
@click.argument("text", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def remember_cmd(text: tuple[str, ...], as_json: bool) -> None:
    """Add a one-line fact to MEMORY.md, which every agent is started with.

    Past 4 KB or 60 lines the oldest facts are dropped and written to the
    journal (tag "memory"), so nothing is lost.
    """
    from cmux.inputs import arg_text
    from cmux.ops import journal

    identity.require_person(load_config(), "sign the journal as human")
    r = journal.remember(_data(), arg_text(" ".join(text), "the fact"), agent=HUMAN)
    if as_json:
        ui.print_json(r.to_dict())
        return
    ui.out(f"remembered: {r.fact}" if r.added else f"already remembered: {r.fact}")
    if r.dropped:
        ui.out(
            f"MEMORY.md was full: dropped the {len(r.dropped)} oldest fact(s), kept in the journal:"
        )
        for d in r.dropped:
            ui.out(f"  - {d}")


@journal_group.command("memory", short_help="Print MEMORY.md.")
@click.option("--json", "as_json", is_flag=True, help="The facts as JSON.")
def memory_cmd(as_json: bool) -> None:
    """Print MEMORY.md (edit the file itself to change or remove facts)."""
    from cmux.ops import journal

    mem = journal.memory(_data())
    text = mem["text"]
    if as_json:
        ui.print_json(mem)
    elif text:
        ui.write(text if text.endswith("\n") else text + "\n")
    else:
        ui.out('MEMORY.md is empty; add a fact with `cmux journal remember "..."`')


@journal_group.command("context", short_help="Print what a new supervisor session is told.")
@click.option(
    "--budget",
    type=click.IntRange(min=1),
    default=12000,
    show_default=True,
    help="Characters at most.",
)
def context_cmd(budget: int) -> None:
    """Print what a new supervisor session is started with (MEMORY.md, latest entries)."""
    from cmux.ops import journal

    ui.write(journal.context(_data(), budget=budget))


@journal_group.command("reindex")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def reindex_cmd(as_json: bool) -> None:
    """Throw the search index away and rebuild it from the files.

    Searches keep the index in step by themselves (a hand edit, a new or a
    deleted file is picked up); this is for measuring or after a scare.
    """
    from cmux.ops import journal

    data = _data()
    stats = journal.reindex(data)
    if as_json:
        ui.print_json(stats.to_dict())
    else:
        ui.out(
            f"rebuilt {data.index_db}: {stats.entries_indexed} entries from "
            f"{stats.files_indexed} files in {stats.seconds:.2f}s"
        )
