"""The journal: cmux's long-term memory, in markdown a person can read and edit.

``store`` owns the files (``journal/YYYY-MM-DD.md`` and ``journal/MEMORY.md``):
appending entries safely from many processes, parsing them back (hand-written
text included), and the short list of facts every agent starts with.
``index`` is the SQLite FTS5 search index derived from the files
(``state/index.db``: delete it and it is rebuilt). ``context`` builds what a
fresh supervisor session is started with. docs/JOURNAL.md describes the format.

This package imports nothing heavy: ``tools/journal`` runs it many times a
minute.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cmux.journal.store import Entry
    from cmux.paths import DataRoot

log = logging.getLogger(__name__)


def note(
    data: DataRoot,
    *,
    agent: str,
    title: str,
    body: str = "",
    tags: list[str] | None = None,
) -> Entry | None:
    """Write an entry on cmux's own behalf, never failing the caller.

    For the events cmux records itself (a spawn, a report, a kill, a crash, a
    rollback): losing one such entry to a full disk must not stop what
    caused it. Returns the entry, or None when it could not be written (the
    reason is logged).
    """
    from cmux.journal import store

    try:
        return store.add_entry(data, agent=agent, title=title, body=body, tags=tags)
    except Exception:
        log.exception("could not write the journal entry %r", title)
        return None
