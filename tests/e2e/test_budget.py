"""Token budgets with the real Claude Code CLI: a worker past 80 % of its
``[claude] max_tokens`` is warned, at 100 % interrupted and asked to report,
and stopped ``worker_grace`` later with its work kept. The scripted model
server makes each answer cost about 1,000 tokens, one answer every 6 s."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import Team, started
from tests.helpers import git, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


def test_a_worker_over_its_budget_is_warned_interrupted_and_stopped(team: Team) -> None:
    root = team.project.root
    toml = (root / "cmux.toml").read_text()
    toml = toml.replace("[claude]\n", "[claude]\nmax_tokens = 2500\n", 1)
    (root / "cmux.toml").write_text(toml + "\n[health]\nworker_grace = 4\n")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "budgets")
    team.model.output_tokens = 1000
    started(team)
    # Answers slower than the watchdog's look at the transcripts (every 5 s), so
    # it sees the use at 80 % before it passes 100 %.
    team.model.delay = 6
    task = "\n".join(
        [
            "RUN: echo one > one.txt && git add one.txt && git commit -q -m one",
            "RUN: echo two",
            "RUN: sleep 90",
        ]
    )
    team.project.ok("spawn", "w1", "--worktree", "--agent", "claude", "--task", task)

    def budget_events(kind: str) -> list[dict[str, object]]:
        return [e for e in team.events("watchdog", "w1") if e.get("kind") == f"budget-{kind}"]

    wait_until(lambda: budget_events("warn"), timeout=60, what="the 80 % warning")
    wait_until(lambda: budget_events("interrupt"), timeout=60, what="the interruption")
    [stop] = wait_until(lambda: team.events("interrupt", "w1"), timeout=20, what="Escape")
    assert stop["stopped"] is True  # Claude Code ended its turn (the sleep was cut short)
    # The request to report reached the model, typed in once it was idle.
    team.wait_seen("w1", "token budget", timeout=30)
    wait_until(lambda: budget_events("end"), timeout=30, what="stopped after the grace")
    team.wait_state("w1", "killed", timeout=30)
    [warned] = budget_events("warn")
    assert 2000 <= int(str(warned["used"])) < 2500
    # The parent heard each step; the work is kept (its commit is on cmux/w1).
    from cmux.mail import store
    from cmux.paths import DataRoot

    told = " ".join(m.body for m in store.read_all(DataRoot(team.project.data), "supervisor"))
    assert "near its budget" in told or "w1 has used" in told
    assert "spent its budget" in told or "interrupted it" in told
    assert "was stopped" in told
    assert "one" in git(root, "log", "--format=%s", "cmux/w1")
    cost = team.project.ok("cost", "--json").json()
    [w1] = [a for a in cost["agents"] if a["name"] == "w1"]
    assert w1["budget"] == 2500 and w1["total"] >= 2500
