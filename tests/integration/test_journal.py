"""The journal with real processes: concurrent writers, tools/journal, cmux journal."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

from cmux.journal import store
from cmux.paths import DataRoot
from tests.helpers import REPO, Project

WRITERS = 8
PER_WRITER = 50

WRITER = """
import os, sys, time
from cmux.journal import store
from cmux.paths import DataRoot

root, me, go, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
deadline = time.monotonic() + 30
while not os.path.exists(go):  # start together, to collide
    if time.monotonic() > deadline:
        sys.exit("no go signal")
    time.sleep(0.002)
data = DataRoot(root)
for i in range(count):
    store.add_entry(data, agent=me, title=f"{me} entry {i}", body=body(me, i), tags=[me, f"n{i}"])
"""


def body(me: str, i: int) -> str:
    """Multi-line, sometimes over PIPE_BUF, sometimes with a line like a heading."""
    lines = [f"What was done: step {i} by {me}", "", "## Why", f"because {me}-{i}"]
    if i % 10 == 0:
        lines += [f"{me}-{i} long line {j} " + "x" * 80 for j in range(80)]  # ~8 KB
    return "\n".join(lines)


def test_many_processes_appending_at_once_never_interleave_or_tear(tmp_path: Path) -> None:
    data = DataRoot(tmp_path / "data")
    go = tmp_path / "go"
    script = inspect.getsource(body) + WRITER
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(data.root), f"p{n}", str(go), str(PER_WRITER)],
            cwd=REPO,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(WRITERS)
    ]
    go.touch()
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err

    (path,) = store.daily_files(data)
    text = path.read_text()
    entries = store.parse_file(path)
    assert len(entries) == WRITERS * PER_WRITER
    assert text.count("\n## ") == WRITERS * PER_WRITER  # no heading lost or doubled
    seen = set()
    for e in entries:
        me, _, number = e.title.split(" ")
        i = int(number)
        assert e.agent == me and e.tags == [me, f"n{i}"]
        assert e.body == store.clean_body(body(me, i)), f"{e.title} was torn or mixed"
        seen.add((me, i))
    assert len(seen) == WRITERS * PER_WRITER
    # Each writer's own entries are in the order it wrote them.
    for w in range(WRITERS):
        mine = [int(e.title.split()[-1]) for e in entries if e.agent == f"p{w}"]
        assert mine == list(range(PER_WRITER))


def test_concurrent_first_searches_build_one_index_and_all_answer(project: Project) -> None:
    for i in range(30):
        assert project.tool("journal", "add", f"note {i} about the walrus", agent="w1").code == 0
    env = {**project.env, "CMUX_HOME": str(project.data), "CMUX_PROJECT": str(project.root)}
    procs = [
        subprocess.Popen(
            [str(REPO / "tools" / "journal"), "search", "walrus", "--limit", "50", "--json"],
            env={**env, "CMUX_PYTHON": sys.executable},
            cwd=project.root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        assert len(json.loads(out)) == 30


# -- tools/journal, as an agent calls it ------------------------------------------------------


def test_an_agent_adds_searches_and_reads_back(project: Project) -> None:
    r = project.tool(
        "journal",
        "add",
        "Fixed the flaky login test",
        "--tags",
        "tests,auth",
        "--body",
        "What was done: pinned the clock.\nWhy: midnight.",
        "--json",
        agent="w1",
    )
    assert r.code == 0, r.err
    entry = r.json()
    assert (entry["agent"], entry["title"], entry["tags"]) == (
        "w1",
        "Fixed the flaky login test",
        ["tests", "auth"],
    )
    day = Path(entry["file"])
    assert day.parent == project.data / "journal" and day.name == f"{entry['date']}.md"

    piped = project.tool(
        "journal", "add", "From a pipe", "-", input="line one\nline two\n", agent="w2"
    )
    assert piped.code == 0 and "From a pipe" in piped.out

    hits = project.tool("journal", "search", "flaky", "--json", agent="w3").json()
    assert [(h["agent"], h["title"]) for h in hits] == [("w1", "Fixed the flaky login test")]
    assert hits[0]["date"] == entry["date"] and hits[0]["time"] == entry["time"]

    text = project.tool("journal", "search", "flaky", agent="w3")
    assert "w1  Fixed the flaky login test  [tests, auth]" in text.out
    assert f"{day}:{entry['line']}" in text.out

    recent = project.tool("journal", "recent", "--json").json()
    assert [e["title"] for e in recent] == ["Fixed the flaky login test", "From a pipe"]
    assert recent[1]["body"] == "line one\nline two"

    shown = project.tool("journal", "show")
    assert shown.code == 0 and shown.out == day.read_text()
    assert project.tool("journal", "show", "today", "--json").json()[0]["agent"] == "w1"


def test_remember_and_memory(project: Project) -> None:
    r = project.tool("journal", "remember", "the", "tests", "need", "TZ=UTC", agent="w1")
    assert r.code == 0 and "remembered: the tests need TZ=UTC (w1," in r.out
    again = project.tool("journal", "remember", "the tests need TZ=UTC", "--json", agent="w2")
    assert again.json()["added"] is False
    mem = project.tool("journal", "memory", "--json").json()
    assert len(mem["facts"]) == 1 and mem["facts"][0].startswith("the tests need TZ=UTC")
    ctx = project.tool("journal", "context", "--budget", "2000")
    assert ctx.code == 0 and "the tests need TZ=UTC" in ctx.out and len(ctx.out) <= 2000


def test_mistakes_get_a_clear_error_and_a_usage_exit_code(project: Project) -> None:
    empty = project.tool("journal", "search", "++")
    assert empty.code == 2
    assert "journal: error: nothing to search for" in empty.err and "hint:" in empty.err
    notitle = project.tool("journal", "add", "   ")
    assert notitle.code == 2 and "needs a title" in notitle.err
    twice = project.tool("journal", "add", "t", "body", "--body", "other")
    assert twice.code == 2 and "body once" in twice.err
    baddate = project.tool("journal", "show", "someday")
    assert baddate.code == 2 and "YYYY-MM-DD" in baddate.err
    nolimit = project.tool("journal", "search", "x", "--limit", "0")
    assert nolimit.code == 2 and "1 or more" in nolimit.err
    missing = project.tool("journal", "show", "2001-01-01")
    assert missing.code == 0 and "no journal entries on 2001-01-01" in missing.out


def test_odd_queries_do_not_crash_the_tool(project: Project) -> None:
    project.tool("journal", "add", "C++ build of foo-bar", "--body", "NEAR(x) and (((", agent="w1")
    for q in ("c++", "foo-bar", "NEAR(x)", "(((", '"unclosed', "title:", "a OR"):
        r = project.tool("journal", "search", q, "--json")
        assert r.code in (0, 2), r.err
        assert "Traceback" not in r.err
    assert project.tool("journal", "search", "foo-bar", "--json").json()[0]["title"] == (
        "C++ build of foo-bar"
    )


def test_the_tool_finds_a_hand_edit_and_survives_a_deleted_index(project: Project) -> None:
    assert project.tool("journal", "add", "Chose sqlite", "--body", "over postgres").code == 0
    assert len(project.tool("journal", "search", "postgres", "--json").json()) == 1
    (day,) = (project.data / "journal").glob("????-??-??.md")
    day.write_text(day.read_text().replace("postgres", "mariadb!"))
    assert project.tool("journal", "search", "postgres", "--json").json() == []
    assert len(project.tool("journal", "search", "mariadb", "--json").json()) == 1
    (project.data / "state" / "index.db").unlink()
    assert len(project.tool("journal", "search", "mariadb", "--json").json()) == 1


def test_tool_help_teaches(project: Project) -> None:
    r = project.tool("journal", "--help")
    assert r.code == 0
    for word in ("add", "search", "recent", "show", "remember", "examples:"):
        assert word in r.out
    s = project.tool("journal", "search", "--help")
    assert '"flaky test"' in s.out and "prefix" in s.out


def test_the_tool_starts_quickly_without_rich_or_click(project: Project) -> None:
    env = {**project.env, "CMUX_HOME": str(project.data), "CMUX_PROJECT": str(project.root)}
    code = (
        "import sys, runpy; sys.argv=['journal','recent'];"
        "\ntry:\n runpy.run_module('cmux.agenttools.journal', run_name='__main__')"
        "\nexcept SystemExit: pass"
        "\nprint(sorted(m for m in sys.modules if m.split('.')[0] in ('rich','click')))"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30
    )
    assert r.stdout.strip().endswith("[]"), r.stdout + r.stderr


# -- cmux journal, as a person uses it ----------------------------------------------------------


def test_a_person_uses_cmux_journal(project: Project) -> None:
    add = project.ok("journal", "add", "Paused the migration", "--tags", "db", "-b", "Why: Friday.")
    assert "human · Paused the migration" in add.out
    hits = json.loads(project.ok("journal", "search", "migration", "--json").out)
    assert [(h["agent"], h["title"], h["tags"]) for h in hits] == [
        ("human", "Paused the migration", ["db"])
    ]
    plain = project.ok("journal", "search", "migration")
    assert "Paused the migration" in plain.out
    assert f".cmux/journal/{hits[0]['date']}.md:{hits[0]['line']}\n" in plain.out
    assert "Paused the migration" in project.ok("journal").out  # no subcommand: today
    assert "Why: Friday." in project.ok("journal", "recent", "--days", "2").out
    assert "## " in project.ok("journal", "show", "today").out
    assert "remembered" in project.ok("journal", "remember", "freeze on Fridays").out
    assert "freeze on Fridays" in project.ok("journal", "memory").out
    assert "freeze on Fridays" in project.ok("journal", "context").out
    rebuilt = json.loads(project.ok("journal", "reindex", "--json").out)
    assert rebuilt["entries_indexed"] == 1 and rebuilt["rebuilt"] is True
    bad = project.cmux("journal", "search", "--", "-only")
    assert bad.code == 2 and "not only words to exclude" in bad.err


def test_an_agent_and_a_person_see_the_same_journal(project: Project) -> None:
    assert project.tool("journal", "add", "Worker note about kiwis", agent="w4").code == 0
    hits = json.loads(project.ok("journal", "search", "kiwis", "--json").out)
    assert [(h["agent"], h["title"]) for h in hits] == [("w4", "Worker note about kiwis")]
    project.ok("journal", "add", "Person note about kiwis")
    found = project.tool("journal", "search", "kiwis", "--json").json()
    assert {h["agent"] for h in found} == {"w4", "human"}


def test_a_fresh_supervisor_context_has_the_latest_entries(project: Project) -> None:
    data = DataRoot(project.data)
    start = datetime.now() - timedelta(days=3)
    for i in range(60):
        when = start + timedelta(hours=i)
        store.add_entry(data, agent="w1", title=f"step {i:02d} done", body="x" * 300, when=when)
    project.tool("journal", "remember", "the API freezes on Fridays")
    ctx = project.tool("journal", "context").out
    assert "the API freezes on Fridays" in ctx
    assert "step 59 done" in ctx and "step 58 done" in ctx
    assert ctx.index("step 59 done") < ctx.index("step 58 done")
    assert "step 00 done" not in ctx  # over the default 12,000-character budget
    assert len(ctx) <= 12000
