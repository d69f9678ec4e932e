"""The journal across hosts without NATS: the ledgers forget what is no
longer in the files (cmux/cluster/journal.py, stale and Ledger.drop), and an
entry keeps its identity across an edit of its tags or body
(cmux/journal/store.py, heading_key and put_entry; the nth travels)."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from cmux.cluster import journal as jsync
from cmux.journal import store as jstore
from cmux.paths import DataRoot

pytestmark = pytest.mark.timeout(30)


# -- the journal ledgers ----------------------------------------------------------------


def test_a_ledger_forgets_the_ids_of_entries_no_longer_in_the_files(data: DataRoot) -> None:
    from cmux.cluster.node_journal import JournalLoops

    kept = jstore.add_entry(data, agent="w1", title="kept")
    edited = jstore.add_entry(data, agent="w1", title="edited", body="first text")
    loops = JournalLoops(SimpleNamespace(data=data))  # type: ignore[arg-type]
    ids = [jstore.entry_id(e) for e in (kept, edited)]
    loops.published.add(ids)
    loops.applied.add(["an-id-from-elsewhere-read-back-otherwise"])
    path = Path(edited.file)
    path.write_text(path.read_text().replace("first text", "second text"))  # by hand
    assert loops.compact(100.0) == 2
    fresh_published, fresh_applied = jsync.ledgers(data)  # as the next node reads them
    assert fresh_published.ids == {ids[0]} and fresh_applied.ids == set()
    assert loops.compact(101.0) == 0  # not due again yet
    assert jsync.stale({ids[0], "x"}, jstore.parse_file(path)) == {"x"}


# -- an entry's identity across an edit -------------------------------------------------


def test_an_edited_entry_replaces_its_older_version_in_place(data: DataRoot) -> None:
    first = jstore.add_entry(data, agent="w1", title="Fixed it", body="v1", tags=["ci"])
    jstore.add_entry(data, agent="w2", title="Next one", body="after")
    edit = jstore.Entry(first.date, first.time, "w1", "Fixed it", ["ci", "flaky"], "v2\n\nmore")
    written, how = jstore.put_entry(data, edit)
    assert how == "replaced" and written.line == first.line
    got = jstore.parse_file(Path(first.file))
    assert [(e.title, e.tags, e.body) for e in got] == [
        ("Fixed it", ["ci", "flaky"], "v2\n\nmore"),
        ("Next one", [], "after"),
    ]
    assert jstore.put_entry(data, edit)[1] == "had"
    # the last entry of its file, edited again
    last = jstore.Entry(first.date, got[1].time, "w2", "Next one", [], "after, edited")
    assert jstore.put_entry(data, last)[1] == "replaced"
    assert [e.body for e in jstore.parse_file(Path(first.file))] == ["v2\n\nmore", "after, edited"]
    # a heading edited is another entry
    other = jstore.Entry(first.date, first.time, "w1", "Fixed it (really)", [], "v3")
    assert jstore.put_entry(data, other)[1] == "appended"
    assert len(jstore.parse_file(Path(first.file))) == 3


def test_entries_without_time_and_agent_never_replace_one_another(data: DataRoot) -> None:
    day = "2026-11-21"
    path = jstore.day_file(data, day)
    path.parent.mkdir(parents=True)
    path.write_text(f"# {day}\n\n## Notes\n\nmine\n")
    _, how = jstore.put_entry(data, jstore.Entry(day, "", "?", "Notes", [], "theirs"))
    assert how == "appended"
    assert [e.body for e in jstore.parse_file(path)] == ["mine", "theirs"]


def test_the_nth_of_same_headed_entries_travels_and_picks_the_one_edited(
    data: DataRoot,
) -> None:
    day = "2026-11-21"
    a = jstore.Entry(day, "10:00:00", "cmux", "spawned w1", [], "one")
    b = jstore.Entry(day, "10:00:00", "cmux", "spawned w1", [], "two")
    assert jstore.occurrences([a, b, jstore.Entry(day, "", "?", "x")]) == [0, 1, 0]
    out = jsync.to_publish([a, b], set(), "a")
    assert [json.loads(o.payload)["nth"] for o in out] == [0, 1]
    for o in out:
        item = jsync.decide_apply(o.payload, o.id, "b", set())
        assert item.decision == "apply"
        jstore.put_entry(data, item.entry, item.nth)  # type: ignore[arg-type]
    edited = jstore.Entry(day, "10:00:00", "cmux", "spawned w1", [], "two, edited")
    (o,) = jsync.to_publish([a, edited], {out[0].id}, "a")
    item = jsync.decide_apply(o.payload, o.id, "b", set())
    assert item.nth == 1
    assert jstore.put_entry(data, item.entry, item.nth)[1] == "replaced"  # type: ignore[arg-type]
    assert [e.body for e in jstore.entries_for_day(data, day)] == ["one", "two, edited"]
    bad = json.loads(o.payload) | {"nth": -1}
    assert jsync.decide_apply(json.dumps(bad).encode(), o.id, "b", set()).decision == "bad"


# -- an entry deleted by hand -----------------------------------------------------------


def test_deletions_are_entries_gone_and_not_edited_in_place() -> None:
    day = "2026-11-21"
    a = jstore.Entry(day, "10:00:00", "w1", "kept", [], "a")
    b = jstore.Entry(day, "10:01:00", "w1", "deleted", [], "b")
    c = jstore.Entry(day, "10:02:00", "w1", "edited", [], "c")
    d = jstore.Entry(day, "10:03:00", "w1", "renamed", [], "d")
    e = jstore.Entry(day, "", "?", "a hand note", [], "e")
    c2 = jstore.Entry(day, "10:02:00", "w1", "edited", ["x"], "c, better")
    d2 = jstore.Entry(day, "10:03:00", "w1", "renamed, better", [], "d")
    gone = jsync.deletions([a, b, c, d, e], [a, c2, d2])
    assert gone == [b, d, e]  # c was edited in place; d's heading changed: the old one goes
    assert jsync.deletions([a, b], [a, b]) == []
    t = jsync.tombstone(b, "a")
    assert t.id == "del-" + jstore.entry_id(b)
    item = jsync.decide_apply(t.payload, t.id, "b", set())
    assert (item.decision, item.id, item.day) == ("delete", jstore.entry_id(b), day)
    assert jsync.decide_apply(t.payload, t.id, "a", set()).decision == "own"
    assert jsync.decide_apply(t.payload, "del-other", "b", set()).decision == "bad"


def test_a_deletion_removes_only_the_version_deleted(data: DataRoot) -> None:
    first = jstore.add_entry(data, agent="w1", title="one", body="1")
    second = jstore.add_entry(data, agent="w1", title="two", body="2")
    third = jstore.add_entry(data, agent="w1", title="three", body="3")
    path = Path(first.file)
    edited_here = path.read_text().replace("\n3\n", "\n3, edited here\n")
    path.write_text(edited_here)
    assert not jstore.remove_entry(data, first.date, jstore.entry_id(third))  # edited since
    assert jstore.remove_entry(data, first.date, jstore.entry_id(second))
    assert not jstore.remove_entry(data, first.date, jstore.entry_id(second))  # once
    assert [(e.title, e.body) for e in jstore.parse_file(path)] == [
        ("one", "1"),
        ("three", "3, edited here"),
    ]
    assert jstore.remove_entry(data, first.date, jstore.entry_id(jstore.parse_file(path)[1]))
    assert path.read_text() == f"# {first.date}\n\n" + first.to_markdown()
    published, applied = jsync.ledgers(data)
    t = jsync.tombstone(first, "a")
    done, error = jsync.apply(
        data, [jsync.decide_apply(t.payload, t.id, "b", set())], published, applied
    )
    assert error is None and len(done) == 1 and jstore.parse_file(path) == []


class _Nats:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, str]] = []

    def publish_many(self, items: list[tuple[str, bytes, str]]) -> None:
        self.sent += items


def _settled(path: Path) -> None:
    """As if the file were last written a while ago (past SETTLE_NS)."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns - 5_000_000_000))


