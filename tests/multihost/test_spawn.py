"""`cmux spawn --host b` from host a: a clone fetched from a over ssh, a
worker in its own tmux server on b, its commit on a's trunk as cmux/NAME at
its `mailbox done`, and `cmux kill` from a ending it there."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.helpers import git, wait_until
from tests.multihost.conftest import Cluster, Host

pytestmark = [pytest.mark.multihost, pytest.mark.timeout(90)]

WORK = (
    'echo made-on-b > b.txt && printf \'%s\\n\' "$CMUX_AGENT" "$CMUX_HOME" > env.txt '
    "&& git add b.txt env.txt && git commit -qm 'b.txt, from host b' "
    '&& mailbox done "committed b.txt"; exec sleep 600'
)


def record_on(root: Path, name: str) -> dict | None:
    found = list(root.glob(f"work/*/.cmux/state/agents/{name}.json"))
    return json.loads(found[0].read_text()) if found else None


def clients_on(host: Host) -> list[str]:
    """The windows the terminal clients of the host's tmux servers look at
    (not the control-mode clients of cmux's own daemons)."""
    out: list[str] = []
    shown = "#{?client_control_mode,,#{window_name}}"
    for sock in host.root.glob("tmux/tmux-*/*"):
        listed = host.run("tmux", "-S", str(sock), "list-clients", "-F", shown)
        out += listed.out.split() if listed.code == 0 else []
    return out


def state_on_a(cluster: Cluster, name: str) -> str:
    record = cluster.project / ".cmux" / "state" / "agents" / f"{name}.json"
    return str(json.loads(record.read_text())["state"])


def branch_file(project: Path, ref: str, path: str) -> str | None:
    proc = subprocess.run(
        ["git", "show", f"{ref}:{path}"], cwd=project, capture_output=True, text=True, check=False
    )
    return proc.stdout.strip() if proc.returncode == 0 else None


def test_a_worker_on_b_commits_reports_done_and_its_branch_is_on_trunk(cluster: Cluster) -> None:
    a, b = cluster.hosts["a"], cluster.hosts["b"]
    (cluster.project / "cmux.toml").write_text(cluster.toml('[merge]\ntrunk = "main"\n'))
    trunk_before = git(cluster.project, "rev-parse", "main").strip()

    r = a.cmux(
        "spawn",
        "w1",
        "--host",
        "b",
        "--task",
        "commit b.txt",
        "--command",
        WORK,
        "--json",
        cwd=cluster.project,
        timeout=60,
    )
    assert r.code == 0, r.err
    here = r.json()
    assert here["host"] == "b" and here["branch"] == "cmux/w1" and here["pane_id"] is None
    assert here["cwd"].startswith(str(b.dir))  # its clone lives on b

    wait_until(
        lambda: branch_file(cluster.project, "cmux/w1", "b.txt") == "made-on-b",
        timeout=30,
        interval=0.2,
        what="b's commit on the trunk as cmux/w1",
    )
    tip = git(cluster.project, "rev-parse", "cmux/w1").strip()
    assert git(cluster.project, "rev-parse", "cmux/w1^").strip() == trunk_before
    assert (
        git(cluster.project, "rev-parse", "main").strip() == trunk_before
    )  # trunk itself: untouched

    def done_there() -> dict | None:
        rec = record_on(b.root, "w1")
        return rec if rec is not None and rec["state"] == "done" else None

    there = wait_until(done_there, timeout=10, what="w1 done in b's registry")
    assert there is not None
    assert there["trunk"] and there["branch"] == "cmux/w1"
    assert git(Path(there["worktree"]), "rev-parse", "HEAD").strip() == tip
    # The environment contract on b: its own name, and b's data root as CMUX_HOME.
    agent, home = (branch_file(cluster.project, "cmux/w1", "env.txt") or "").splitlines()
    assert agent == "w1" and home.startswith(str(b.dir)) and home.endswith("/.cmux")

    # The done report for a's supervisor waits in b's spool (the node daemon's to send).
    box = Path(there["cwd"]).parents[1] / "mailbox" / "supervisor"
    assert (box / "remote").read_text().strip() == "a"
    assert len(list((box / "new").iterdir())) == 1
    assert (cluster.project / ".cmux" / "mailbox" / "w1" / "remote").read_text().strip() == "b"

    status = a.cmux("status", "--json", cwd=cluster.project)
    rows = {row["name"]: row for row in status.json()}
    assert rows["w1"]["host"] == "b"

    # The merge queue on a lands b's branch as any other.
    queued = a.cmux("merge", "w1", "--json", cwd=cluster.project)
    assert queued.code == 0, queued.err
    merger = subprocess.Popen(
        ["ip", "netns", "exec", a.ns, str(a.cmux_path), "merger"],
        cwd=cluster.project,
        env=a.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(
            lambda: branch_file(cluster.project, "main", "b.txt") == "made-on-b",
            timeout=30,
            interval=0.2,
            what="b's commit landed on main by the merger",
        )
    finally:
        merger.terminate()
        merger.wait(timeout=10)

    # b cut off: a's look at the hosts makes w1 unreachable (not exited); back, done again.
    cluster.cut("b")
    assert a.cmux("hosts", "--timeout", "3", cwd=cluster.project).code == 0
    assert state_on_a(cluster, "w1") == "unreachable"
    cluster.mend("b")
    wait_until(
        lambda: (
            a.cmux("hosts", "--timeout", "3", cwd=cluster.project).code == 0
            and state_on_a(cluster, "w1") == "done"
        ),
        timeout=25,
        interval=0.5,
        what="w1 done again on a once b answers",
    )

    # `cmux attach w1` on a: a terminal client of w1's tmux server on b, through ssh -t.
    attached = subprocess.Popen(
        ["ip", "netns", "exec", a.ns, "script", "-qfc", f"{a.cmux_path} attach w1", "/dev/null"],
        cwd=cluster.project,
        env={**a.env, "TERM": "xterm"},
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: clients_on(b) == ["w1"], timeout=20, what="a terminal on b's w1")
    finally:
        attached.kill()
        attached.wait(timeout=10)

    k = a.cmux("kill", "w1", "--json", cwd=cluster.project)
    assert k.code == 0, k.err
    assert "pushed" in k.json()["reason"]
    assert state_on_a(cluster, "w1") == "killed"
    wait_until(
        lambda: (rec := record_on(b.root, "w1")) and rec["state"] == "killed",
        timeout=10,
        what="w1 killed on b",
    )

    # The name again on b: the old clone, all of it on the trunk, makes way.
    old_mark = Path(there["worktree"]) / ".git" / "old-clone"
    old_mark.write_text("the first w1's\n")
    again = a.cmux(
        *("spawn", "w1", "--host", "b", "--task", "again", "--command", "exec sleep 600"),
        cwd=cluster.project,
    )
    assert again.code == 0, again.err
    assert not old_mark.exists()  # a fresh clone, of main as it is now
    assert (
        git(Path(there["worktree"]), "rev-parse", "HEAD").strip()
        == git(cluster.project, "rev-parse", "main").strip()
    )
