"""The merge queue with the real Claude Code CLI, end to end.

A Claude supervisor (scripted by tests/e2e/model_server.py) spawns two
``--worktree`` Claude workers; each writes its own file, commits it on its
branch and reports ``mailbox done``. The supervisor waits (in its own turn)
until `workers list` shows both done, then runs ``workers merge`` for each.
The merger daemon that ``cmux start`` runs tests trunk plus the branches
with a real check and lands both; the workers and the supervisor are told.

The supervisor's whole script is one turn: the done reports reach it by the
Stop hook at its end. (Scripting "merge when the report comes" per report
would race in the scripted model, not in cmux: two reports typed at once end
up in one user message after a tool result, and the stand-in model acts on
only one of them.)
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.e2e.conftest import Team, started
from tests.helpers import git, wait_until

pytestmark = pytest.mark.e2e

# A real check: every Python file of the tree must parse (a broken tree fails it).
PARSE_ALL = (
    "import ast, pathlib; "
    "[ast.parse(p.read_text(), str(p)) for p in pathlib.Path('.').rglob('*.py')]; "
    "print('ok')"
)
CHECK = f"""
[[merge.checks]]
name = "python-parses"
command = ["python3", "-c", {json.dumps(PARSE_ALL)}]
timeout = 30
"""


def worker_task(name: str, var: str) -> str:
    """What worker ``name`` does: one file, one commit on its branch, a done report."""
    return (
        f"RUN: echo '{var} = 1' > {name}.py && git add {name}.py "
        f"&& git commit -q -m '{name} adds {name}.py' "
        f"&& mailbox done '{name} committed {name}.py'"
    )


def both_done() -> str:
    """A shell loop the supervisor runs until `workers list` shows w1 and w2 done."""
    done = " && ".join(f"workers list | grep -Eq '^{n} +worker +done'" for n in ("w1", "w2"))
    return f"until {done}; do sleep 0.5; done; workers list"


def queue_rows(team: Team) -> dict[str, dict[str, Any]]:
    return {r["agent"]: r for r in team.project.ok("queue", "--json").json()}


def landed(team: Team) -> dict[str, dict[str, Any]]:
    rows = queue_rows(team)
    bad = {n: r for n, r in rows.items() if r["state"] in ("conflict", "failed", "cancelled")}
    assert not bad, f"refused: {json.dumps(bad, indent=1)}"
    return rows if {rows.get(n, {}).get("state") for n in ("w1", "w2")} == {"landed"} else {}


@pytest.mark.timeout(120)
def test_supervisor_merges_two_worktree_workers_and_both_land(team: Team) -> None:
    root = team.project.root
    with open(root / "cmux.toml", "a") as fh:
        fh.write(CHECK)
    initial = git(root, "rev-parse", "main").strip()
    started(team)
    spawns = [
        f'RUN: workers spawn {n} --worktree --agent claude --task "{worker_task(n, v)}"'
        for n, v in (("w1", "A"), ("w2", "B"))
    ]
    task = "\n".join(
        [
            "Two workers, each in its own worktree; land their work when both are done.",
            *spawns,
            f"RUN: {both_done()}",
            "RUN: workers merge w1",
            "RUN: workers merge w2",
        ]
    )
    team.project.ok("send", "supervisor", task)

    for name in ("w1", "w2"):
        team.wait_state(name, "done", timeout=90)
        agent = team.agent(name)
        assert agent["role"] == "worker"
    rows = wait_until(lambda: landed(team), timeout=60, interval=0.3, what="both entries landed")

    # The supervisor queued both (by the command it ran), in its own name.
    queued = {e["agent"]: e for e in team.events("merge-queued")}
    assert set(queued) == {"w1", "w2"}
    assert {e["by"] for e in queued.values()} == {"supervisor"}
    seen = team.seen_by("supervisor")
    assert "queued: merge #1 of cmux/w1" in seen and "of cmux/w2 onto main" in seen

    # Both files are on trunk, and in the main checkout's work tree.
    tip = git(root, "rev-parse", "main").strip()
    assert tip == max((rows["w1"]["landed"], rows["w2"]["landed"]), key=lambda c: _depth(root, c))
    for name, var in (("w1", "A"), ("w2", "B")):
        assert git(root, "show", f"main:{name}.py") == f"{var} = 1\n"
        assert (root / f"{name}.py").read_text() == f"{var} = 1\n"
    assert git(root, "rev-parse", "HEAD").strip() == tip
    assert git(root, "symbolic-ref", "--short", "HEAD").strip() == "main"

    # Trunk only ever pointed at tested commits: every value main took (its
    # reflog) after the start is a commit whose checks passed.
    passed = {e["commit"] for e in team.events("merge-check") if e["ok"]}
    assert not [e for e in team.events("merge-check") if not e["ok"]]
    values = git(root, "reflog", "show", "--format=%H", "refs/heads/main").split()
    assert values[-1] == initial
    assert values[:-1] and set(values[:-1]) <= passed, (values, passed)
    for name in ("w1", "w2"):
        assert rows[name]["landed"] in passed
        assert rows[name]["runs"] >= 1

    from cmux.agents import registry

    # The workers' branches are as they committed them: one commit on the
    # initial one, kept under refs/cmux/merged/ too.
    for name in ("w1", "w2"):
        head = git(root, "rev-parse", f"cmux/{name}").strip()
        assert head == rows[name]["head"]
        assert git(root, "rev-parse", rows[name]["kept"]).strip() == head
        assert git(root, "rev-parse", f"cmux/{name}^").strip() == initial
        assert git(root, "log", "-1", "--format=%s", head).strip() == f"{name} adds {name}.py"
        worktree = str(registry.get(team.project.config().data, name).worktree)
        assert git(root, "-C", worktree, "status", "--porcelain") == ""
        assert git(root, "-C", worktree, "rev-parse", "HEAD").strip() == head

    # The landed notices reached each worker's and the supervisor's conversation.
    for name in ("w1", "w2"):
        news = f"landed on main at {rows[name]['landed'][:12]}"
        team.wait_seen(name, f"merged: cmux/{name}", news, timeout=60)
        team.wait_seen("supervisor", f"merged: cmux/{name}", news, timeout=60)
    assert len(team.events("merge-landed")) == 2


def _depth(root: Any, commit: str) -> int:
    return int(git(root, "rev-list", "--count", commit).strip())
