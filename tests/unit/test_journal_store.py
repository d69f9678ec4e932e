"""The journal's markdown files: appending, parsing (hand-written text too), MEMORY.md."""

from __future__ import annotations

import errno
import os
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from cmux.errors import StorageError, UsageError
from cmux.journal import store
from cmux.paths import DataRoot

WHEN = datetime(2026, 3, 14, 9, 26, 53)


def test_an_entry_is_written_as_readable_markdown_and_parsed_back(data: DataRoot) -> None:
    e = store.add_entry(
        data,
        agent="w1",
        title="Fixed the flaky test",
        body="What was done: pinned the clock.\n\nWhy: it raced midnight.",
        tags=["tests", "ci"],
        when=WHEN,
    )
    path = data.journal_dir / "2026-03-14.md"
    assert path.read_text() == (
        "# 2026-03-14\n\n"
        "## 09:26:53 · w1 · Fixed the flaky test\n"
        "tags: tests, ci\n\n"
        "What was done: pinned the clock.\n\nWhy: it raced midnight.\n"
    )
    assert (e.file, e.line) == (str(path), 3)
    (parsed,) = store.parse_file(path)
    assert parsed == e


def test_appends_are_separated_and_line_numbers_point_at_headings(data: DataRoot) -> None:
    a = store.add_entry(data, agent="w1", title="first", when=WHEN)
    b = store.add_entry(data, agent="w2", title="second", body="x\ny", when=WHEN)
    c = store.add_entry(data, agent="w3", title="third", when=WHEN)
    lines = Path(a.file).read_text().split("\n")
    for e in (a, b, c):
        assert lines[e.line - 1].endswith(f"· {e.title}")
    assert [x.title for x in store.parse_file(Path(a.file))] == ["first", "second", "third"]
    assert store.parse_file(Path(a.file))[1].body == "x\ny"


def test_control_characters_and_escape_sequences_are_stripped(data: DataRoot) -> None:
    e = store.add_entry(
        data,
        agent="w1",
        title="red \x1b[31malert\x1b[0m\x07 and\nnewline",
        body="keep\ttabs\x00 and\r\nlines \x1b]0;title\x07done",
        when=WHEN,
    )
    assert e.title == "red alert and newline"
    assert e.body == "keep\ttabs and\nlines done"
    assert "\x1b" not in Path(e.file).read_text()


def test_a_body_line_that_looks_like_a_heading_cannot_split_the_entry(data: DataRoot) -> None:
    body = "## What was done\nthe work\n##\n```\n## inside code\n```\n## Why\nreasons"
    store.add_entry(data, agent="w1", title="one entry", body=body, when=WHEN)
    store.add_entry(data, agent="w2", title="next entry", when=WHEN)
    entries = store.entries_for_day(data, "2026-03-14")
    assert [e.title for e in entries] == ["one entry", "next entry"]
    assert entries[0].body.split("\n") == [
        "### What was done",
        "the work",
        "###",
        "```",
        " ## inside code",
        "```",
        "### Why",
        "reasons",
    ]


def test_agent_names_and_tags_are_made_safe_for_the_heading(data: DataRoot) -> None:
    e = store.add_entry(
        data, agent="bad · name", title="t", tags=["#deploy", "two words", "a,b", "a"], when=WHEN
    )
    assert e.agent == "bad-name"
    assert e.tags == ["deploy", "two-words", "a", "b"]
    assert store.parse_file(Path(e.file))[0].agent == "bad-name"


def test_an_empty_title_is_refused_with_a_hint(data: DataRoot) -> None:
    with pytest.raises(UsageError) as info:
        store.add_entry(data, agent="w1", title=" \x1b[0m \n")
    assert "needs a title" in info.value.message and info.value.hint
    assert not data.journal_dir.exists() or not list(data.journal_dir.iterdir())


