"""Merger defects found while writing docs/MERGE.md, each once a failing
case and now a guard: a cancel as trunk moves, a cancel of a waiting entry,
a waiting entry's time in state, trunk checked out in another worktree."""

from __future__ import annotations

from cmux.merge import queue as q
from cmux.merge.merger import Link, Round
from cmux.ops import merge as ops
from cmux.paths import DataRoot
from tests.helpers import Project
from tests.integration.test_merge_queue import merger, queue, setup_project, tip, worker


def test_a_cancel_between_the_candidate_and_the_trunk_move(project: Project) -> None:
    """`cmux merge --cancel` while the merger lands: trunk moves under the
    queue's lock, so the cancel waits for it and then finds the entry landed
    (it is refused); never an entry that reads cancelled with its work on trunk."""
    import subprocess
    import sys

    setup_project(project)
    worker(project, "w1", {"a.txt": "a\n"})
    project.ok("merge", "w1")
    m = merger(project)
    real = m._move_trunk
    cancels: list[subprocess.Popen[str]] = []

    def cancel_meanwhile(trunk: str, base: str, target: str) -> tuple[str, str]:
        cancels.append(
            subprocess.Popen(
                [sys.executable, "-m", "cmux", "merge", "--cancel", "w1"],
                cwd=project.root,
                env=project.env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
        return real(trunk, base, target)

    m._move_trunk = cancel_meanwhile  # type: ignore[method-assign]
    before = tip(project)
    m.step()
    [proc] = cancels
    _, err = proc.communicate(timeout=60)
    row = queue(project)["w1"]
    assert row["state"] == "landed" and tip(project) != before
    assert proc.returncode != 0 and "nothing in the merge queue" in err, err


def test_a_cancel_of_a_waiting_entry_as_it_is_retried(project: Project) -> None:
    """The merger's retry of a waiting entry moves it without looking at its
    state: a cancel just before raises QueueError out of step()."""
    setup_project(project)
    worker(project, "w1", {"notes.txt": "from the worker\n"})
    (project.root / "notes.txt").write_text("mine\n")
    project.ok("merge", "w1")
    m = merger(project)
    assert m.step().waiting == [1]  # type: ignore[union-attr]
    real = m._retry_waiting

    def cancel_first(chain: list[Link]) -> Round:
        ops.cancel(project.config(), "w1")
        return real(chain)

    m._retry_waiting = cancel_first  # type: ignore[method-assign]
    m.step()  # raises cmux.merge.queue.QueueError: merge #1 of w1 is cancelled already
    assert q.load(DataRoot(project.data)).get(1).state == "cancelled"  # type: ignore[union-attr]


def test_time_in_state_of_a_waiting_entry(project: Project) -> None:
    """A waiting entry is moved to testing and back on every retry (2 s in the
    daemon): `cmux queue` never shows it waiting for longer than that."""
    setup_project(project)
    worker(project, "w1", {"notes.txt": "from the worker\n"})
    (project.root / "notes.txt").write_text("mine\n")
    project.ok("merge", "w1")
    m = merger(project)
    m.step()
    first = q.load(DataRoot(project.data)).get(1)
    assert first is not None and first.state == "waiting"
    m.step()  # the daemon's retry, 2 s later
    again = q.load(DataRoot(project.data)).get(1)
    assert again is not None and again.state == "waiting"
    assert again.since == first.since, [h[0] for h in again.history]


def test_trunk_checked_out_in_another_worktree(project: Project) -> None:
    """Trunk is checked out in a worktree other than the main checkout (the
    main checkout is on another branch): trunk moves by update-ref under it,
    so that worktree's index no longer matches its HEAD, and a commit there
    undoes the landed work."""
    import subprocess

    from tests.helpers import git

    setup_project(project)
    worker(project, "w1", {"a.txt": "a\n"})
    git(project.root, "checkout", "-q", "-b", "side")
    other = project.root.parent / "trunk-wt"
    git(project.root, "worktree", "add", "-q", str(other), "main")
    (project.data / "state" / "trunk").write_text("main\n")
    project.ok("merge", "w1")
    m = merger(project)
    m.step()
    assert queue(project)["w1"]["state"] == "landed"
    status = subprocess.run(
        ["git", "status", "--porcelain"], cwd=other, capture_output=True, text=True
    ).stdout
    assert status == "", status
