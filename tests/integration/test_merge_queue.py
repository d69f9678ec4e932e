"""The merge queue on real git repositories: the merger's rounds run in
process (cmux.merge.merger.Merger.step) against real worktrees, branches and
check commands, and the queue is driven through the real `cmux merge` and
`cmux queue` commands. The daemon, SIGKILLs and tmux-driven workers are in
test_merge_daemon.py."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from cmux.health.checks import CheckResult
from cmux.merge.merger import Merger
from tests.helpers import Project, git

pytestmark = pytest.mark.timeout(120)

CHECK = """
[[merge.checks]]
name = "tests"
command = "test ! -e BROKEN && ! grep -rq FAIL --include=*.txt ."
timeout = 30
"""


def setup_project(project: Project, extra: str = CHECK) -> None:
    (project.root / "cmux.toml").write_text(
        (project.root / "cmux.toml").read_text() + extra
        if (project.root / "cmux.toml").exists()
        else extra
    )
    git(project.root, "add", "-A")
    git(project.root, "commit", "-q", "-m", "cmux.toml")


def worker(project: Project, name: str, files: dict[str, str], *, message: str = "") -> Path:
    """A worker with its own worktree on cmux/NAME holding one commit that writes ``files``."""
    from cmux.agents import registry
    from cmux.agents.registry import Agent
    from cmux.paths import DataRoot

    data = DataRoot(project.data)
    wt = project.data / "worktrees" / name
    wt.parent.mkdir(parents=True, exist_ok=True)
    git(project.root, "worktree", "add", "-q", "-b", f"cmux/{name}", str(wt), "HEAD")
    commit(wt, files, message or f"{name}: work")
    from cmux.mail import store

    for box in (name, "supervisor"):  # as a spawn makes them
        store.ensure(data, box)
    registry.save(
        data,
        Agent(
            name=name, state="idle", worktree=str(wt), branch=f"cmux/{name}", parent="supervisor"
        ),
    )
    return wt


def commit(where: Path, files: dict[str, str], message: str) -> str:
    for rel, text in files.items():
        (where / rel).parent.mkdir(parents=True, exist_ok=True)
        (where / rel).write_text(text)
    git(where, "add", "-A")
    git(where, "commit", "-q", "-m", message)
    return git(where, "rev-parse", "HEAD").strip()


def merger(project: Project) -> Merger:
    return Merger(project.config())


def settle(project: Project) -> int:
    """Run rounds until nothing is queued; the check runs they took."""
    m = merger(project)
    m.recover()
    runs = 0
    for _ in range(50):
        rnd = m.step()
        if rnd is None:
            return runs
        runs += rnd.runs
    raise AssertionError("the queue did not settle in 50 rounds")


def queue(project: Project) -> dict[str, dict[str, Any]]:
    rows = project.ok("queue", "--json").json()
    return {r["agent"]: r for r in rows}


def tip(project: Project, ref: str = "main") -> str:
    return git(project.root, "rev-parse", ref).strip()


def test_two_workers_on_different_files_both_land_in_queue_order(project: Project) -> None:
    setup_project(project)
    worker(project, "w1", {"a.py": "a = 1\n"})
    worker(project, "w2", {"b.py": "b = 2\n"})
    before = {n: tip(project, f"cmux/{n}") for n in ("w1", "w2")}
    assert "queued" in project.ok("merge", "w1").out
    project.ok("merge", "w2")
    rows = queue(project)
    assert (rows["w1"]["state"], rows["w1"]["position"]) == ("queued", 1)
    assert (rows["w2"]["state"], rows["w2"]["position"]) == ("queued", 2)
    settle(project)
    rows = queue(project)
    assert rows["w1"]["state"] == rows["w2"]["state"] == "landed"
    # trunk has both files, in the main checkout too (it has main checked out)
    assert (project.root / "a.py").read_text() == "a = 1\n"
    assert (project.root / "b.py").read_text() == "b = 2\n"
    assert tip(project) == rows["w2"]["landed"]
    log = git(project.root, "log", "--format=%s", "main")
    assert log.index("cmux/w2") < log.index("cmux/w1")  # w1 first, then w2 on top
    # branches untouched; originals kept
    for n in ("w1", "w2"):
        assert tip(project, f"cmux/{n}") == before[n]
        assert tip(project, f"refs/cmux/merged/{n}/{rows[n]['n']}") == before[n]
    assert git(project.root, "status", "--porcelain") == ""
    kinds = [e["event"] for e in project.events() if e["event"].startswith("merge-")]
    assert kinds.count("merge-landed") == 2 and "merge-queued" in kinds
    # the worker and its parent were told, with the commit
    from cmux.mail import store
    from cmux.paths import DataRoot

    for box in ("w1", "supervisor"):
        bodies = [m.body for m in store.read_all(DataRoot(project.data), box)]
        assert any("landed on main at " + rows["w1"]["landed"][:12] in b for b in bodies), bodies
    # the health monitor knows the landed commit as good
    assert tip(project, "refs/cmux/last-good") == tip(project)


def test_conflicting_workers_first_lands_second_refused_with_paths(project: Project) -> None:
    setup_project(project)
    (project.root / "shared.txt").write_text("base\n")
    git(project.root, "add", "-A")
    git(project.root, "commit", "-q", "-m", "shared")
    worker(project, "w1", {"shared.txt": "one\n"})
    worker(project, "w2", {"shared.txt": "two\n"})
    heads = {n: tip(project, f"cmux/{n}") for n in ("w1", "w2")}
    project.ok("merge", "w1")
    project.ok("merge", "w2")
    settle(project)
    rows = queue(project)
    assert rows["w1"]["state"] == "landed"
    assert rows["w2"]["state"] == "conflict"
    assert rows["w2"]["conflicts"] == ["shared.txt"]
    assert tip(project) == rows["w1"]["landed"]
    assert (project.root / "shared.txt").read_text() == "one\n"
    for n in ("w1", "w2"):
        assert tip(project, f"cmux/{n}") == heads[n]
    wt2 = project.data / "worktrees" / "w2"
    assert git(wt2, "status", "--porcelain") == ""
    from cmux.mail import store
    from cmux.paths import DataRoot

    told = [m.body for m in store.read_all(DataRoot(project.data), "w2")]
    assert any("shared.txt" in b and f"cd {wt2}" in b and "git merge main" in b for b in told)
    # the commands it was given reproduce the conflict in its own worktree
    r = git_run(wt2, "merge", "main")
    assert r.returncode != 0 and "shared.txt" in r.stdout + r.stderr
    git(wt2, "merge", "--abort")


def git_run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)


def test_a_branch_that_breaks_a_check_is_refused_and_trunk_stays(project: Project) -> None:
    setup_project(project)
    worker(project, "w1", {"BROKEN": "x\n"})
    before = tip(project)
    project.ok("merge", "w1")
    settle(project)
    row = queue(project)["w1"]
    assert row["state"] == "failed" and row["check"] == "tests"
    assert tip(project) == before
    assert Path(row["output"]).is_file()
    assert not (project.root / "BROKEN").exists()


def test_batch_of_four_with_one_bad_lands_three(project: Project) -> None:
    setup_project(project)
    for i in range(1, 5):
        text = "FAIL\n" if i == 3 else f"ok {i}\n"
        worker(project, f"w{i}", {f"f{i}.txt": text})
    for i in range(1, 5):
        project.ok("merge", f"w{i}")
    runs = settle(project)
    rows = queue(project)
    assert [rows[f"w{i}"]["state"] for i in range(1, 5)] == ["landed", "landed", "failed", "landed"]
    assert not (project.root / "f3.txt").exists()
    assert all((project.root / f"f{i}.txt").exists() for i in (1, 2, 4))
    assert runs <= 4, runs  # C4 fails, C2 passes, C3 fails, then w4 alone
    assert rows["w3"]["check"] == "tests"


def test_trunk_moved_during_the_checks_is_tested_again(project: Project) -> None:
    from cmux.health.checks import run_all

    setup_project(project)
    worker(project, "w1", {"a.txt": "a\n"})
    project.ok("merge", "w1")
    m = merger(project)
    moved: list[str] = []

    def checks_that_race(cwd: Path) -> list[CheckResult]:
        if not moved:  # someone commits on trunk while the checks run
            moved.append(commit(project.root, {"hand.txt": "by hand\n"}, "by hand"))
        return run_all(m.settings.checks, cwd)

    m.run_checks = checks_that_race
    first = m.step()
    assert first is not None and first.requeued == [1] and not first.landed
    assert tip(project) == moved[0]
    second = m.step()
    assert second is not None and second.landed == [1]
    landed = tip(project)
    assert git(project.root, "merge-base", "--is-ancestor", moved[0], landed) == ""
    assert (project.root / "hand.txt").exists() and (project.root / "a.txt").exists()
    assert queue(project)["w1"]["state"] == "landed"


def test_uncommitted_work_in_the_main_checkout_is_never_overwritten(project: Project) -> None:
    setup_project(project)
    worker(project, "w1", {"notes.txt": "from the worker\n"})
    (project.root / "notes.txt").write_text("mine, not committed\n")  # untracked, in the way
    before = tip(project)
    project.ok("merge", "w1")
    m = merger(project)
    rnd = m.step()
    assert rnd is not None and rnd.waiting == [1]
    assert (project.root / "notes.txt").read_text() == "mine, not committed\n"
    assert tip(project) == before
    assert queue(project)["w1"]["state"] == "waiting"
    from cmux.mail import store
    from cmux.paths import DataRoot

    told = [m.body for m in store.read_all(DataRoot(project.data), "supervisor")]
    assert any("waits" in b and "uncommitted" in b for b in told)
    (project.root / "notes.txt").unlink()  # the person moves it away
    rnd = m.step()
    assert rnd is not None and rnd.landed == [1]
    assert (project.root / "notes.txt").read_text() == "from the worker\n"


@pytest.mark.parametrize("strategy", ["rebase", "squash"])
def test_rebase_and_squash_keep_the_original_head(project: Project, strategy: str) -> None:
    setup_project(project, CHECK + f'\n[merge]\nstrategy = "{strategy}"\n')
    wt = worker(project, "w1", {"a.txt": "1\n"})
    commit(wt, {"b.txt": "2\n"}, "second")
    commit(project.root, {"t.txt": "trunk moved\n"}, "trunk moves on")
    head = tip(project, "cmux/w1")
    project.ok("merge", "w1")
    settle(project)
    row = queue(project)["w1"]
    assert row["state"] == "landed"
    assert tip(project, row["kept"]) == head
    assert tip(project, "cmux/w1") == head
    parents = git(project.root, "log", "-1", "--format=%P", "main").split()
    assert len(parents) == 1  # no merge commit
    assert {"a.txt", "b.txt", "t.txt"} <= {p.name for p in project.root.iterdir()}
    if strategy == "squash":
        assert git(project.root, "rev-list", "--count", "main").strip() == "4"


def test_bad_requests_are_clear_errors(project: Project) -> None:
    setup_project(project)
    r = project.cmux("merge", "nobody")
    assert r.code != 0 and "nobody" in r.err
    from cmux.agents import registry
    from cmux.agents.registry import Agent
    from cmux.paths import DataRoot

    registry.save(DataRoot(project.data), Agent(name="plain", state="idle"))
    r = project.cmux("merge", "plain")
    assert r.code != 0 and "no branch" in r.err and "--worktree" in r.err
    wt = project.data / "worktrees" / "w0"
    git(project.root, "worktree", "add", "-q", "-b", "cmux/w0", str(wt), "HEAD")
    registry.save(DataRoot(project.data), Agent(name="w0", worktree=str(wt), branch="cmux/w0"))
    r = project.cmux("merge", "w0")
    assert r.code != 0 and "no commits beyond main" in r.err
    assert project.ok("queue", "--json").json() == []


def test_cancel_and_queue_listing(project: Project) -> None:
    setup_project(project)
    worker(project, "w1", {"a.txt": "a\n"})
    project.ok("merge", "w1")
    again = project.ok("merge", "w1", "--json").json()
    assert again["already"] is True and again["n"] == 1
    project.ok("merge", "--cancel", "w1")
    assert queue(project)["w1"]["state"] == "cancelled"
    out = project.ok("queue").out
    assert "w1" in out and "cancelled" in out and "checks: tests" in out
    assert settle(project) == 0
    assert json.loads(project.ok("queue", "--json").out)[0]["state"] == "cancelled"


def test_an_idle_merger_writes_nothing(project: Project) -> None:
    """With nothing queued a round only reads: a write would wake the daemon's
    watcher on the queue's folder at once, a busy loop (bench_idle saw 55 %)."""
    setup_project(project)
    worker(project, "w1", {"a.txt": "a\n"})
    project.ok("merge", "w1")
    m = merger(project)
    assert m.step() is not None
    qdir = project.data / "state" / "merge"
    before = {p.name: p.stat().st_mtime_ns for p in qdir.iterdir() if p.is_file()}
    assert m.step() is None
    after = {p.name: p.stat().st_mtime_ns for p in qdir.iterdir() if p.is_file()}
    assert after == before
