"""The journal's markdown files: append, parse, and MEMORY.md.

A daily file ``journal/YYYY-MM-DD.md`` holds the day's entries in the order
they were written::

    # 2026-11-21

    ## 14:03:22 · w1 · Fixed the flaky test
    tags: tests, ci

    What was done, why, key decisions, issues encountered (a suggested
    shape, not a rule).

Every line that starts with ``## `` begins an entry, so a body line that
would look like one is escaped when it is written (``## Why`` becomes
``### Why``; inside a code fence it is indented by one space). What a person
writes by hand is kept as it is: text before the first heading, or a heading
without time and agent, becomes an entry of agent ``?``.

Appends from concurrent processes take an exclusive lock and write the whole
entry with one write(2), so entries never interleave or tear; a failed write
is cut back off, leaving the file as it was.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import date as Date
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cmux.errors import StorageError, UsageError
from cmux.fsutil import atomic_write, locked
from cmux.paths import DataRoot

UNKNOWN_AGENT = "?"
SEP = " · "
TITLE_MAX = 200
FACT_MAX = 400
MEMORY_MAX_BYTES = 4096
MEMORY_MAX_LINES = 60

DAILY_NAME = re.compile(r"^(\d{4}-\d{2}-\d{2})\.md$")
# Any line starting "##" then a space (or nothing) opens an entry; "###" does not.
HEADING = re.compile(r"^##(?:[ \t]+(?P<rest>.*?))?[ \t]*$")
_TIME = r"(?P<time>\d{1,2}:\d{2}(?::\d{2})?)"
_SEP = r"(?:[ \t]*[·|][ \t]*|[ \t]+[-–—][ \t]+)"
FULL_HEADING = re.compile(rf"^{_TIME}{_SEP}(?P<agent>[^\s·|]+){_SEP}(?P<title>.*)$")
TIME_HEADING = re.compile(rf"^{_TIME}(?:{_SEP}|[ \t]+|$)(?P<title>.*)$")
TAGS_LINE = re.compile(r"^tags:[ \t]*(?P<tags>.*)$", re.IGNORECASE)
FILE_HEADER = re.compile(r"^# \d{4}-\d{2}-\d{2}[ \t]*$")
FENCE = re.compile(r"^[ ]{0,3}(```|~~~)")

# Escape sequences (CSI, OSC, and two-byte ESC forms), then any other control
# character except tab and newline.
_ESCAPES = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])")
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


@dataclass
class Entry:
    """One journal entry, as written or as found in a file."""

    date: str
    time: str
    agent: str
    title: str
    tags: list[str] = field(default_factory=list)
    body: str = ""
    file: str = ""
    line: int = 0

    @property
    def heading(self) -> str:
        parts = [p for p in (self.time, self.agent, self.title) if p]
        return SEP.join(parts)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_markdown(self, *, level: int = 2, with_date: bool = False) -> str:
        """The entry as markdown (``with_date`` for a list spanning days)."""
        when = f"{self.date} {self.time}".strip() if with_date else self.time
        head = SEP.join(p for p in (when, self.agent, self.title) if p)
        lines = [f"{'#' * level} {head}"]
        if self.tags:
            lines.append("tags: " + ", ".join(self.tags))
        if self.body:
            lines += ["", self.body]
        return "\n".join(lines) + "\n"


# -- cleaning what is written -------------------------------------------------------


def clean(text: str) -> str:
    """Strip escape sequences and control characters; keep newlines and tabs."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _CONTROLS.sub("", _ESCAPES.sub("", text))


def clean_title(title: str) -> str:
    one_line = " ".join(clean(title).split())
    if len(one_line) > TITLE_MAX:
        one_line = one_line[: TITLE_MAX - 1].rstrip() + "…"
    return one_line


def clean_agent(agent: str) -> str:
    name = re.sub(r"[\s·|]+", "-", clean(agent)).strip("-")
    return name or UNKNOWN_AGENT


def clean_tags(tags: list[str] | None) -> list[str]:
    out: list[str] = []
    for raw in tags or []:
        for piece in clean(raw).split(","):
            tag = "-".join(piece.strip().lstrip("#").split())
            if tag and tag not in out:
                out.append(tag)
    return out


