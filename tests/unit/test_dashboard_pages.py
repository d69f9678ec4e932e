"""The dashboard's HTML is made of escaped text (pure functions, no server)."""

from __future__ import annotations

from typing import Any

from cmux.dashboard import pages

HOSTILE = '<script>alert(1)</script>" onmouseover="x'


def row(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "w1",
        "role": "worker",
        "profile": "demo",
        "state": "idle",
        "task": "t",
        "age_seconds": 75.0,
        "pending": 0,
        "held": 0,
        "unread": None,
    }
    return {**base, **kw}


def test_stored_text_reaches_a_page_escaped_and_without_control_characters() -> None:
    html = pages.agent_row(row(task=HOSTILE + "\x1b[31m"), preview=HOSTILE)
    assert "<script>" not in html and 'onmouseover="x' not in html
    assert "&lt;script&gt;" in html and "\x1b" not in html
    mail = pages.mail_row(
        {"id": "i1", "ts": "", "from": "w1", "to": "human", "kind": "x", "body": HOSTILE}
    )
    assert "<script>" not in mail
    assert "<script>" not in pages.event_row({"event": "send", "agent": "w1", "body": HOSTILE})


def test_a_search_snippet_marks_only_the_matches() -> None:
    got = pages.snippet("a \x02<b>\x03 c \x02d\x03")
    assert got == "a <mark>&lt;b&gt;</mark> c <mark>d</mark>"


def test_a_waiting_or_failing_agent_stands_out() -> None:
    assert 'class="alert"' in pages.agent_row(row(state="waiting"), "")
    assert 'class="alert"' in pages.agent_row(row(state="stuck"), "")
    assert 'class="alert"' not in pages.agent_row(row(state="busy"), "")
    assert 'data-state="busy"' in pages.agent_row(row(state="busy"), "")


def test_the_cells_are_what_the_page_shows() -> None:
    c = pages.cells(row(tokens={"total": 12345}, unread=2, queue="testing"), "last line")
    assert c["age"] == "1m" and c["tokens"] == "12.3k" and c["unread"] == "2"
    assert c["queue"] == "testing" and c["preview"] == "last line" and c["program"] == "demo"
    assert pages.cells(row())["tokens"] == "-" and pages.cells(row())["unread"] == "-"


def test_the_cost_chart_draws_a_line_per_agent_or_says_there_is_nothing() -> None:
    empty = pages.chart({})
    assert 'id="cost-chart"' in empty and "no token use" in empty
    two = pages.chart({"w1": [(0.0, 0), (10.0, 500)], "w2": [(5.0, 100)]})
    assert two.count("<polyline") == 2 and 'data-series="w1"' in two
