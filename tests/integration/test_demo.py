"""`cmux demo`: the whole flow with the built-in demo agent, no account."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import Project, git


@pytest.mark.timeout(120)
def test_demo_shows_a_supervisor_getting_its_workers_done(
    tmp_path: Path, isolated_env: dict
) -> None:
    where = tmp_path / "demo"
    p = Project(root=tmp_path, env={**isolated_env, "CMUX_DEMO_PACE": "0"})
    r = p.cmux("demo", "--dir", str(where), "--timeout", "60", timeout=100)
    assert r.code == 0, r.out + r.err
    assert "spawned demo-1" in r.out and "spawned demo-2" in r.out
    assert "mail demo-1 → supervisor (done)" in r.out
    assert "mail for you from supervisor" in r.out and "All done" in r.out
    events = [
        json.loads(x) for x in (where / ".cmux" / "state" / "events.jsonl").read_text().splitlines()
    ]
    done_states = {e["agent"] for e in events if e["event"] == "state" and e.get("to") == "done"}
    assert {"demo-1", "demo-2"} <= done_states
    journal = "".join(f.read_text() for f in (where / ".cmux" / "journal").glob("2*.md"))
    assert "demo-1" in journal and "demo task finished" in journal
    # Each worker committed a note in its own worktree; the supervisor queued
    # both branches and the narration shows them landing on trunk, tested.
    for n in (1, 2):
        assert f"merge queue: cmux/demo-{n} queued by supervisor" in r.out
        assert f"merge queue: cmux/demo-{n} LANDED on trunk at " in r.out
    assert "passed in" in r.out and "FAILED" not in r.out
    landed = [e for e in events if e["event"] == "merge-landed"]
    assert {e["agent"] for e in landed} == {"demo-1", "demo-2"}
    tested = {e["commit"] for e in events if e["event"] == "merge-check" and e["ok"]}
    assert {e["commit"] for e in landed} <= tested
    trunk = git(where, "symbolic-ref", "--short", "HEAD").strip()
    assert git(where, "rev-parse", trunk).strip() in {e["commit"] for e in landed}
    for n in (1, 2):
        note = git(where, "show", f"{trunk}:notes/demo-{n}.md")
        assert note.startswith(f"# demo-{n}: Part {n} of 2")
        assert (where / "notes" / f"demo-{n}.md").read_text() == note  # the main checkout too
    assert f"demo-1: landed on {trunk} at " in r.out  # in the supervisor's report
    # Killed after landing, the workers left no worktree or branch behind.
    assert git(where, "branch", "--list", "cmux/*").strip() == ""
    assert len(git(where, "worktree", "list").splitlines()) == 1
    # The demo stops its session when it is done.
    assert "stopped" in r.out
