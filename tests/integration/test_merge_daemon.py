"""The merge queue as people run it: the merger daemon started by `cmux
start`, workers in real tmux windows that commit in their worktrees and
report done, `cmux merge --wait`, and the merger SIGKILLed at random moments
again and again without trunk ever pointing at an untested commit or any
work being lost. Real tmux, git, processes and signals."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import pytest

from cmux import pidfile
from tests.helpers import Project, git, wait_until
from tests.integration.test_merge_queue import commit, queue, setup_project, tip, worker

SLEEP = "sleep 600"
CHECK = """
[[merge.checks]]
name = "tests"
command = "test ! -e BROKEN"
timeout = 30
"""


def committing_worker(project: Project, name: str, filename: str, text: str) -> None:
    """Spawn NAME in its own worktree: it writes a file, commits, reports done."""
    script = (
        f"printf '%s\\n' {text!r} > {filename} && git add {filename} && "
        f"git commit -q -m '{name}: {filename}' && mailbox done 'wrote {filename}'; exec sleep 600"
    )
    project.ok(
        "spawn", name, "--worktree", "--command", f"sh -c {json.dumps(script)}", "--task", "x"
    )


@pytest.mark.timeout(180)
def test_workers_commit_report_done_and_land_through_the_daemon(project: Project) -> None:
    setup_project(project, CHECK + "\n[merge]\nauto = true\n")
    project.ok("start", "--command", SLEEP, "--no-attach")
    wait_until(lambda: pid_of(project, "merger"), timeout=20, what="the merger running")
    committing_worker(project, "w1", "one.txt", "one")
    wait_until(lambda: "w1" in queue(project), timeout=30, what="w1 queued at its done")
    committing_worker(project, "w2", "two.txt", "two")
    wait_until(
        lambda: (
            {r["state"] for r in queue(project).values()} == {"landed"} and len(queue(project)) == 2
        ),
        timeout=60,
        what="both landed",
    )
    rows = queue(project)
    assert rows["w1"]["n"] < rows["w2"]["n"]
    assert (project.root / "one.txt").read_text() == "one\n"
    assert (project.root / "two.txt").read_text() == "two\n"
    assert tip(project) == rows["w2"]["landed"]
    status = project.status()
    assert status["w1"]["queue"] == "landed" and status["w2"]["queue"] == "landed"
    tested = {e["commit"] for e in project.events() if e["event"] == "merge-check" and e["ok"]}
    assert tip(project) in tested
    # a person's merge --wait of a branch that breaks the check: exit 1 with the reason
    wt = Path(status["w2"]["cwd"])
    commit(wt, {"BROKEN": "x\n"}, "breaks the check")
    r = project.cmux("merge", "w2", "--wait", "--timeout", "60")
    assert r.code == 1, (r.out, r.err)
    assert "failed" in r.out and "tests" in r.out
    assert tip(project) == rows["w2"]["landed"]
    # after landing, killing w1 removes its worktree and branch without complaint
    killed = project.ok("kill", "w1", "--json").json()
    assert killed["kept_branch"] is None, killed
    assert not (project.data / "worktrees" / "w1").exists()
    assert git(project.root, "branch", "--list", "cmux/w1") == ""
    # w2's refused work is kept
    killed = project.ok("kill", "w2", "--json").json()
    assert killed["kept_branch"] == "cmux/w2"


def pid_of(project: Project, daemon: str) -> int | None:
    got = pidfile.read(project.data / "state" / "run" / f"{daemon}.pid")
    return got[0] if got and pidfile.start_time(got[0]) else None


def merger_process(project: Project) -> subprocess.Popen[bytes]:
    env = {**project.env, "CMUX_HOME": str(project.data), "CMUX_PROJECT": str(project.root)}
    return subprocess.Popen(
        [sys.executable, "-m", "cmux", "merger"],
        cwd=project.root,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def assert_safe(project: Project, tested: set[str], heads: dict[str, str]) -> None:
    """What a SIGKILL must never break: trunk at a tested commit, no half
    merge anywhere, every worker's branch as it was."""
    checked = {e["commit"] for e in project.events() if e["event"] == "merge-check" and e.get("ok")}
    trunk = tip(project)
    assert trunk in tested | checked, f"trunk at {trunk}, never tested"
    assert git(project.root, "status", "--porcelain", "--untracked-files=no") == ""
    gitdir = project.root / ".git"
    for leftover in ("MERGE_HEAD", "rebase-merge", "rebase-apply", "CHERRY_PICK_HEAD"):
        assert not (gitdir / leftover).exists(), leftover
    for name, head in heads.items():
        assert tip(project, f"cmux/{name}") == head
        wt = project.data / "worktrees" / name
        assert git(wt, "status", "--porcelain") == ""


