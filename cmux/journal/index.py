"""The journal's search index: SQLite FTS5 in ``state/index.db``, derived from the files.

The markdown files are the truth; the index only mirrors them. Before every
search it is brought up to date incrementally. One ``stat`` per daily file
(size, mtime, inode) is hashed and compared with the hash stored at the last
sync: when nothing changed, nothing is read. Otherwise only the files that
changed are parsed again, and a deleted file's entries are dropped. A file
modified within the last couple of seconds is indexed but not trusted, so a
quick hand edit that keeps the size and lands in the same clock tick is
still seen by the next search. An index that is missing, corrupt, or of
another schema version is deleted and rebuilt from the files.

Words match by their stem (porter: "failing" finds "failed"). Ranking is
FTS5's bm25 with the title weighted above the tags and the tags above the
body. Queries take plain words (every word must match), "phrases", prefix*,
OR, -exclusions and title:/tags:/body: filters; anything else a person types
is quoted, so ``foo-bar`` or ``c++`` never reach FTS5 as syntax.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

from cmux.errors import StorageError, UsageError
from cmux.fsutil import locked
from cmux.journal import store
from cmux.paths import DataRoot

log = logging.getLogger(__name__)
T = TypeVar("T")

SCHEMA_VERSION = "3"
# bm25 column weights: title, tags, body.
WEIGHTS = (10.0, 4.0, 1.0)
# A file changed less than this long ago may change again within the same
# mtime tick without changing size: index it, but look again next time.
RACY_NS = 2_000_000_000
MAX_LIMIT = 1000
SNIPPET_TOKENS = 16
# Past this many new entries in one sync, merge FTS5's segments afterwards.
OPTIMIZE_AFTER = 5000
# SQLite primary result codes (the sqlite3 module names them only from 3.11).
_SQLITE_BUSY, _SQLITE_CORRUPT, _SQLITE_FULL, _SQLITE_NOTADB = 5, 11, 13, 26

# The FTS table reads its text from `entries` (external content); cmux keeps
# the two in step itself, so a first build can use FTS5's bulk 'rebuild'.
SCHEMA = f"""
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE files(
    name TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    ino INTEGER NOT NULL);
CREATE TABLE entries(
    id INTEGER PRIMARY KEY, file TEXT NOT NULL, date TEXT NOT NULL, time TEXT NOT NULL,
    agent TEXT NOT NULL, line INTEGER NOT NULL, title TEXT NOT NULL, tags TEXT NOT NULL,
    body TEXT NOT NULL);
CREATE INDEX entries_file ON entries(file);
CREATE INDEX entries_agent ON entries(agent);
CREATE VIRTUAL TABLE entries_fts USING fts5(
    title, tags, body, content='entries', content_rowid='id',
    tokenize='porter unicode61 remove_diacritics 2');
INSERT INTO meta(key, value) VALUES ('schema', '{SCHEMA_VERSION}');
INSERT INTO meta(key, value) VALUES ('listing', '');
"""

# Rank first (bm25 over every match, returning only ids), then fetch the
# columns and build snippets for the few that are shown.
RANK_SQL = """
SELECT rowid, bm25(entries_fts, {weights}) AS score FROM entries_fts
WHERE entries_fts MATCH ?{where} ORDER BY score LIMIT ?
""".replace("{weights}", ", ".join(map(str, WEIGHTS)))
SHOW_SQL = """
SELECT e.id, e.date, e.time, e.agent, e.title, e.tags, e.file, e.line,
       snippet(entries_fts, 2, ?, ?, '…', ?)