def test_when_picks_the_day_file_and_aware_times_are_shown_in_local_time(
    data: DataRoot,
) -> None:
    aware = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    e = store.add_entry(data, agent="w1", title="t", when=aware)
    local = aware.astimezone()
    assert e.date == local.date().isoformat()
    assert e.time == local.strftime("%H:%M:%S")
    assert Path(e.file).name == f"{e.date}.md"


def test_a_hand_edit_without_a_final_newline_does_not_glue_the_next_entry(
    data: DataRoot,
) -> None:
    e = store.add_entry(data, agent="w1", title="first", when=WHEN)
    with open(e.file, "a") as fh:
        fh.write("a line added by hand, no newline")
    store.add_entry(data, agent="w2", title="second", when=WHEN)
    entries = store.parse_file(Path(e.file))
    assert [x.title for x in entries] == ["first", "second"]
    assert entries[0].body == "a line added by hand, no newline"


def test_a_full_disk_raises_storage_error_and_leaves_the_file_as_it_was(
    data: DataRoot, monkeypatch: pytest.MonkeyPatch
) -> None:
    e = store.add_entry(data, agent="w1", title="kept", when=WHEN)
    before = Path(e.file).read_bytes()
    real_write = os.write

    def half_then_full(fd: int, raw: bytes) -> int:
        real_write(fd, raw[: len(raw) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", half_then_full)
    with pytest.raises(StorageError) as info:
        store.add_entry(data, agent="w1", title="lost", body="x" * 10000, when=WHEN)
    assert "disk is full" in info.value.message
    assert Path(e.file).read_bytes() == before


# -- what people write by hand --------------------------------------------------------


HAND = """\
# 2026-03-14

Notes before any heading, written by a person.
They are kept.

## 10:00 · alice · Heading with minutes only
tags: ops

body one

## 11:30:00 Heading with a time but no agent

## Just a title
body three
## 12:00 - bob - dashes instead of dots
## 13:00:00 | carol | pipes
##

text under an empty heading
"""


def test_hand_written_entries_are_all_kept() -> None:
    entries = store.parse_text(HAND, date="2026-03-14", file="f.md")
    got = [(e.time, e.agent, e.title, e.line) for e in entries]
    assert got == [
        ("", "?", "Notes before any heading, written by a person.", 3),
        ("10:00", "alice", "Heading with minutes only", 6),
        ("11:30:00", "?", "Heading with a time but no agent", 11),
        ("", "?", "Just a title", 13),
        ("12:00", "bob", "dashes instead of dots", 15),
        ("13:00:00", "carol", "pipes", 16),
        ("", "?", "(untitled)", 17),
    ]
    assert entries[0].body == "Notes before any heading, written by a person.\nThey are kept."
    assert entries[1].tags == ["ops"] and entries[1].body == "body one"
    assert entries[3].body == "body three"
    assert entries[6].body == "text under an empty heading"


def test_a_file_with_no_headings_at_all_is_one_entry() -> None:
    (e,) = store.parse_text("just some words\nmore words\n", date="2026-03-14")
    assert (e.agent, e.title, e.body) == ("?", "just some words", "just some words\nmore words")


def test_bytes_that_are_not_utf8_do_not_stop_the_parser(data: DataRoot) -> None:
    data.journal_dir.mkdir(parents=True)
    path = data.journal_dir / "2026-03-14.md"
    path.write_bytes(b"## 10:00:00 \xc2\xb7 w1 \xc2\xb7 ok\n\nbad \xff\xfe byte\n")
    (e,) = store.parse_file(path)
    assert e.agent == "w1" and "bad" in e.body


def test_recent_reads_the_last_days_and_parse_day_understands_words(data: DataRoot) -> None:
    today = date(2026, 3, 14)
    for back in (0, 1, 5):
        day = today - timedelta(days=back)
        store.add_entry(
            data, agent="w1", title=f"{back} days ago", when=datetime(day.year, day.month, day.day)
        )
    titles = [e.title for e in store.recent(data, days=2, today=today)]
    assert titles == ["1 days ago", "0 days ago"]
    assert len(store.recent(data, days=6, today=today)) == 3
    assert store.parse_day("yesterday", today=today) == "2026-03-13"
    assert store.parse_day("-5", today=today) == "2026-03-09"
    assert store.parse_day("2026-01-02") == "2026-01-02"
    with pytest.raises(UsageError):
        store.parse_day("last tuesday")


def test_other_files_in_the_journal_folder_are_not_entries(data: DataRoot) -> None:
    store.add_entry(data, agent="w1", title="real", when=WHEN)
    (data.journal_dir / "README.md").write_text("## not an entry\n")
    (data.journal_dir / "2026-03-14.md.swp").write_text("junk")
    assert [p.name for p in store.daily_files(data)] == ["2026-03-14.md"]


# -- MEMORY.md ------------------------------------------------------------------------------


def test_remember_adds_a_fact_once_with_who_and_when(data: DataRoot) -> None:
    r = store.remember(data, "the tests need TZ=UTC", agent="w1", when=WHEN)
    assert r.added and r.fact == "the tests need TZ=UTC (w1, 2026-03-14)"
    again = store.remember(data, "  the tests\nneed TZ=UTC ", agent="w2", when=WHEN)
    assert not again.added
    text = store.memory(data)
    assert text.startswith("# Memory\n")
    assert store.facts(text) == ["the tests need TZ=UTC (w1, 2026-03-14)"]


def test_memory_over_budget_drops_the_oldest_facts_into_the_journal(data: DataRoot) -> None:
    dropped: list[str] = []
    for i in range(store.MEMORY_MAX_LINES + 10):
        dropped += store.remember(data, f"fact number {i:03d}", agent="w1", when=WHEN).dropped
    text = store.memory(data)
    assert len(text.encode()) <= store.MEMORY_MAX_BYTES
    assert len(text.rstrip("\n").split("\n")) <= store.MEMORY_MAX_LINES
    kept = store.facts(text)
    assert kept[-1].startswith(f"fact number {store.MEMORY_MAX_LINES + 9:03d}")
    assert dropped and dropped[0].startswith("fact number 000")
    assert not any(f.startswith("fact number 000") for f in kept)
    # Nothing is lost: each dropped fact is in the journal.
    journal = "".join(p.read_text() for p in store.daily_files(data))
    for fact in dropped:
        assert fact in journal


def test_a_long_fact_is_refused_with_advice(data: DataRoot) -> None:
    with pytest.raises(UsageError) as info:
        store.remember(data, "x" * (store.FACT_MAX + 1), agent="w1")
    assert "journal add" in (info.value.hint or "")
    with pytest.raises(UsageError):
        store.remember(data, " \n ", agent="w1")


def test_memory_whose_own_prose_is_over_budget_refuses_rather_than_loses_it(
    data: DataRoot,
) -> None:
    data.journal_dir.mkdir(parents=True)
    prose = "# Memory\n\n" + ("A long paragraph written by hand. " * 200) + "\n"
    data.memory_file.write_text(prose)
    with pytest.raises(UsageError) as info:
        store.remember(data, "one more", agent="w1")
    assert "over its budget" in info.value.message
    assert data.memory_file.read_text() == prose


def test_windows_line_ends_a_bom_and_a_first_line_title_are_read_well() -> None:
    text = "\ufeff# 2026-03-14\r\n\r\n## 10:00:00 · w1 · from windows\r\nbody\r\n"
    (e,) = store.parse_text(text, date="2026-03-14")
    assert (e.agent, e.title, e.body) == ("w1", "from windows", "body")
    # Only cmux's own "# YYYY-MM-DD" line is a file header; any other first line is kept.
    (kept,) = store.parse_text("# Notes from the 2026-03-14 retro\nwe agreed\n", date="2026-03-14")
    assert kept.title == "Notes from the 2026-03-14 retro"
    assert kept.body == "# Notes from the 2026-03-14 retro\nwe agreed"