def test_a_node_sends_a_deletion_only_from_a_settled_read_never_from_one_mid_save(
    data: DataRoot,
) -> None:
    from cmux.cluster.node_journal import JournalLoops

    nats = _Nats()
    node = SimpleNamespace(
        data=data, nats=nats, me="a", s=SimpleNamespace(project="p"), stopping=threading.Event()
    )
    loops = JournalLoops(node)  # type: ignore[arg-type]
    one = jstore.add_entry(data, agent="w1", title="one")
    two = jstore.add_entry(data, agent="w1", title="two")
    path = Path(one.file)
    full = path.read_text()
    assert loops.publish() is False and len(nats.sent) == 2

    def deletions() -> list[str]:
        return [i for _, _, i in nats.sent if i.startswith(jsync.DELETED)]

    path.write_text(f"# {one.date}\n\n")  # an editor mid-save: truncated, just now
    loops.publish()
    assert deletions() == []
    path.write_text(full)  # the save done: every entry there
    _settled(path)
    loops.publish()
    assert deletions() == []
    path.write_text(full[: full.index("## ", full.index("one"))])  # "two" deleted by hand
    loops.publish()
    assert deletions() == []  # not settled yet
    _settled(path)
    loops.publish()
    assert deletions() == [jsync.DELETED + jstore.entry_id(two)]
    loops.publish()
    assert len(deletions()) == 1  # once
    # an entry read only in a round that published it, then deleted: still sent
    three = jstore.add_entry(data, agent="w1", title="three")
    loops.publish()
    assert nats.sent[-1][2] == jstore.entry_id(three)
    text = path.read_text()
    path.write_text(text[: text.index("## ", text.index("one"))])
    _settled(path)
    loops.publish()
    assert deletions()[-1] == jsync.DELETED + jstore.entry_id(three)


