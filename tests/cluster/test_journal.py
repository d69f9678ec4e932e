"""The journal on every host: two "hosts" (two data roots, each with its own
`cmux node`) on one nats-server. An entry added on one is found by `journal
search` on the other within seconds, and is in its markdown once; edited or
deleted by hand on one, it is so on the other; a fact remembered on one is in
the other's MEMORY.md; nodes SIGKILLed mid-stream and started again neither
lose nor double an entry."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from cmux.journal import store
from tests.cluster.hosts import Host, nodes_running
from tests.cluster.natsd import NatsServer
from tests.helpers import wait_until

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def hosts(
    natsd: NatsServer, tmp_path: Path, isolated_env: dict[str, str]
) -> Iterator[tuple[Host, Host]]:
    a = Host.make("a", tmp_path, isolated_env, natsd)
    b = Host.make("b", tmp_path, isolated_env, natsd)
    with nodes_running(a, b):
        yield a, b


def search(host: Host, *query: str) -> list[dict[str, object]]:
    hits: list[dict[str, object]] = host.project.ok("journal", "search", *query, "--json").json()
    return hits


def titles(host: Host) -> list[str]:
    """Every entry title in the host's daily files, as often as it is there."""
    return [e.title for p in store.daily_files(host.data) for e in store.parse_file(p)]


def test_an_entry_added_on_one_host_is_found_by_search_on_the_other(
    hosts: tuple[Host, Host],
) -> None:
    a, b = hosts
    b.project.ok(
        "journal", "add", "Fixed the flaky login test", "--body", "pinned the clock", "--tags", "ci"
    )
    a.project.ok("journal", "add", "Deployed the router to staging")
    store.add_entry(
        a.data, agent="cmux", title="spawned w1", body="task: the router", tags=["spawn"]
    )

    hits = wait_until(lambda: search(a, "flaky"), timeout=5, what="b's entry found on a")
    assert [(h["agent"], h["title"], h["tags"]) for h in hits] == [
        ("human", "Fixed the flaky login test", ["ci"])
    ]
    assert "**clock**" in str(search(a, "clock")[0]["snippet"])
    wait_until(lambda: search(b, "router"), timeout=5, what="a's entries found on b")
    assert sorted(str(h["title"]) for h in search(b, "router")) == [
        "Deployed the router to staging",
        "spawned w1",
    ]
    # in the markdown once, on both: the one applied, and the one come back
    wait_until(lambda: len(titles(b)) == 3 and len(titles(a)) == 3, timeout=5, what="3 entries")
    assert titles(a).count("Fixed the flaky login test") == 1
    assert titles(b).count("Fixed the flaky login test") == 1
    assert sorted(titles(a)) == sorted(titles(b))


def test_nodes_sigkilled_mid_stream_neither_lose_nor_double_entries(
    hosts: tuple[Host, Host],
) -> None:
    a, b = hosts
    n = 60

    def write(host: Host, first: int, last: int) -> None:
        for i in range(first, last):
            store.add_entry(host.data, agent=f"{host.name}1", title=f"{host.name} entry {i}")

    writers = [threading.Thread(target=write, args=(h, 0, n)) for h in (a, b)]
    for t in writers:
        t.start()
    # some across, then both nodes die at any step while the writers go on
    wait_until(lambda: len(titles(a)) > n + 5, timeout=15, what="b's entries arriving on a")
    a.kill_node()
    b.kill_node()
    for t in writers:
        t.join(30)
    write(a, n, n + 10)  # while no node runs
    write(b, n, n + 10)
    b.start_node()
    a.start_node()

    want = sorted(f"{h} entry {i}" for h in "ab" for i in range(n + 10))
    wait_until(
        lambda: len(titles(a)) >= len(want) and len(titles(b)) >= len(want),
        timeout=20,
        what="every entry on both hosts",
    )
    assert sorted(titles(a)) == want, "an entry lost or doubled on a"
    assert sorted(titles(b)) == want, "an entry lost or doubled on b"
    hits = search(a, "entry", "--limit", "1000", "--agent", "b1")
    assert len(hits) == n + 10