FROM entries_fts JOIN entries e ON e.id = entries_fts.rowid
WHERE entries_fts MATCH ? AND entries_fts.rowid IN ({ids})
"""


@dataclass
class Hit:
    """One search result: where the entry is, who wrote it, and why it matched."""

    date: str
    time: str
    agent: str
    title: str
    tags: list[str]
    snippet: str
    score: float  # higher is better (FTS5 bm25, sign flipped)
    file: str
    line: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SyncStats:
    """What a sync did."""

    files_indexed: int = 0
    files_dropped: int = 0
    entries_indexed: int = 0
    rebuilt: bool = False
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Corrupt(Exception):
    """The index must be thrown away and rebuilt."""


# -- queries ---------------------------------------------------------------------------

_QUERY_TOKEN = re.compile(r'"(?P<phrase>[^"]*)(?:"(?P<pstar>\*?)|$)|(?P<word>[^\s"]+)')
_COLUMN = re.compile(r"^(?P<col>title|tags?|body):(?P<rest>.*)$", re.IGNORECASE)
_WORDISH = re.compile(r"\w")


def fts_query(text: str) -> str:
    """Turn what a person typed into a safe FTS5 query.

    Plain words must all match; ``"a phrase"`` matches the words in order;
    ``word*`` matches a prefix; ``OR`` between two terms matches either;
    ``-word`` (or ``NOT word``) excludes; ``title:``, ``tags:`` and ``body:``
    look in one column. Every term is quoted, so punctuation is never syntax.
    """
    terms: list[str] = []
    excluded: list[str] = []
    pending_or = negate_next = False
    for m in _QUERY_TOKEN.finditer(text):
        column = ""
        negate, negate_next = negate_next, False
        if m.group("phrase") is not None:
            term = _quote(m.group("phrase"), prefix=bool(m.group("pstar")))
        else:
            word = m.group("word")
            if word == "OR":
                pending_or = bool(terms)
                continue
            if word == "AND":
                continue
            if word == "NOT":
                negate_next = True
                continue
            if word.startswith("-") and len(word) > 1:
                negate, word = True, word[1:]
            cm = _COLUMN.match(word)
            if cm and cm.group("rest"):
                col = cm.group("col").lower()
                column = "tags" if col.startswith("tag") else col
                word = cm.group("rest")
            term = _quote(word.rstrip("*"), prefix=word.endswith("*"))
        if not term:
            continue
        if column:
            term = f"{column} : {term}"
        if negate:
            excluded.append(term)
        elif pending_or and terms:
            terms[-1] = f"{terms[-1]} OR {term}"
            pending_or = False
        else:
            terms.append(term)
    if not terms:
        if excluded:
            raise UsageError(
                "a search needs a word to look for, not only words to exclude",
                'e.g. journal search "deploy -staging"',
            )
        raise UsageError(
            f"nothing to search for in {text!r}",
            'give words, a "phrase" or a prefix*: journal search "flaky test"',
        )
    query = " AND ".join(f"({t})" if " OR " in t else t for t in terms)
    if excluded:
        query = f"({query}) NOT ({' OR '.join(excluded)})"
    return query


def _quote(text: str, *, prefix: bool = False) -> str:
    text = text.strip()
    if not _WORDISH.search(text):
        return ""
    return '"' + text.replace('"', '""') + '"' + ("*" if prefix else "")


# -- the database --------------------------------------------------------------------


def _connect(path: Path) -> tuple[sqlite3.Connection, str]:
    """Open the index (creating it when new); returns it and the stored listing hash."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=30, isolation_level=None)
    try:
        meta: dict[str, str] = {}
        with suppress(sqlite3.OperationalError):
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        if not meta:
            _create(conn)
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        if meta.get("schema") != SCHEMA_VERSION:
            raise _Corrupt(f"schema {meta.get('schema')}, want {SCHEMA_VERSION}")
    except BaseException:
        conn.close()
        raise
    return conn, meta.get("listing", "")


