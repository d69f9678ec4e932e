"""The search index: queries, ranking, and staying in step with the markdown files."""

from __future__ import annotations

import os
import sqlite3
import time
from datetime import datetime
from pathlib import Path

import pytest

from cmux.errors import UsageError
from cmux.journal import index, store
from cmux.paths import DataRoot

DAY = "2026-03-14"
WHEN = datetime(2026, 3, 14, 9, 0, 0)


@pytest.fixture
def data(data: DataRoot) -> DataRoot:
    """The shared data root (tests/unit/conftest.py) with five entries of filler."""
    d = data
    filler = [
        ("Tidied the router", "Renamed variables in the router module."),
        ("Bumped the linter", "ruff moved to the latest release."),
        ("Docs pass", "Rewrote the README introduction."),
        ("Looked at CI", "The pipeline is green again after the pin."),
        ("Reviewed w2", "Merged the branch after the review."),
    ]
    for i, (title, body) in enumerate(filler):
        store.add_entry(d, agent="w9", title=title, body=body, when=WHEN.replace(minute=i))
    return d


def add(data: DataRoot, title: str, body: str = "", *, agent: str = "w1", **kw: object) -> None:
    store.add_entry(data, agent=agent, title=title, body=body, when=WHEN, **kw)  # type: ignore[arg-type]


def titles(hits: list[index.Hit]) -> list[str]:
    return [h.title for h in hits]


def age(path: Path, seconds: float = 3600) -> None:
    """Make a file look written long ago (past the racy window)."""
    past = time.time() - seconds
    os.utime(path, (past, past))


# -- the query language ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "fts"),
    [
        ("flaky", '"flaky"'),
        ("flaky test", '"flaky" AND "test"'),
        ('"flaky test"', '"flaky test"'),
        ('"flaky test"*', '"flaky test"*'),
        ("migra*", '"migra"*'),
        ("foo-bar", '"foo-bar"'),
        ("c++ rocks", '"c++" AND "rocks"'),
        ('say"hi', '"say" AND "hi"'),
        ('"unclosed phrase', '"unclosed phrase"'),
        ("redis OR memcached", '("redis" OR "memcached")'),
        ("deploy -staging", '("deploy") NOT ("staging")'),
        ("deploy NOT staging", '("deploy") NOT ("staging")'),
        ("title:router", 'title : "router"'),
        ("tag:ci", 'tags : "ci"'),
        ("error: timeout", '"error:" AND "timeout"'),
        ("a ++ b", '"a" AND "b"'),
        ("AND flaky OR", '"flaky"'),
        ("col:umn", '"col:umn"'),
    ],
)
def test_typed_text_becomes_a_safe_fts_query(typed: str, fts: str) -> None:
    assert index.fts_query(typed) == fts


@pytest.mark.parametrize("typed", ["", "   ", "++", "-", '""', "* * *", "-onlyexcluded"])
def test_a_query_with_nothing_to_find_is_a_usage_error(typed: str) -> None:
    with pytest.raises(UsageError) as info:
        index.fts_query(typed)
    assert info.value.hint


@pytest.mark.parametrize(
    "typed", ["foo-bar", "c++", "NEAR(a b)", "a:b:c", "(((", "^start", "x AND", "{title}: x", "'"]
)
def test_punctuation_never_crashes_a_search(data: DataRoot, typed: str) -> None:
    try:
        hits = index.search(data, typed)
    except UsageError:
        return  # nothing searchable in it: a clear error is fine
    assert isinstance(hits, list)


# -- finding and ranking -----------------------------------------------------------------


def test_search_finds_an_entry_and_names_date_time_agent_and_title(data: DataRoot) -> None:
    add(data, "Fixed the flaky login test", "Pinned the clock.", agent="w1", tags=["tests"])
    (hit,) = index.search(data, "flaky")
    assert (hit.date, hit.time, hit.agent, hit.title) == (
        DAY,
        "09:00:00",
        "w1",
        "Fixed the flaky login test",
    )
    assert hit.tags == ["tests"]
    assert hit.file == str(data.journal_dir / f"{DAY}.md")
    lines = Path(hit.file).read_text().split("\n")
    assert lines[hit.line - 1] == "## 09:00:00 · w1 · Fixed the flaky login test"
    assert hit.score > 0


def test_a_word_in_the_title_outranks_the_same_word_once_in_a_body(data: DataRoot) -> None:
    add(data, "Notes on the week", "Long body. The deadlock showed up once in passing.")
    add(data, "Deadlock in the router", "Two locks taken in the opposite order.")
    hits = index.search(data, "deadlock")
    assert titles(hits) == ["Deadlock in the router", "Notes on the week"]
    assert hits[0].score > hits[1].score


