"""What a fresh supervisor session is started with: MEMORY.md and the latest entries."""

from __future__ import annotations

from datetime import datetime, timedelta

from cmux.journal import store
from cmux.journal.context import start_context
from cmux.paths import DataRoot

START = datetime(2026, 3, 1, 8, 0, 0)


def write_days(data: DataRoot, days: int, per_day: int, body: str = "details") -> list[str]:
    titles = []
    for d in range(days):
        for i in range(per_day):
            when = START + timedelta(days=d, minutes=i)
            title = f"entry d{d:02d} n{i:02d}"
            store.add_entry(data, agent=f"w{i % 3}", title=title, body=body, when=when)
            titles.append(title)
    return titles


def test_the_context_has_the_facts_and_the_latest_entries_newest_first(data: DataRoot) -> None:
    store.remember(data, "the tests need TZ=UTC", agent="human")
    titles = write_days(data, 3, 4)
    ctx = start_context(data)
    assert "the tests need TZ=UTC" in ctx
    assert "<!--" not in ctx  # MEMORY.md's own instructions are not repeated
    positions = [ctx.index(t) for t in reversed(titles)]
    assert positions == sorted(positions), "newest first"
    assert ctx.index("TZ=UTC") < positions[0], "memory comes before the entries"
    assert "### 2026-03-03 08:03:00 · w0 · entry d02 n03" in ctx


def test_the_context_keeps_to_its_budget_and_drops_the_oldest(data: DataRoot) -> None:
    store.remember(data, "deploys go through make release", agent="w1")
    titles = write_days(data, 10, 20, body="a sentence that takes some room. " * 5)
    for budget in (600, 3000, 12000):
        ctx = start_context(data, budget_chars=budget)
        assert len(ctx) <= budget
        assert titles[-1] in ctx, "the newest entry is always there"
        assert titles[0] not in ctx, "the oldest does not fit"
        assert "journal search" in ctx, "says where the rest is"
    assert "deploys go through make release" in start_context(data, budget_chars=3000)


def test_a_huge_entry_is_clipped_rather_than_crowding_out_the_rest(data: DataRoot) -> None:
    write_days(data, 1, 3)
    store.add_entry(
        data, agent="w1", title="the huge one", body="x" * 50_000, when=START + timedelta(hours=5)
    )
    ctx = start_context(data, budget_chars=12000)
    assert "the huge one" in ctx and "clipped" in ctx
    assert "entry d00 n02" in ctx and "entry d00 n00" in ctx
    assert len(ctx) <= 12000


def test_an_oversized_memory_takes_at_most_half_the_budget(data: DataRoot) -> None:
    data.journal_dir.mkdir(parents=True)
    data.memory_file.write_text("# Memory\n\n" + "".join(f"- fact {i}\n" for i in range(2000)))
    write_days(data, 1, 2)
    ctx = start_context(data, budget_chars=4000)
    assert len(ctx) <= 4000
    assert "journal memory" in ctx
    assert "entry d00 n01" in ctx


def test_an_empty_journal_says_so(data: DataRoot) -> None:
    ctx = start_context(data)
    assert "empty" in ctx and len(ctx) < 200


def test_hand_written_entries_appear_too(data: DataRoot) -> None:
    data.journal_dir.mkdir(parents=True)
    (data.journal_dir / "2026-03-05.md").write_text("We agreed to freeze the API on Friday.\n")
    ctx = start_context(data)
    assert "freeze the API on Friday" in ctx