@pytest.mark.timeout(300)
@pytest.mark.parametrize("strategy", ["merge", "rebase"])
def test_sigkill_at_random_moments_never_breaks_trunk_nor_loses_work(
    project: Project, strategy: str
) -> None:
    slow = """
[[merge.checks]]
name = "tests"
command = "sleep 0.15; test ! -e BROKEN"
timeout = 30
"""
    setup_project(project, slow + f'\n[merge]\nstrategy = "{strategy}"\nbatch = 3\n')
    bad = {"w3"}
    heads = {}
    for i in range(1, 7):
        name = f"w{i}"
        files = {"BROKEN": "x\n"} if name in bad else {f"f{i}.txt": f"{i}\n"}
        worker(project, name, files)
        heads[name] = tip(project, f"cmux/{name}")
    for name in heads:
        project.ok("merge", name)
    tested = {tip(project)}  # where trunk starts
    rng = random.Random(int(os.environ.get("CMUX_TEST_SEED", "12")))
    kills = 0
    deadline = time.monotonic() + 200
    while time.monotonic() < deadline:
        proc = merger_process(project)
        rows = queue(project)
        if all(r["state"] in ("landed", "failed", "conflict") for r in rows.values()):
            wait_until(lambda: pid_of(project, "merger"), timeout=15, what="the last merger up")
            proc.terminate()
            proc.wait(timeout=10)
            break
        # A random moment after it is up (its pid file is written before it
        # mends and works): counting from the start would spend most kills on
        # the imports of a loaded machine.
        up = partial(lambda pid: pid_of(project, "merger") == pid, proc.pid)
        wait_until(up, timeout=30, what="the merger up")
        time.sleep(rng.uniform(0.0, 0.7))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        kills += 1
        assert_safe(project, tested, heads)
    else:
        raise AssertionError(f"the queue did not settle after {kills} kills: {queue(project)}")
    assert kills >= 5, kills
    rows = queue(project)
    assert {n: r["state"] for n, r in rows.items()} == {
        n: ("failed" if n in bad else "landed") for n in heads
    }
    assert_safe(project, tested, heads)
    for i in (1, 2, 4, 5, 6):
        assert (project.root / f"f{i}.txt").read_text() == f"{i}\n"
    assert not (project.root / "BROKEN").exists()
    for name, r in rows.items():  # every head reachable from trunk or kept
        ref = r["kept"] or f"cmux/{name}"
        assert tip(project, ref) == heads[name]
    # the merger that ended cleanly left no scratch worktree behind
    wt_list = git(project.root, "worktree", "list", "--porcelain")
    assert ".merge" not in wt_list


@pytest.mark.timeout(120)
def test_a_hanging_check_is_ended_and_the_queue_moves_on(project: Project) -> None:
    hang = """
[[merge.checks]]
name = "hangs"
command = "if test -e HANG; then sleep 600; fi"
timeout = 2
"""
    setup_project(project, hang)
    worker(project, "w1", {"HANG": "x\n"})
    worker(project, "w2", {"ok.txt": "fine\n"})
    project.ok("merge", "w1")
    project.ok("merge", "w2")
    proc = merger_process(project)
    try:
        wait_until(lambda: queue(project)["w2"]["state"] == "landed", timeout=60, what="w2 landed")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    row = queue(project)["w1"]
    assert row["state"] == "failed" and "timed out" in row["reason"], row
    # nothing of the hanging check is left running
    leftovers = subprocess.run(
        ["pgrep", "-f", "sleep 600"], capture_output=True, text=True
    ).stdout.split()
    mine = [p for p in leftovers if _in_dir(int(p), project.data)]
    assert mine == []


def _in_dir(pid: int, under: Path) -> bool:
    try:
        return str(under) in os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return False


def test_a_second_merger_for_the_same_data_root_refuses(project: Project) -> None:
    setup_project(project)
    proc = merger_process(project)
    try:
        wait_until(lambda: pid_of(project, "merger"), timeout=15, what="the first merger")
        second = merger_process(project)
        assert second.wait(timeout=30) != 0
        assert second.stderr is not None
        assert b"already running" in second.stderr.read()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