def _create(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("BEGIN IMMEDIATE")
    try:
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        if "meta" not in names:  # else another process created it while we waited
            if names:
                raise _Corrupt("the file holds tables of something else")
            for stmt in _statements(SCHEMA):
                conn.execute(stmt)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _statements(script: str) -> Iterator[str]:
    buf = ""
    for line in script.strip().splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            yield buf.strip()
            buf = ""


def _is_corrupt(exc: sqlite3.DatabaseError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and (code & 0xFF) in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
        return True
    text = str(exc).lower()
    return any(
        s in text
        for s in ("malformed", "not a database", "no such table", "no such column", "corrupt")
    )


def _storage_error(path: Path, exc: sqlite3.DatabaseError) -> StorageError:
    code = (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF
    text = str(exc)
    if code == _SQLITE_FULL or "disk is full" in text:
        return StorageError(
            f"the disk is full: cannot update the search index {path}",
            "free some space; the journal files themselves are intact",
        )
    if code == _SQLITE_BUSY or "locked" in text:
        return StorageError(
            f"the search index {path} stayed locked for 30 seconds",
            "another cmux process is rebuilding it; try again in a moment",
        )
    return StorageError(
        f"cannot use the search index {path}: {text}",
        "`cmux journal reindex` rebuilds it from the journal files",
    )


def _discard(data: DataRoot) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        with suppress(FileNotFoundError):
            os.unlink(f"{data.index_db}{suffix}")


def _use(data: DataRoot, fn: Callable[[sqlite3.Connection], T]) -> tuple[T, SyncStats]:
    """Call ``fn`` on an up-to-date index; a corrupt or missing one is rebuilt first."""
    rebuilt = not data.index_db.exists()
    for attempt in (1, 2):
        conn: sqlite3.Connection | None = None
        try:
            conn, listing = _connect(data.index_db)
            stats = _sync(conn, data, listing)
            stats.rebuilt = rebuilt
            return fn(conn), stats
        except (_Corrupt, sqlite3.DatabaseError) as exc:
            if isinstance(exc, sqlite3.DatabaseError) and not _is_corrupt(exc):
                raise _storage_error(data.index_db, exc) from exc
            if attempt == 2:
                raise StorageError(
                    f"the search index {data.index_db} is still unusable after a rebuild: {exc}",
                    f"delete {data.index_db} by hand and search again",
                ) from exc
            log.warning("rebuilding the journal index %s: %s", data.index_db, exc)
            if conn is not None:
                conn.close()
                conn = None
            with locked(data.run_dir / "index.lock"):
                _discard(data)
            rebuilt = True
        finally:
            if conn is not None:
                conn.close()
    raise AssertionError("unreachable")


# -- keeping it in step with the files -------------------------------------------------

Listing = dict[str, tuple[int, int, int]]


def _on_disk(data: DataRoot) -> Listing:
    """Size, mtime and inode of every daily file: stat only, nothing read. A
    symlink is no daily file (store.daily_files): nothing outside the data
    root gets into the index through one."""
    out: Listing = {}
    try:
        with os.scandir(data.journal_dir) as it:
            for e in it:
                if store.DAILY_NAME.match(e.name) and not e.is_symlink():
                    try:
                        st = e.stat()
                    except FileNotFoundError:
                        continue
                    out[e.name] = (st.st_size, st.st_mtime_ns, st.st_ino)
    except FileNotFoundError:
        pass
    return out


def _digest(listing: Listing) -> str:
    text = "\n".join(f"{n} {s} {m} {i}" for n, (s, m, i) in sorted(listing.items()))
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def _known(conn: sqlite3.Connection) -> Listing:
    return {
        name: (size, mtime, ino)
        for name, size, mtime, ino in conn.execute("SELECT name, size, mtime_ns, ino FROM files")
    }


def _sync(conn: sqlite3.Connection, data: DataRoot, listing: str) -> SyncStats:
    started = time.perf_counter()
    stats = SyncStats()
    disk = _on_disk(data)
    if _digest(disk) == listing:  # the common case: nothing changed, nothing read
        return stats
    conn.execute("BEGIN IMMEDIATE")
    try:
        known = _known(conn)  # read under the write lock: another process may have synced
        first_build = not known
        for name in sorted(known.keys() - disk.keys()):
            _drop(conn, name)
            stats.files_dropped += 1
        now = time.time_ns()
        for name, sig in sorted(disk.items()):
            if known.get(name) == sig:
                continue
            if name in known:
                _drop(conn, name)
            try:
                entries = store.parse_file(data.journal_dir / name)
            except FileNotFoundError:
                disk.pop(name)
                continue
            _insert(conn, name, entries, fts=not first_build)
            size, mtime, ino = sig
            if now - mtime < RACY_NS:
                disk[name] = sig = (size, -1, ino)  # look again next time
            conn.execute(
                "INSERT OR REPLACE INTO files(name, size, mtime_ns, ino) VALUES (?, ?, ?, ?)",
                (name, *sig),
            )
            stats.files_indexed += 1
            stats.entries_indexed += len(entries)
        if first_build:
            conn.execute("INSERT INTO entries_fts(entries_fts) VALUES ('rebuild')")
        conn.execute("UPDATE meta SET value = ? WHERE key = 'listing'", (_digest(disk),))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    if stats.entries_indexed > OPTIMIZE_AFTER:
        conn.execute("INSERT INTO entries_fts(entries_fts) VALUES ('optimize')")
    stats.seconds = time.perf_counter() - started
    log.debug("journal index: %s", stats)
    return stats


def _drop(conn: sqlite3.Connection, name: str) -> None:
    conn.execute(
        "INSERT INTO entries_fts(entries_fts, rowid, title, tags, body)"
        " SELECT 'delete', id, title, tags, body FROM entries WHERE file = ?",
        (name,),
    )
    conn.execute("DELETE FROM entries WHERE file = ?", (name,))
    conn.execute("DELETE FROM files WHERE name = ?", (name,))


def _insert(conn: sqlite3.Connection, name: str, entries: list[store.Entry], *, fts: bool) -> None:
    conn.executemany(
        "INSERT INTO entries(file, date, time, agent, line, title, tags, body)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (name, e.date, e.time, e.agent, e.line, e.title, ", ".join(e.tags), e.body)
            for e in entries
        ],
    )
    if fts:
        conn.execute(
            "INSERT INTO entries_fts(rowid, title, tags, body)"
            " SELECT id, title, tags, body FROM entries WHERE file = ?",
            (name,),
        )


def sync(data: DataRoot) -> SyncStats:
    """Bring the index in step with the files and say what that took."""
    return _use(data, lambda conn: None)[1]


def rebuild(data: DataRoot) -> SyncStats:
    """Throw the index away and build it again from the files."""
    with locked(data.run_dir / "index.lock"):
        _discard(data)
    return sync(data)


def count(data: DataRoot) -> int:
    """How many entries the (synced) index holds."""
    return _use(data, lambda c: int(c.execute("SELECT count(*) FROM entries").fetchone()[0]))[0]


# -- searching ---------------------------------------------------------------------------


def search(
    data: DataRoot,
    query: str,
    *,
    limit: int = 10,
    agent: str | None = None,
    marks: tuple[str, str] = ("**", "**"),
) -> list[Hit]:
    """The entries that best match ``query``, best first (see ``fts_query``).

    ``marks`` surround the matched words in each snippet; ``agent`` keeps only
    that agent's entries.
    """
    if limit < 1:
        raise UsageError("--limit must be 1 or more")
    match = fts_query(query)
    where, extra = "", []
    if agent:
        where = " AND rowid IN (SELECT id FROM entries WHERE agent = ?)"
        extra = [agent]
    rank_sql = RANK_SQL.replace("{where}", where)

    def run(conn: sqlite3.Connection) -> list[Hit]:
        try:
            ranked = conn.execute(rank_sql, [match, *extra, min(limit, MAX_LIMIT)]).fetchall()
            if not ranked:
                return []
            ids = [rowid for rowid, _score in ranked]
            show = SHOW_SQL.replace("{ids}", ", ".join("?" * len(ids)))
            rows = conn.execute(show, [marks[0], marks[1], SNIPPET_TOKENS, match, *ids])
        except sqlite3.OperationalError as exc:
            if "fts5" in str(exc) or "syntax" in str(exc):
                raise UsageError(
                    f"cannot search for {query!r}: {exc}",
                    'use plain words, "a phrase", prefix*, OR, -word',
                ) from exc
            raise
        by_id = {r[0]: r for r in rows}
        folder = str(data.journal_dir)
        hits = []
        for rowid, score in ranked:
            _id, date, tm, who, title, tags, file, line, snip = by_id[rowid]
            hits.append(
                Hit(
                    date=date,
                    time=tm,
                    agent=who,
                    title=title,
                    tags=[t for t in tags.split(", ") if t],
                    snippet=snip,
                    score=-score,
                    file=os.path.join(folder, file),
                    line=line,
                )
            )
        return hits

    return _use(data, run)[0]
