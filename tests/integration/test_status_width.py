"""`cmux status` in an 80-column terminal: one line per agent, whatever the
task's length, the task cut with an ellipsis (issue 15's terminal view)."""

from __future__ import annotations

import pytest

from cmux import ui
from tests.helpers import Project

pytestmark = pytest.mark.timeout(90)

LONG = (
    "Rewrite the login flow so that sessions survive a restart of the server, "
    "add tests for the expiry edge cases, update the docs, and report with mailbox done"
)


@pytest.mark.parametrize("columns", [80, 100, 160])
def test_one_line_per_agent_at_any_width(project: Project, columns: int) -> None:
    project.ok("start", "--command", "sleep 600", "--no-attach")
    for name in ("w1", "worker-with-a-long-name"):
        project.ok("spawn", name, "--command", "sleep 600", "--task", LONG)
    out = project.ok("status", env={"COLUMNS": str(columns)}).out
    lines = out.rstrip("\n").splitlines()
    assert all(len(ln) <= columns for ln in lines), [len(ln) for ln in lines]
    for name in ("supervisor", "w1", "worker-with-a-long-name"):
        mine = [ln for ln in lines if name in ln]
        assert len(mine) == 1, (name, lines)
    [w1] = [ln for ln in lines if ln.lstrip("│ ").startswith("w1 ")]
    assert "…" in w1 and "Rewrite the login" in w1
    assert ("LAST EVENT" in out) == (columns >= 120)


def test_watch_highlights_what_changed() -> None:
    before = {"w1": {"STATE": "idle", "AGE": "3s", "MAIL": ""}}
    after = {
        "w1": {"STATE": "busy", "AGE": "4s", "MAIL": ""},
        "w2": {"STATE": "starting", "AGE": "0s", "MAIL": ""},
    }
    assert ui.changes(before, after) == {"w1": {"STATE"}, "w2": {"STATE", "MAIL"}}
