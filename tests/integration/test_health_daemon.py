"""The health monitor and the watchdogs inside a real `cmux start` session."""

from __future__ import annotations

import json
import os
import signal
from typing import Any

import pytest

from tests.helpers import Project, git, wait_until

FAST = """
[health]
interval = 0.3
threshold = 2
restart_wait = 0

[[health.checks]]
name = "code"
command = "test ! -e BROKEN"
timeout = 10
"""


def health_state(project: Project) -> dict[str, Any]:
    try:
        return json.loads((project.data / "state" / "health.json").read_text())
    except (FileNotFoundError, ValueError):
        return {}


def head(project: Project) -> str:
    return git(project.root, "rev-parse", "HEAD").strip()


def pid_of(project: Project, name: str) -> int | None:
    try:
        pid = int((project.data / "state" / "run" / f"{name}.pid").read_text().split()[0])
        os.kill(pid, 0)
        return pid
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return None


def mail_for(project: Project, agent: str) -> list[dict[str, Any]]:
    """Every message in ``agent``'s mailbox, once each. A claim links new/X
    into cur/ before it unlinks new/X, so a listing of both folders can see one
    message twice (or miss a file that moved on): by id, as the protocol says
    a recipient must (mailbox/README.md, "At least once")."""
    out: dict[str, dict[str, Any]] = {}
    for sub in ("new", "cur"):
        d = project.data / "mailbox" / agent / sub
        if not d.is_dir():
            continue
        for p in sorted(d.iterdir()):
            try:
                msg = json.loads(p.read_text())
            except FileNotFoundError:
                continue
            out.setdefault(msg["id"], msg)
    return sorted(out.values(), key=lambda m: m["id"])


@pytest.mark.timeout(90)
def test_the_session_rolls_a_breaking_commit_back_by_itself(project: Project) -> None:
    with open(project.root / "cmux.toml", "a") as fh:
        fh.write(FAST)
    good = head(project)
    project.ok("start", "--command", "sleep 1000", "--no-attach")
    wait_until(lambda: health_state(project).get("last_good") == good, timeout=20, what="a pass")

    (project.root / "BROKEN").write_text("a bad change\n")
    git(project.root, "add", "BROKEN")
    git(project.root, "commit", "-q", "-m", "a bad change")
    bad = head(project)

    wait_until(
        lambda: head(project) == good and not (project.root / "BROKEN").exists(),
        timeout=20,
        what="the rollback",
    )
    wait_until(
        lambda: any("rolled back" in m["subject"] for m in mail_for(project, "supervisor")),
        timeout=10,
        what="the supervisor to be told",
    )
    h = project.ok("health", "--json").json()
    [rb] = h["rollbacks"]
    assert rb["from"] == bad and rb["to"] == good and rb["auto"]
    wait_until(lambda: project.ok("health", "--json").json()["rollbacks"][0]["verified"])
    assert git(project.root, "rev-parse", rb["branch"]).strip() == bad
    assert h["daemon_pid"]

    # A dead health daemon is back within seconds, and carries on.
    old = h["daemon_pid"]
    os.kill(old, signal.SIGKILL)
    wait_until(
        lambda: (pid_of(project, "health") or old) != old, timeout=15, what="a new health daemon"
    )
    assert health_state(project)["rollbacks"][0]["to"] == good


@pytest.mark.timeout(90)
def test_a_dead_supervisor_is_started_again(project: Project) -> None:
    project.ok("start", "--command", "sleep 1000", "--no-attach")
    before = project.status()["supervisor"]
    panes = project.tmux("list-panes", "-a", "-F", "#{pane_id} #{pane_pid}").splitlines()
    pid = int(next(line.split()[1] for line in panes if line.split()[0] == before["pane_id"]))
    os.kill(pid, signal.SIGKILL)

    def restarted() -> bool:
        s = project.status()["supervisor"]
        return s["pane_id"] != before["pane_id"] and s["state"] not in ("exited", "killed")

    wait_until(restarted, timeout=30, what="the supervisor to come back")
    # The event and the message follow the respawn itself.
    wait_until(
        lambda: any(
            e.get("event") == "watchdog" and e.get("kind") == "supervisor-restarted"
            for e in project.events()
        ),
        what="the watchdog's event",
    )
    wait_until(
        lambda: any("supervisor restarted" in m["subject"] for m in mail_for(project, "human")),
        what="the human to be told",
    )
    assert project.status()["supervisor"]["pane_id"] != before["pane_id"]


def pane_pid(project: Project, pane_id: str) -> int:
    panes = project.tmux("list-panes", "-a", "-F", "#{pane_id} #{pane_pid}").splitlines()
    return int(next(line.split()[1] for line in panes if line.split()[0] == pane_id))


@pytest.mark.timeout(90)
def test_a_worker_that_dies_without_done_is_reported_and_one_that_finished_is_not(
    project: Project,
) -> None:
    project.ok("start", "--command", "sleep 1000", "--no-attach")
    supervisor_pane = project.status()["supervisor"]["pane_id"]
    project.ok("spawn", "finisher", "--command", "sleep 1000", "--task", "say done")
    project.ok("spawn", "crasher", "--command", "sleep 1000", "--task", "crash")
    assert project.tool("mailbox", "done", "all finished", agent="finisher").code == 0
    wait_until(lambda: project.status()["finisher"]["state"] == "done")
    status = project.status()
    os.kill(pane_pid(project, status["finisher"]["pane_id"]), signal.SIGKILL)
    wait_until(lambda: project.status()["finisher"]["state"] == "exited")
    os.kill(pane_pid(project, status["crasher"]["pane_id"]), signal.SIGKILL)

    def reports() -> list[str]:
        return [
            m["body"] for m in mail_for(project, "supervisor") if "died" in m.get("subject", "")
        ]

    wait_until(reports, timeout=20, what="the report of the crash")
    [report] = reports()
    assert "crasher exited" in report and "without reporting done" in report
    assert not any("finisher" in r for r in reports())
    assert project.status()["supervisor"]["pane_id"] == supervisor_pane