def parse_tags(text: str) -> list[str]:
    """Tags from a command line: ``a,b`` or ``a, b`` or ``#a #b``."""
    return clean_tags(re.split(r"[,\s]+", text))


def clean_body(body: str) -> str:
    """Clean a body and escape the lines that would read as entry headings."""
    lines = clean(body).split("\n")
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    fence: str | None = None
    out = []
    for line in lines:
        m = FENCE.match(line)
        if m:
            if fence is None:
                fence = m.group(1)
            elif m.group(1) == fence:
                fence = None
        if HEADING.match(line):
            # Outside code a sub-heading keeps its look one level down; inside
            # a fence one space keeps the code readable. Either way the parser
            # no longer sees an entry heading.
            line = " " + line if fence else "#" + line
        out.append(line)
    return "\n".join(out)


# -- the daily files ------------------------------------------------------------------


def day_file(data: DataRoot, day: str | Date) -> Path:
    return data.journal_dir / f"{_day_str(day)}.md"


def _day_str(day: str | Date) -> str:
    return day.isoformat() if isinstance(day, Date) else day


def daily_files(data: DataRoot) -> list[Path]:
    """The daily files, oldest first (other files in journal/ are not entries;
    nor is a symlink: cmux never makes one, and one could point the journal
    at a file outside the data root)."""
    try:
        names = [
            e.name
            for e in os.scandir(data.journal_dir)
            if DAILY_NAME.match(e.name) and not e.is_symlink()
        ]
    except FileNotFoundError:
        return []
    return [data.journal_dir / n for n in sorted(names)]


def parse_day(value: str, *, today: Date | None = None) -> str:
    """``YYYY-MM-DD``, ``today``, ``yesterday`` or ``-N`` (N days ago) as a date."""
    today = today or Date.today()
    v = value.strip().lower()
    if v in ("", "today"):
        return today.isoformat()
    if v == "yesterday":
        return (today - timedelta(days=1)).isoformat()
    if re.fullmatch(r"-\d{1,4}", v):
        return (today - timedelta(days=int(v[1:]))).isoformat()
    try:
        return Date.fromisoformat(v).isoformat()
    except ValueError:
        raise UsageError(
            f"not a date: {value!r}", "give YYYY-MM-DD, today, yesterday or -N (days ago)"
        ) from None


def parse_text(text: str, *, date: str, file: str = "") -> list[Entry]:
    """Every entry in the text of a daily file, hand-written ones included."""
    lines = text.removeprefix("\ufeff").replace("\r\n", "\n").split("\n")
    entries: list[Entry] = []
    start = 1 if lines and FILE_HEADER.match(lines[0]) else 0
    head: re.Match[str] | None = None
    head_line = start
    block: list[str] = []

    def flush() -> None:
        if head is None:
            if any(s.strip() for s in block):
                entries.append(_headless(block, date, file, head_line + 1))
        else:
            entries.append(_entry(head, block, date, file, head_line + 1))

    for i in range(start, len(lines)):
        m = HEADING.match(lines[i]) if lines[i].startswith("##") else None
        if m:
            flush()
            head, head_line, block = m, i, []
        else:
            block.append(lines[i])
    flush()
    return entries


def _entry(head: re.Match[str], block: list[str], date: str, file: str, line: int) -> Entry:
    rest = (head.group("rest") or "").strip()
    time, agent, title = "", UNKNOWN_AGENT, rest
    m = FULL_HEADING.match(rest)
    if m:
        time, agent, title = m.group("time"), m.group("agent"), m.group("title").strip()
    else:
        t = TIME_HEADING.match(rest)
        if t:
            time, title = t.group("time"), t.group("title").strip()
    tags: list[str] = []
    if block:
        tm = TAGS_LINE.match(block[0])
        if tm:
            tags = clean_tags(tm.group("tags").split(","))
            block = block[1:]
    return Entry(
        date=date,
        time=time,
        agent=agent,
        title=title or "(untitled)",
        tags=tags,
        body=_trim(block),
        file=file,
        line=line,
    )