# -- MEMORY.md --------------------------------------------------------------------------


def test_a_remembered_fact_travels_once_and_hand_written_lines_stay(data: DataRoot) -> None:
    jstore.remember(data, "tests need TZ=UTC", agent="w1")
    path = data.memory_file
    path.write_text(path.read_text() + "- a fact written by hand\n")
    lines = jstore.facts(jstore.memory(data))
    out = jsync.facts_to_publish(lines, set(), "a")
    assert [json.loads(o.payload)["fact"] for o in out] == [lines[0]]
    assert lines[0].startswith("tests need TZ=UTC (w1, ")
    assert jsync.facts_to_publish(lines, {out[0].id}, "a") == []

    there = DataRoot(data.root.parent / "there")
    published, applied = jsync.ledgers(there)
    item = jsync.decide_apply(out[0].payload, out[0].id, "b", applied)
    assert (item.decision, item.fact) == ("remember", lines[0])
    assert jsync.decide_apply(out[0].payload, out[0].id, "a", applied).decision == "own"
    assert jsync.decide_apply(out[0].payload, "mem-other", "b", applied).decision == "bad"
    _, error = jsync.apply(there, [item, item], published, applied)
    assert error is None and jstore.facts(jstore.memory(there)) == [lines[0]]
    assert out[0].id in published  # never sent back as b's
    assert jsync.decide_apply(out[0].payload, out[0].id, "b", applied).decision == "have"
    jsync.apply(there, [item], published, applied)  # had: still once
    assert jstore.facts(jstore.memory(there)) == [lines[0]]
    # compaction keeps the ids of the facts MEMORY.md holds
    assert jsync.stale({out[0].id, "mem-gone"}, [], lines) == {"mem-gone"}