def test_a_tag_counts_more_than_the_body(data: DataRoot) -> None:
    add(data, "Weekly notes A", "we talked about the migration briefly")
    add(data, "Weekly notes B", "other things", tags=["migration"])
    assert titles(index.search(data, "migration")) == ["Weekly notes B", "Weekly notes A"]


def test_snippets_mark_the_matched_words(data: DataRoot) -> None:
    add(data, "Cache work", "We replaced the cache with an LRU and the latency dropped by half.")
    (hit,) = index.search(data, "latency")
    assert "**latency**" in hit.snippet
    (hit,) = index.search(data, "latency", marks=("<", ">"))
    assert "<latency>" in hit.snippet


def test_phrase_queries_need_the_words_in_order(data: DataRoot) -> None:
    add(data, "A", "the flaky test failed again")
    add(data, "B", "the test was flaky yesterday")
    assert titles(index.search(data, '"flaky test"')) == ["A"]
    assert sorted(titles(index.search(data, "flaky test"))) == ["A", "B"]


def test_prefix_queries_and_stems(data: DataRoot) -> None:
    add(data, "Schema migration", "moved three tables")
    add(data, "Deploy", "the deploy failed twice")
    assert titles(index.search(data, "migra*")) == ["Schema migration"]
    assert titles(index.search(data, "migrations")) == ["Schema migration"]
    assert titles(index.search(data, "failing")) == ["Deploy"]


def test_or_exclusion_column_and_agent_filters(data: DataRoot) -> None:
    add(data, "Redis outage", "cache down", agent="w1")
    add(data, "Memcached tuning", "cache faster", agent="w2")
    add(data, "Cache notes", "redis and memcached compared", agent="w3")
    assert sorted(titles(index.search(data, "redis OR memcached"))) == [
        "Cache notes",
        "Memcached tuning",
        "Redis outage",
    ]
    assert titles(index.search(data, "cache -redis")) == ["Memcached tuning"]
    assert titles(index.search(data, "title:redis")) == ["Redis outage"]
    assert titles(index.search(data, "cache", agent="w2")) == ["Memcached tuning"]


def test_limit_keeps_the_best(data: DataRoot) -> None:
    for i in range(15):
        add(data, f"Benchmark run {i}", "numbers " + "benchmark " * i)
    hits = index.search(data, "benchmark", limit=3)
    assert len(hits) == 3
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    with pytest.raises(UsageError):
        index.search(data, "benchmark", limit=0)


def test_an_empty_journal_finds_nothing(tmp_path: Path) -> None:
    assert index.search(DataRoot(tmp_path / "empty"), "anything") == []


# -- staying in step with the files -----------------------------------------------------


def day_file(data: DataRoot) -> Path:
    return data.journal_dir / f"{DAY}.md"


def test_a_hand_edit_right_after_a_search_is_seen(data: DataRoot) -> None:
    add(data, "Upgrade", "we chose banana for the codename")
    assert titles(index.search(data, "banana")) == ["Upgrade"]
    # Same length and, as if in the same clock tick, the same mtime.
    path = day_file(data)
    st = path.stat()
    path.write_text(path.read_text().replace("banana", "cherry"))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    assert index.search(data, "banana") == []
    assert titles(index.search(data, "cherry")) == ["Upgrade"]


def test_an_entry_added_by_hand_and_a_new_file_are_found(data: DataRoot) -> None:
    index.search(data, "router")
    with open(day_file(data), "a") as fh:
        fh.write("\n## 18:00:00 · alice · Wrote this by hand\n\nabout the zeppelin\n")
    (data.journal_dir / "2026-03-15.md").write_text("# 2026-03-15\n\nno heading, a walrus\n")
    (hand,) = index.search(data, "zeppelin")
    assert (hand.agent, hand.title, hand.time) == ("alice", "Wrote this by hand", "18:00:00")
    (loose,) = index.search(data, "walrus")
    assert (loose.date, loose.agent, loose.title) == ("2026-03-15", "?", "no heading, a walrus")


def test_malformed_hand_written_text_is_kept_and_searchable(data: DataRoot) -> None:
    data.journal_dir.mkdir(parents=True, exist_ok=True)
    (data.journal_dir / "2026-03-10.md").write_text(
        "random thoughts about the kraken\n\n## a heading with no time or agent\nsquid ink\n"
    )
    (hit,) = index.search(data, "kraken")
    assert hit.agent == "?" and hit.line == 1
    (hit,) = index.search(data, "squid")
    assert (hit.agent, hit.title, hit.time) == ("?", "a heading with no time or agent", "")


def test_a_deleted_daily_file_drops_its_entries(data: DataRoot) -> None:
    store.add_entry(data, agent="w1", title="Platypus", when=datetime(2026, 3, 1, 8, 0))
    assert titles(index.search(data, "platypus")) == ["Platypus"]
    (data.journal_dir / "2026-03-01.md").unlink()
    assert index.search(data, "platypus") == []
    assert index.count(data) == 5