def _headless(block: list[str], date: str, file: str, line: int) -> Entry:
    """Text written by hand with no entry heading above it: kept, agent ``?``."""
    first = next(i for i, s in enumerate(block) if s.strip())
    title = clean_title(block[first].lstrip("#").strip()) or "(untitled)"
    if len(title) > 80:
        title = title[:79].rstrip() + "…"
    return Entry(
        date=date,
        time="",
        agent=UNKNOWN_AGENT,
        title=title,
        body=_trim(block),
        file=file,
        line=line + first,
    )


def _trim(block: list[str]) -> str:
    lo, hi = 0, len(block)
    while lo < hi and not block[lo].strip():
        lo += 1
    while hi > lo and not block[hi - 1].strip():
        hi -= 1
    return "\n".join(block[lo:hi])


def read_text(path: Path) -> str:
    """A journal file's text; bytes that are not UTF-8 are replaced, not fatal."""
    return path.read_bytes().decode("utf-8", errors="replace")


def parse_file(path: Path) -> list[Entry]:
    m = DAILY_NAME.match(path.name)
    day = m.group(1) if m else ""
    return parse_text(read_text(path), date=day, file=str(path))


def parse_file_settled(data: DataRoot, path: Path) -> list[Entry]:
    """A daily file's entries read under the journal lock, so never an entry
    half-appended by cmux (nor one being cut back after a failed write)."""
    with locked(_lock(data)):
        return parse_file(path)


def entries_for_day(data: DataRoot, day: str | Date) -> list[Entry]:
    path = day_file(data, day)
    try:
        return parse_file(path)
    except FileNotFoundError:
        return []


def recent(data: DataRoot, *, days: int = 1, today: Date | None = None) -> list[Entry]:
    """Entries of the last ``days`` days (today included), oldest first."""
    if days < 1:
        raise UsageError("--days must be 1 or more")
    first = ((today or Date.today()) - timedelta(days=days - 1)).isoformat()
    out: list[Entry] = []
    for path in daily_files(data):
        if path.stem >= first:
            out.extend(parse_file(path))
    return out


def newest_first(data: DataRoot, *, max_files: int | None = None) -> Iterator[Entry]:
    """Entries from the newest backwards, reading one daily file at a time."""
    files = daily_files(data)[::-1]
    for path in files[:max_files] if max_files else files:
        try:
            yield from reversed(parse_file(path))
        except FileNotFoundError:
            continue


# -- appending ------------------------------------------------------------------------


def _lock(data: DataRoot) -> Path:
    return data.run_dir / "journal.lock"


def add_entry(
    data: DataRoot,
    *,
    agent: str,
    title: str,
    body: str = "",
    tags: list[str] | None = None,
    when: datetime | None = None,
) -> Entry:
    """Append an entry to the day's file, safely alongside other processes.

    Control characters are stripped; a body line that looks like an entry
    heading is escaped (see the module's docstring). Raises UsageError for an
    empty title and StorageError when the disk refuses the write, in which
    case the file is left exactly as it was.
    """
    title_text = clean_title(title)
    if not title_text:
        raise UsageError(
            "a journal entry needs a title",
            'say in a few words what happened: journal add "fixed the flaky test" --body "..."',
        )
    if when is None:
        when = datetime.now()
    elif when.tzinfo is not None:
        when = when.astimezone()  # the local day and time, as a person reads them
    entry = Entry(
        date=when.date().isoformat(),
        time=when.strftime("%H:%M:%S"),
        agent=clean_agent(agent),
        title=title_text,
        tags=clean_tags(tags),
        body=clean_body(body),
    )
    path = day_file(data, entry.date)
    entry.file = str(path)
    block = entry.to_markdown()
    path.parent.mkdir(parents=True, exist_ok=True)
    with locked(_lock(data)):
        entry.line = _append(path, block, header=f"# {entry.date}\n\n")
    return entry


