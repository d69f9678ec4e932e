"""Stored text (mail, journal files, tasks, events) printed by real cmux and
tools/ processes never carries an escape sequence or control character to the
terminal, nor rich markup; --json stays exact."""

from __future__ import annotations

import json
import re

from tests.helpers import Project, Run

# OSC 52 (writes the clipboard), OSC 0 (the title), CSI (clears the screen),
# a DCS string, a C1 CSI, a bell, a backspace; and rich markup and an emoji code.
HOSTILE = (
    "before\x1b]52;c;cHduZWQ=\x07after \x1b]0;title\x1b\\ \x1b[2J\x1bPdcs\x1b\\ "
    "\x9b31m c1 \x07\x08 [bold red]not bold[/] [/] :smile:"
)
# What a terminal may receive: printable text, newline, tab.
RAW = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def clean(r: Run) -> str:
    bad = sorted({hex(ord(c)) for c in RAW.findall(r.out + r.err)})
    assert not bad, f"control characters reached the terminal: {bad}\n{r.out!r}"
    return r.out


def shown(out: str) -> None:
    """The words around the sequences are there, markup as typed."""
    assert "before" in out and "after" in out
    assert "[bold red]not bold[/]" in out
    assert ":smile:" in out


TASK = "fix [bold red]x[/] \x1b]52;c;cHduZWQ=\x07now :smile:"


def start(project: Project) -> None:
    project.ok("start", "--command", "sleep 600", "--no-attach")
    project.ok("spawn", "w1", "--command", "sleep 600", "--task", TASK)


def test_mail_printed_to_a_person_or_an_agent_is_safe_and_json_exact(project: Project) -> None:
    start(project)
    assert project.tool("mailbox", "send", "human", HOSTILE, agent="w1").code == 0
    shown(clean(project.ok("inbox", "--peek")))
    as_json = clean(project.ok("inbox", "--peek", "--json"))
    assert json.loads(as_json)[0]["body"] == HOSTILE  # exact, escaped as JSON
    shown(clean(project.ok("inbox")))
    shown(clean(project.ok("inbox", "--all")))

    project.ok("send", "w1", HOSTILE)
    shown(clean(project.tool("mailbox", "read", "--all", agent="w1")))
    mine = clean(project.tool("mailbox", "read", "--all", "--json", agent="w1"))
    assert [m["body"] for m in json.loads(mine)] == [HOSTILE]


def test_journal_files_edited_by_hand_print_safely(project: Project) -> None:
    assert project.tool("journal", "add", "probe", "--body", "plain body", agent="w1").code == 0
    day = next((project.data / "journal").glob("????-??-??.md"))
    day.write_text(day.read_text() + HOSTILE + "\n")
    memory = project.data / "journal" / "MEMORY.md"
    memory.write_text("# Memory\n\n- " + HOSTILE + "\n")

    for args in (
        ("journal", "show"),
        ("journal", "recent", "--full"),
        ("journal", "memory"),
        ("journal", "context"),
    ):
        shown(clean(project.ok(*args)))
        shown(clean(project.tool(*args, agent="w1")))
    clean(project.ok("journal", "search", "before"))
    clean(project.tool("journal", "search", "before", agent="w1"))
    entries = json.loads(clean(project.ok("journal", "show", "--json")))
    assert HOSTILE in entries[-1]["body"]  # --json keeps it exact


def test_start_context_tasks_status_and_events_are_safe(project: Project) -> None:
    memory = project.data / "journal" / "MEMORY.md"
    memory.parent.mkdir(parents=True, exist_ok=True)
    memory.write_text("# Memory\n\n- " + HOSTILE + "\n")
    start(project)
    for name in ("supervisor", "w1"):
        text = (project.data / "contexts" / f"{name}.md").read_text()
        assert not RAW.findall(text.replace("\n", "").replace("\t", ""))
    assert "before" in (project.data / "contexts" / "supervisor.md").read_text()

    status = clean(project.ok("status", env={"COLUMNS": "200"}))
    assert "fix [bold red]x[/] now :smile:" in status  # markup shown, not applied
    events = clean(project.ok("events", "-n", "200"))
    assert "task=fix [bold red]x[/] now" in events
    spawn = [
        json.loads(line)
        for line in clean(project.ok("events", "--json", "-n", "200")).splitlines()
        if '"spawn"' in line
    ]
    assert any(e.get("task") == TASK for e in spawn)  # exact


def test_workers_list_shows_tasks_safely(project: Project) -> None:
    start(project)
    out = clean(project.tool("workers", "list", agent="supervisor"))
    assert "w1" in out and "fix [bold red]x[/] now" in out
