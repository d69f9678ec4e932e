"""Journal operations: add, search, recent, show, remember, memory, context.

What `cmux journal` and tools/journal share: the body given once (``--body``
or a second argument, '-' reads stdin), tags from the command line, the day
file looked up for ``show``. The author is established by the front end
(cmux/identity.py) and passed in. journal/README.md is the on-disk format.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cmux.journal.index import Hit, SyncStats
    from cmux.journal.store import Entry, Remembered
    from cmux.paths import DataRoot


def body_text(body: str | None, body_arg: str | None) -> str:
    """The entry's body from ``--body`` or the second argument (not both;
    neither is an empty body); '-' reads standard input."""
    from cmux.errors import UsageError
    from cmux.inputs import text_or_stdin

    given = [b for b in (body, body_arg) if b is not None]
    if len(given) > 1:
        raise UsageError("give the body once: either --body TEXT or a second argument")
    return text_or_stdin(given[0] if given else "", "the body")


def tags(values: Sequence[str] | None) -> list[str]:
    """Tags from one or more ``--tags a,b`` (also ``a b``, ``#a #b``)."""
    from cmux.inputs import arg_text
    from cmux.journal import store

    return store.parse_tags(arg_text(",".join(values), "the tags")) if values else []


def add(data: DataRoot, *, agent: str, title: str, body: str, tags: list[str]) -> Entry:
    """Append an entry signed ``agent`` to today's file."""
    from cmux.journal import store

    return store.add_entry(data, agent=agent, title=title, body=body, tags=tags)


def search(
    data: DataRoot,
    query: str,
    *,
    limit: int = 10,
    agent: str | None = None,
    marks: tuple[str, str] = ("**", "**"),
) -> list[Hit]:
    """Full-text hits, best first; ``marks`` put around the matches in snippets."""
    from cmux.journal import index

    return index.search(data, query, limit=limit, agent=agent, marks=marks)


def recent(data: DataRoot, *, days: int = 1, agent: str | None = None) -> list[Entry]:
    """The entries of the last ``days`` days (today included), oldest first."""
    from cmux.journal import store

    entries = store.recent(data, days=days)
    if agent:
        entries = [e for e in entries if e.agent == agent]
    return entries


@dataclass
class Day:
    """One day's file: ``text`` is None when the day has no file."""

    data: DataRoot
    day: str
    path: Path
    text: str | None

    def entries(self) -> list[Entry]:
        from cmux.journal import store

        if self.text is None:
            return []
        return store.parse_text(self.text, date=self.day, file=str(self.path))

    def latest_days(self, n: int = 5) -> list[str]:
        """The last ``n`` days that have a file (what to suggest instead)."""
        from cmux.journal import store

        return [p.stem for p in store.daily_files(self.data)][-n:]


def show(data: DataRoot, date: str) -> Day:
    """The file of ``date``: YYYY-MM-DD, today, yesterday or -N days ago."""
    from cmux.journal import store

    day = store.parse_day(date)
    path = store.day_file(data, day)
    try:
        text: str | None = store.read_text(path)
    except FileNotFoundError:
        text = None
    return Day(data, day, path, text)


def remember(data: DataRoot, fact: str, *, agent: str) -> Remembered:
    """Add a one-line fact to MEMORY.md (the oldest dropped into the journal
    past its budget)."""
    from cmux.journal import store

    return store.remember(data, fact, agent=agent)


def memory(data: DataRoot) -> dict[str, Any]:
    """MEMORY.md: ``file``, its ``facts`` and its whole ``text``."""
    from cmux.journal import store

    text = store.memory(data)
    return {"file": str(data.memory_file), "facts": store.facts(text), "text": text}


def context(data: DataRoot, *, budget: int = 12000) -> str:
    """What a new supervisor session is started with (MEMORY.md, latest entries)."""
    from cmux.journal.context import start_context

    return start_context(data, budget_chars=budget)


def reindex(data: DataRoot) -> SyncStats:
    """Throw the search index away and rebuild it from the files."""
    from cmux.journal import index

    return index.rebuild(data)