def bodies(host: Host, title: str) -> list[str]:
    return [
        e.body
        for p in store.daily_files(host.data)
        for e in store.parse_file(p)
        if e.title == title
    ]


def test_entries_edited_or_deleted_and_facts_remembered_on_one_host_are_so_on_the_other(
    hosts: tuple[Host, Host],
) -> None:
    a, b = hosts
    b.project.ok("journal", "add", "Chose the queue", "--body", "we picked redis")
    a.project.ok("journal", "add", "Unrelated", "--body", "stays as it is")
    wait_until(
        lambda: bodies(a, "Chose the queue") == ["we picked redis"],
        timeout=10,
        what="b's entry on a",
    )
    wait_until(
        lambda: bodies(b, "Unrelated") == ["stays as it is"], timeout=10, what="a's entry on b"
    )

    # a person edits b's entry on b (the body), then a's entry on a (its tags)
    (path,) = [p for p in store.daily_files(b.data) if "Chose the queue" in p.read_text()]
    path.write_text(path.read_text().replace("we picked redis", "we picked NATS, not redis"))
    wait_until(
        lambda: bodies(a, "Chose the queue") == ["we picked NATS, not redis"],
        timeout=10,
        what="the edit replacing the old text on a",
    )
    assert [h["title"] for h in search(a, "NATS")] == ["Chose the queue"]
    (mine,) = [p for p in store.daily_files(a.data) if "Unrelated" in p.read_text()]
    mine.write_text(mine.read_text().replace("· Unrelated\n", "· Unrelated\ntags: later\n"))
    # an edit of the other host's entry travels back the same way
    (theirs,) = [p for p in store.daily_files(a.data) if "Chose the queue" in p.read_text()]
    theirs.write_text(theirs.read_text().replace("not redis", "not redis (see #12)"))
    wait_until(
        lambda: bodies(b, "Chose the queue") == ["we picked NATS, not redis (see #12)"],
        timeout=10,
        what="a's edit of b's entry on b",
    )
    # each entry once on both hosts, with the same text
    for h in (a, b):
        assert sorted(titles(h)) == ["Chose the queue", "Unrelated"], h.name
    wait_until(
        lambda: sorted(map(str, entries_of(a))) == sorted(map(str, entries_of(b))),
        timeout=10,
        what="the same entries on both hosts",
    )
    assert ("human", "Unrelated", ["later"], "stays as it is") in entries_of(b)

    # deleted by hand on b: gone from a too (once the file has settled)
    (path,) = [p for p in store.daily_files(b.data) if "Unrelated" in p.read_text()]
    text = path.read_text()
    start = text.index("## ", text.index("Unrelated") - 40)
    end = text.find("\n## ", start + 3)
    path.write_text(text[:start] + (text[end + 1 :] if end >= 0 else ""))
    assert titles(b) == ["Chose the queue"]
    wait_until(lambda: titles(a) == ["Chose the queue"], timeout=10, what="the deletion on a")

    # a fact remembered on one host is in the other's MEMORY.md
    b.project.ok("journal", "remember", "the staging database is db2")
    wait_until(
        lambda: any("the staging database is db2" in f for f in store.facts(store.memory(a.data))),
        timeout=10,
        what="b's fact in a's MEMORY.md",
    )
    a.project.ok("journal", "remember", "deploys go through the merge queue")
    wait_until(
        lambda: len(store.facts(store.memory(b.data))) == 2,
        timeout=10,
        what="a's fact in b's MEMORY.md",
    )
    assert store.facts(store.memory(a.data)) == store.facts(store.memory(b.data))


def entries_of(host: Host) -> list[tuple[str, str, list[str], str]]:
    return [
        (e.agent, e.title, e.tags, e.body)
        for p in store.daily_files(host.data)
        for e in store.parse_file(p)
    ]
