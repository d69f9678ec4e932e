"""The journal on every host, its decisions without NATS: what a node
publishes (cmux.cluster.journal.to_publish), what it applies (decide_apply),
and that applying twice, or after dying midway, leaves one copy."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest

from cmux.cluster import journal as jsync
from cmux.journal import index, store
from cmux.journal.store import Entry
from cmux.paths import DataRoot

WHEN = datetime(2026, 11, 21, 14, 3, 22)


def entry(title: str = "Fixed the flaky test", **kw: object) -> Entry:
    fields: dict[str, object] = {
        "date": "2026-11-21",
        "time": "14:03:22",
        "agent": "w1",
        "title": title,
        "tags": ["tests"],
        "body": "What was done: pinned the clock.",
    }
    fields.update(kw)
    return Entry(**fields)  # type: ignore[arg-type]


def delivery(e: Entry, host: str = "b") -> tuple[bytes, str]:
    raw = jsync.payload(e, host)
    return raw, json.loads(raw)["id"]


def test_the_id_is_the_content_s_alike_on_every_host_and_after_a_round_trip(
    data: DataRoot,
) -> None:
    written = store.add_entry(
        data, agent="w1", title="Fixed the flaky test", body="pinned ## it", tags=["ci"], when=WHEN
    )
    (parsed,) = store.parse_file(Path(written.file))
    assert store.entry_id(parsed) == store.entry_id(written)
    assert store.entry_id(store.as_written(parsed)) == store.entry_id(parsed)
    # file and line are not content; a hand edit of the title is
    moved = Entry(**{**parsed.to_dict(), "file": "/elsewhere", "line": 99})
    assert store.entry_id(moved) == store.entry_id(parsed)
    assert store.entry_id(entry("Fixed the flaky test!")) != store.entry_id(entry())


def test_to_publish_gives_what_is_not_published_yet_oldest_first_once() -> None:
    one, two = entry("one"), entry("two")
    published = {store.entry_id(one)}
    out = jsync.to_publish([one, two, two], published, "a")
    assert [o.id for o in out] == [store.entry_id(two)]
    sent = json.loads(out[0].payload)
    assert sent["host"] == "a" and sent["entry"]["title"] == "two" and sent["id"] == out[0].id
    assert jsync.to_publish([one, two], published | {out[0].id}, "a") == []


def test_decide_apply_skips_its_own_what_it_has_and_what_is_not_an_entry() -> None:
    raw, eid = delivery(entry())
    assert jsync.decide_apply(raw, eid, "a", set()).decision == "apply"
    assert jsync.decide_apply(raw, eid, "b", set()).decision == "own"
    assert jsync.decide_apply(raw, eid, "a", {eid}).decision == "have"
    bad = jsync.decide_apply(raw, "f" * 32, "a", set())
    assert bad.decision == "bad" and "is not its content" in bad.reason
    tampered = raw.replace(b"pinned", b"broke")
    assert jsync.decide_apply(tampered, eid, "a", set()).decision == "bad"
    for junk in (b"{", b"[]", b'{"host": "b"}', json.dumps({"host": 1, "entry": {}}).encode()):
        assert jsync.decide_apply(junk, eid, "a", set()).decision == "bad"


def test_an_applied_entry_is_in_the_markdown_and_the_index_once_and_never_sent_back(
    data: DataRoot,
) -> None:
    store.add_entry(data, agent="a1", title="mine", when=WHEN)
    published, applied = jsync.ledgers(data)
    raw, eid = delivery(entry(body="the ## clock\n\n```\n## in code\n```"))
    item = jsync.decide_apply(raw, eid, "a", applied)
    assert jsync.apply(data, [item], published, applied) == ([item], None)
    # delivered again (the ack was lost): skipped
    assert jsync.decide_apply(raw, eid, "a", applied).decision == "have"
    text = (data.journal_dir / "2026-11-21.md").read_text()
    assert text.count("Fixed the flaky test") == 1
    hits = index.search(data, "flaky")
    assert [(h.agent, h.title) for h in hits] == [("w1", "Fixed the flaky test")]
    # what this host's node would publish: its own entry, not the applied one
    published2, _ = jsync.ledgers(data)  # as a restarted node reads them
    entries = store.parse_file(data.journal_dir / "2026-11-21.md")
    assert [
        json.loads(o.payload)["entry"]["title"] for o in jsync.to_publish(entries, published2, "a")
    ] == ["mine"]


def test_a_node_killed_after_the_append_before_its_ledger_keeps_one_copy(
    data: DataRoot,
) -> None:
    published, applied = jsync.ledgers(data)
    raw, eid = delivery(entry())
    item = jsync.decide_apply(raw, eid, "a", applied)
    # the first node: ledger for "never send back", the append, then died
    published.add([store.entry_id(store.as_written(item.entry))])  # type: ignore[arg-type]
    store.append_entry(data, item.entry)  # type: ignore[arg-type]
    store.add_entry(data, agent="a1", title="written meanwhile", when=WHEN)
    # the next node gets the delivery again
    published, applied = jsync.ledgers(data)
    again = jsync.decide_apply(raw, eid, "a", applied)
    assert again.decision == "apply"
    assert jsync.apply(data, [again, again], published, applied) == ([again], None)
    entries = store.parse_file(data.journal_dir / "2026-11-21.md")
    assert [e.title for e in entries] == ["Fixed the flaky test", "written meanwhile"]
    assert eid in jsync.ledgers(data)[1]


def test_a_ledger_survives_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "published"
    led = jsync.Ledger(path)
    led.add(["aa", "bb"])
    with open(path, "a") as f:
        f.write("c")  # a crash mid-write
    led = jsync.Ledger(path)
    assert led.ids == {"aa", "bb"}
    led.add(["cc"])
    assert jsync.Ledger(path).ids == {"aa", "bb", "cc"}


@pytest.mark.parametrize(
    "made",
    [
        entry(time="", agent="?", title="Notes written by hand"),
        entry(time="11:30", agent="?", title="a heading with a time"),
        entry(tags=[], body=""),
    ],
)
def test_hand_written_entries_read_back_as_they_were_sent(made: Entry) -> None:
    back = store.as_written(made)
    assert (back.time, back.agent, back.title, back.tags, back.body) == (
        made.time,
        made.agent,
        made.title,
        made.tags,
        made.body,
    )


def test_an_entry_that_cannot_be_written_is_not_noted_so_it_comes_again(data: DataRoot) -> None:
    published, applied = jsync.ledgers(data)
    ok_raw, ok_id = delivery(entry("kept"))
    bad_raw, bad_id = delivery(entry("no room", date="2026-11-22"))
    (data.journal_dir / "2026-11-22.md").mkdir(parents=True)  # its day file cannot be written
    items = [
        jsync.decide_apply(r, i, "a", applied) for r, i in ((ok_raw, ok_id), (bad_raw, bad_id))
    ]
    done, error = jsync.apply(data, items, published, applied)
    assert [i.id for i in done] == [ok_id] and error is not None
    assert jsync.decide_apply(bad_raw, bad_id, "a", jsync.ledgers(data)[1]).decision == "apply"
    assert jsync.decide_apply(ok_raw, ok_id, "a", jsync.ledgers(data)[1]).decision == "have"
