"""What a fresh agent session is told about the past: MEMORY.md and the latest entries.

The supervisor's context file and Claude Code's SessionStart hook print
``start_context``; it fits in ``budget_chars`` whatever the journal holds. The
facts of MEMORY.md come first (at most half the budget), then the most recent
entries, newest first, each clipped so one long entry cannot crowd out the
rest, and a line on how to find what did not fit. The journal is text
anyone may have written: what comes out is sanitized (no escape sequences,
no control characters), since it is printed to a pane or a terminal.
"""

from __future__ import annotations

import re

from cmux.journal import store
from cmux.paths import DataRoot
from cmux.text import sanitize

# Entries older than this many daily files are not looked at.
MAX_FILES = 30
ENTRY_MAX_CHARS = 1500
_COMMENT = re.compile(r"<!--.*?-->\n?", re.DOTALL)

TITLE = "# What cmux remembers"
FOOTER = (
    "\nOlder entries: `journal search WORDS` finds them; `journal recent --days 7` "
    "and `journal show YYYY-MM-DD` list them.\n"
)
EMPTY = "The journal is empty: nothing was recorded before this session.\n"


def start_context(data: DataRoot, *, budget_chars: int = 12000) -> str:
    """MEMORY.md then the most recent entries (newest first), within ``budget_chars``."""
    parts = [TITLE + "\n"]
    used = len(parts[0])
    facts = _memory_text(data)
    if facts:
        section = _clip(
            "\n## Memory (journal/MEMORY.md)\n\n" + facts + "\n",
            max(0, budget_chars // 2 - used),
            "…(MEMORY.md is longer; read it with `journal memory`)\n",
        )
        parts.append(section)
        used += len(section)
    entries, more = _recent(data, budget_chars - used - len(FOOTER))
    if entries:
        parts.append(entries)
    if more:
        parts.append(FOOTER)
    if not facts and not entries:
        parts.append("\n" + EMPTY)
    text = sanitize("".join(parts))  # only ever shorter: the budget still holds
    return text if len(text) <= budget_chars else text[: max(0, budget_chars - 1)] + "…"


def _memory_text(data: DataRoot) -> str:
    text = _COMMENT.sub("", store.memory(data))
    lines = text.strip("\n").split("\n")
    if lines and lines[0].startswith("# "):
        lines = lines[1:]
    return "\n".join(lines).strip("\n")


def _recent(data: DataRoot, budget: int) -> tuple[str, bool]:
    """As many recent entries as fit in ``budget``; and whether any were left out."""
    head = "\n## Recent journal entries (newest first)\n"
    if budget <= len(head):
        return "", any(True for _ in store.newest_first(data, max_files=1))
    out = [head]
    left = budget - len(head)
    shown = 0
    for entry in store.newest_first(data, max_files=MAX_FILES):
        block = "\n" + _render(entry)
        if len(block) > left:
            # Clip the entry that does not fit rather than skip it, when a
            # clipped version still says something.
            if left >= 200:
                out.append(_clip(block, left, "…\n"))
                shown += 1
            return ("".join(out) if shown else ""), True
        out.append(block)
        left -= len(block)
        shown += 1
    return ("".join(out) if shown else ""), False


def _render(entry: store.Entry) -> str:
    text = entry.to_markdown(level=3, with_date=True)
    where = f"journal show {entry.date}"
    return _clip(text, ENTRY_MAX_CHARS, f"…(clipped; `{where}` has it all)\n")


def _clip(text: str, limit: int, marker: str) -> str:
    if len(text) <= limit:
        return text
    if limit <= len(marker):
        return text[:limit]
    cut = text[: limit - len(marker)]
    nl = cut.rfind("\n")
    if nl > len(cut) // 2:
        cut = cut[: nl + 1]
    return cut + marker