def test_a_deleted_index_is_rebuilt(data: DataRoot) -> None:
    add(data, "Axolotl", "regrows limbs")
    assert titles(index.search(data, "axolotl")) == ["Axolotl"]
    data.index_db.unlink()
    assert titles(index.search(data, "axolotl")) == ["Axolotl"]
    assert data.index_db.exists()


def test_an_index_of_junk_bytes_is_rebuilt(data: DataRoot) -> None:
    add(data, "Narwhal", "tusk")
    index.search(data, "narwhal")
    for suffix in ("-wal", "-shm"):
        Path(f"{data.index_db}{suffix}").unlink(missing_ok=True)
    data.index_db.write_bytes(os.urandom(8192))
    assert titles(index.search(data, "narwhal")) == ["Narwhal"]


def test_an_index_damaged_inside_is_rebuilt(data: DataRoot) -> None:
    for i in range(300):
        add(data, f"Entry {i}", f"ocelot number {i} " + "padding text " * 20)
    index.sync(data)
    with sqlite3.connect(data.index_db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = data.index_db.stat().st_size
    with open(data.index_db, "r+b") as fh:  # keep the header, wreck the pages
        fh.seek(4096)
        fh.write(b"\xde\xad\xbe\xef" * ((size - 4096) // 4))
    hits = index.search(data, "ocelot", limit=1000)
    assert len(hits) == 300


def test_an_index_of_an_older_schema_is_rebuilt(data: DataRoot) -> None:
    add(data, "Quokka", "smiles")
    index.sync(data)
    with sqlite3.connect(data.index_db) as conn:
        conn.execute("UPDATE meta SET value = '0' WHERE key = 'schema'")
    assert titles(index.search(data, "quokka")) == ["Quokka"]
    with sqlite3.connect(data.index_db) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key='schema'").fetchone()[0] == (
            index.SCHEMA_VERSION
        )


def test_when_nothing_changed_no_file_is_read(
    data: DataRoot, monkeypatch: pytest.MonkeyPatch
) -> None:
    age(day_file(data))
    first = index.sync(data)
    assert first.files_indexed == 1 and first.entries_indexed == 5

    def no_reading(path: Path) -> list[store.Entry]:
        raise AssertionError(f"read {path} although nothing changed")

    monkeypatch.setattr(store, "parse_file", no_reading)
    again = index.sync(data)
    assert (again.files_indexed, again.files_dropped) == (0, 0)
    assert titles(index.search(data, "linter")) == ["Bumped the linter"]


def test_only_the_changed_file_is_read_again(
    data: DataRoot, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.add_entry(data, agent="w1", title="Older day", when=datetime(2026, 3, 1, 8, 0))
    for p in store.daily_files(data):
        age(p)
    index.sync(data)
    add(data, "Today again", "more")
    age(day_file(data))
    read: list[str] = []
    real = store.parse_file

    def spy(path: Path) -> list[store.Entry]:
        read.append(path.name)
        return real(path)

    monkeypatch.setattr(store, "parse_file", spy)
    stats = index.sync(data)
    assert read == [f"{DAY}.md"] and stats.entries_indexed == 6


def test_a_fresh_file_is_checked_again_until_it_settles(data: DataRoot) -> None:
    assert index.sync(data).files_indexed == 1  # written just now: not trusted yet
    assert index.sync(data).files_indexed == 1
    age(day_file(data))
    assert index.sync(data).files_indexed == 1
    assert index.sync(data).files_indexed == 0


def test_rebuild_reports_what_it_indexed(data: DataRoot) -> None:
    stats = index.rebuild(data)
    assert stats.rebuilt and stats.entries_indexed == 5 and stats.files_indexed == 1


def test_a_daily_file_that_is_a_symlink_out_of_the_data_root_is_not_read(
    data: DataRoot, tmp_path: Path
) -> None:
    """A day file planted as a symlink (to a file outside the data root, in
    the journal's format) is neither indexed nor listed: search, recent and
    the dashboard's journal page never show what is outside."""
    add(data, "Our own entry", "inside the data root")
    outside = tmp_path / "outside.md"
    outside.write_text("# 2026-01-02\n\n## 10:00:00 · w1 · Secret\n\nsecretword outside\n")
    (data.journal_dir / "2026-01-02.md").symlink_to(outside)
    assert index.search(data, "secretword") == []
    assert [h.title for h in index.search(data, "entry")] == ["Our own entry"]
    assert all(not p.is_symlink() for p in store.daily_files(data))
    assert data.journal_dir / "2026-01-02.md" not in store.daily_files(data)