def entry_id(entry: Entry) -> str:
    """A stable id of an entry's content (date, time, agent, title, tags, body).

    The same entry parsed on any host, any number of times, has the same id;
    an entry edited by hand gets a new one. Not its file or line.
    """
    fields = [entry.date, entry.time, entry.agent, entry.title, entry.tags, entry.body]
    raw = json.dumps(fields, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()[:32]


def heading_key(entry: Entry) -> tuple[str, str, str, str] | None:
    """What names an entry across its edits: its day, time, agent and title.

    Only an entry with a full heading has one (``HH:MM[:SS] · agent ·
    title``, as cmux writes them): an edit of its tags or body keeps it, so
    the edit replaces the entry on the other hosts (cmux/cluster/journal.py).
    An edit of the heading makes another entry. One written by hand without
    time or agent has none: two hosts' ``## Notes`` of one day are two entries.
    """
    if not entry.time or entry.agent == UNKNOWN_AGENT:
        return None
    return (entry.date, entry.time, entry.agent, entry.title)


def occurrences(entries: list[Entry]) -> list[int]:
    """For each entry, how many before it in ``entries`` have its heading key
    (0 for the first, and for an entry without a key): with the key, which
    one of a day's same-headed entries it is."""
    seen: dict[tuple[str, str, str, str], int] = {}
    out = []
    for e in entries:
        k = heading_key(e)
        n = seen.get(k, 0) if k else 0
        if k:
            seen[k] = n + 1
        out.append(n)
    return out


def render(entry: Entry) -> str:
    """The entry as a block of a daily file, parsed back as the same entry
    (a hand-written one without time or agent keeps its bare heading)."""
    if not entry.time and entry.agent == UNKNOWN_AGENT:
        entry = Entry(entry.date, "", "", entry.title, entry.tags, entry.body)
    return entry.to_markdown()


def append_entry(data: DataRoot, entry: Entry) -> tuple[Entry, bool]:
    """Append an entry made elsewhere (another host's) to its day's file, once.

    Its fields are cleaned as :func:`add_entry` cleans them. Under the
    journal lock: when the day's file already holds exactly this block (an
    append whose caller died before it noted it), nothing is written.
    Returns the entry as written, with its file and line, and whether it was
    appended now.
    """
    if not DAILY_NAME.match(f"{entry.date}.md"):
        raise UsageError(f"not a journal date: {entry.date!r}")
    e = cleaned(entry)
    path = day_file(data, e.date)
    e.file = str(path)
    block = render(e)
    path.parent.mkdir(parents=True, exist_ok=True)
    with locked(_lock(data)):
        try:
            text = read_text(path)
        except FileNotFoundError:
            text = ""
        at = text.find("\n" + block)
        if at >= 0 and (at + 1 + len(block) == len(text) or text[at + 1 + len(block)] == "\n"):
            e.line = text.count("\n", 0, at + 1) + 1
            return e, False
        e.line = _append(path, block, header=f"# {e.date}\n\n")
    return e, True


def put_entry(data: DataRoot, entry: Entry, nth: int = 0) -> tuple[Entry, str]:
    """Another host's entry into its day's file: a new version of one held
    here (the ``nth`` entry of its :func:`heading_key`, whose tags or body
    differ) replaces it in place; else as :func:`append_entry`. Under the
    journal lock; a replacement rewrites the file atomically (fsynced).
    Returns the entry as written and "replaced", "appended" or "had"."""
    if not DAILY_NAME.match(f"{entry.date}.md"):
        raise UsageError(f"not a journal date: {entry.date!r}")
    e = cleaned(entry)
    key = heading_key(as_written(e))
    if key is None:
        e, appended = append_entry(data, entry)
        return e, "appended" if appended else "had"
    path = day_file(data, e.date)
    e.file = str(path)
    with locked(_lock(data)):
        try:
            text = read_text(path)
        except FileNotFoundError:
            text = ""
        held = parse_text(text, date=e.date)
        same = [(i, h) for i, h in enumerate(held) if heading_key(h) == key]
        if nth < len(same):
            i, old = same[nth]
            e.line = old.line
            if entry_id(old) == entry_id(as_written(e)):
                return e, "had"
            lines = text.split("\n")
            start = old.line - 1
            end = held[i + 1].line - 1 if i + 1 < len(held) else len(lines)
            block = render(e).rstrip("\n").split("\n")
            rest = ["", *lines[end:]] if end < len(lines) else [""]
            try:
                atomic_write(path, "\n".join(lines[:start] + block + rest), durable=True)
            except OSError as exc:
                raise _disk_error(path, exc) from exc
            return e, "replaced"
    e, appended = append_entry(data, entry)
    return e, "appended" if appended else "had"


def remove_entry(data: DataRoot, day: str, entry_id_: str) -> bool:
    """Remove the entry of ``day`` whose content id is ``entry_id_`` (one
    deleted on another host), under the journal lock, the file rewritten
    atomically (fsynced). Only that exact version goes: an entry edited here
    since is kept. Whether one was removed."""
    if not DAILY_NAME.match(f"{day}.md"):
        raise UsageError(f"not a journal date: {day!r}")
    path = day_file(data, day)
    with locked(_lock(data)):
        try:
            text = read_text(path)
        except FileNotFoundError:
            return False
        held = parse_text(text, date=day)
        at = next((i for i, h in enumerate(held) if entry_id(h) == entry_id_), None)
        if at is None:
            return False
        lines = text.split("\n")
        start = held[at].line - 1
        if not (0 <= start < len(lines) and lines[start].startswith("##")):
            return False  # text above the first heading: no block of its own to cut
        end = held[at + 1].line - 1 if at + 1 < len(held) else len(lines)
        kept = lines[:start] + lines[end:]
        try:
            atomic_write(path, "\n".join(kept).rstrip("\n") + "\n", durable=True)
        except OSError as exc:
            raise _disk_error(path, exc) from exc
        return True


def cleaned(entry: Entry) -> Entry:
    """The entry as :func:`append_entry` writes it (no file or line yet)."""
    return Entry(
        date=entry.date,
        time=entry.time if _TIME_ONLY.match(entry.time) else "",
        agent=clean_agent(entry.agent),
        title=clean_title(entry.title) or "(untitled)",
        tags=clean_tags(entry.tags),
        body=clean_body(entry.body),
    )


def as_written(entry: Entry) -> Entry:
    """The entry as a daily file holding :func:`append_entry`'s block reads it back."""
    e = cleaned(entry)
    parsed = parse_text(render(e), date=e.date)
    return parsed[0] if parsed else e


_TIME_ONLY = re.compile(rf"^{_TIME}$")


def _append(path: Path, block: str, *, header: str) -> int:
    """Write ``block`` after a blank line with one write(2); return its first line.

    The caller holds the journal lock. On any failure the file is truncated
    back to its old size.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
    except OSError as exc:
        raise _disk_error(path, exc) from exc
    try:
        size = os.fstat(fd).st_size
        if size == 0:
            prefix, before = header, header.count("\n")
        else:
            old = os.pread(fd, size, 0)
            tail = old[-2:]
            prefix = "" if tail == b"\n\n" else ("\n" if tail.endswith(b"\n") else "\n\n")
            before = old.count(b"\n") + prefix.count("\n")
        raw = (prefix + block).encode("utf-8")
        try:
            written = os.write(fd, raw)
            if written != len(raw):
                raise OSError(errno.ENOSPC, "short write")
            os.fsync(fd)
        except OSError as exc:
            try:
                os.ftruncate(fd, size)
            except OSError:
                pass
            raise _disk_error(path, exc) from exc
        return before + 1
    finally:
        os.close(fd)


def _disk_error(path: Path, exc: OSError) -> StorageError:
    if exc.errno == errno.ENOSPC:
        return StorageError(
            f"the disk is full: the journal entry was not written to {path}",
            "free some space and add it again; the journal file was left as it was",
        )
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return StorageError(f"cannot write {path}: {exc.strerror}", "check the permissions")
    return StorageError(f"cannot write {path}: {exc.strerror or exc}")


# -- MEMORY.md ------------------------------------------------------------------------

MEMORY_HEADER = f"""\
# Memory

<!-- Facts every cmux agent is started with, one line each, oldest first.
Add one with `journal remember "fact"`, or edit this file by hand.
Past {MEMORY_MAX_BYTES} bytes or {MEMORY_MAX_LINES} lines the oldest facts are dropped to make room;
the journal keeps each dropped fact in an entry tagged "memory". -->

"""
FACT = re.compile(r"^[-*+][ \t]+")


@dataclass
class Remembered:
    """What ``remember`` did: the fact as stored and anything it pushed out."""

    fact: str
    added: bool
    dropped: list[str] = field(default_factory=list)
    size: int = 0
    lines: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def memory(data: DataRoot) -> str:
    """The text of MEMORY.md ('' when there is none)."""
    try:
        return read_text(data.memory_file)
    except FileNotFoundError:
        return ""


def facts(text: str) -> list[str]:
    """The facts (top-level list items) of a MEMORY.md text, without their marker."""
    return [FACT.sub("", line).strip() for line in text.split("\n") if FACT.match(line)]


def remember(data: DataRoot, text: str, *, agent: str, when: datetime | None = None) -> Remembered:
    """Add a fact to MEMORY.md, keeping the file under its budget.

    A fact is one line. When the file would grow past MEMORY_MAX_BYTES or
    MEMORY_MAX_LINES, the oldest facts are dropped (and written to the journal
    so nothing is lost); if the file's own prose is over budget with no fact
    left to drop, it refuses. The same fact twice is stored once.
    """
    fact = " ".join(clean(text).split())
    if not fact:
        raise UsageError("nothing to remember", 'journal remember "tests need TZ=UTC"')
    if len(fact) > FACT_MAX:
        raise UsageError(
            f"a fact is one short line (at most {FACT_MAX} characters, this is {len(fact)})",
            'put the long version in the journal with `journal add "title" --body "..."` '
            "and remember the gist",
        )
    who = clean_agent(agent)
    day = (when or datetime.now()).date().isoformat()
    return _store_fact(data, fact, f"{fact} ({who}, {day})", who)


STORED_FACT = re.compile(r"^(?P<fact>.+) \((?P<who>[^\s·|(),]+), \d{4}-\d{2}-\d{2}\)$")


def remember_stored(data: DataRoot, stored: str) -> Remembered:
    """A fact as another host's MEMORY.md holds it (``fact (who, day)``, as
    :func:`remember` writes it) into this host's, once, under the same
    budget. Raises UsageError for a line that is no such fact."""
    line = " ".join(clean(stored).split())
    m = STORED_FACT.match(line)
    if not m or len(m.group("fact")) > FACT_MAX:
        raise UsageError(f"not a fact as MEMORY.md stores one: {stored[:80]!r}")
    return _store_fact(data, m.group("fact"), line, m.group("who"))


def _store_fact(data: DataRoot, fact: str, stored: str, who: str) -> Remembered:
    path = data.memory_file
    with locked(data.run_dir / "memory.lock"):
        current = memory(data) or MEMORY_HEADER
        for existing in facts(current):
            if existing == fact or existing.startswith(fact + " ("):
                return Remembered(existing, False, [], *_measure(current))
        lines = [*current.rstrip("\n").split("\n"), f"- {stored}"]
        dropped: list[str] = []
        while _over_budget(lines):
            i = _oldest_fact(lines)
            if i is None or i == len(lines) - 1:
                raise UsageError(
                    f"{path} is over its budget ({MEMORY_MAX_BYTES} bytes, "
                    f"{MEMORY_MAX_LINES} lines) without any fact left to drop",
                    "shorten the file's own text by hand, then remember again",
                )
            end = i + 1
            while end < len(lines) - 1 and lines[end][:1] in (" ", "\t") and lines[end].strip():
                end += 1
            dropped.append(FACT.sub("", lines[i]).strip())
            del lines[i:end]
        new = "\n".join(lines) + "\n"
        atomic_write(path, new)
    if dropped:
        add_entry(
            data,
            agent=who,
            title=f"dropped {len(dropped)} fact(s) from MEMORY.md to make room",
            body="\n".join(f"- {d}" for d in dropped),
            tags=["memory"],
        )
    return Remembered(stored, True, dropped, *_measure(new))


def _measure(text: str) -> tuple[int, int]:
    return len(text.encode("utf-8")), text.rstrip("\n").count("\n") + 1


def _over_budget(lines: list[str]) -> bool:
    text = "\n".join(lines) + "\n"
    return len(text.encode("utf-8")) > MEMORY_MAX_BYTES or len(lines) > MEMORY_MAX_LINES


def _oldest_fact(lines: list[str]) -> int | None:
    for i, line in enumerate(lines):
        if FACT.match(line):
            return i
    return None
