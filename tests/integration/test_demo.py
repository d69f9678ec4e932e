"""`cmux demo`: the whole flow with the built-in demo agent, no account."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import Project


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
    # The demo stops its session when it is done.
    assert "stopped" in r.out
