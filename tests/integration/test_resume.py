"""Exact resume with programs that need no model: shell commands and the demo.

After the tmux server dies, `cmux start` brings back every agent that was
live, each in its own window, with its registry entry (same name, role,
parent, working directory, worktree, branch and task; incarnation + 1); mail
sent while it was down waits in its Maildir and is delivered once it is back,
each message once. After `cmux stop` only `cmux start --resume` does so;
`--fresh` never does. A program without a conversation comes back by running
its command again with its task.

Real tmux on a private socket, real cmux processes, real git.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import Project, crash_server, record, wait_until

SLEEP = "sleep 600"


def windows(project: Project) -> dict[str, str]:
    """Window name -> the id of its pane, on the live server."""
    out = project.tmux("list-panes", "-a", "-F", "#{window_name} #{pane_id}")
    return dict(line.split(" ", 1) for line in out.splitlines() if line.strip())


def server_id(project: Project) -> str:
    return project.tmux("display-message", "-p", "#{pid}:#{start_time}").strip()


def recorder(path: Path) -> str:
    """A command that appends every line typed into it to ``path`` (the pane
    echoes what is typed, so the screen would show each message twice)."""
    return f"stty -echo; exec cat >> {path}"


def deliveries(project: Project, name: str) -> list[str]:
    return [
        str(e["id"])
        for e in project.events()
        if e.get("event") == "deliver" and e.get("agent") == name
    ]


KEPT = ("role", "parent", "cwd", "worktree", "branch", "task", "profile", "command")


@pytest.mark.timeout(120)
def test_after_the_server_died_start_brings_back_every_live_agent_and_its_mail(
    project: Project, tmp_path: Path
) -> None:
    got = tmp_path / "w1-got.txt"
    project.ok("start", "--command", SLEEP, "--no-attach")
    project.ok("spawn", "w1", "--command", recorder(got), "--task", "record what you get")
    project.ok("spawn", "w2", "--command", SLEEP, "--task", "work in a worktree", "--worktree")
    project.ok("spawn", "w3", "--command", SLEEP, "--task", "ended by a person")
    project.ok("spawn", "w4", "--command", "exit 3", "--task", "ends by itself")
    project.ok("kill", "w3")
    wait_until(lambda: record(project, "w4")["exit_code"] == 3, what="w4 exited with its code")
    before = {n: record(project, n) for n in ("supervisor", "w1", "w2", "w3", "w4")}
    old_server = server_id(project)
    crash_server(project)

    # Mail sent while the session is down waits in w1's Maildir.
    ids = [project.ok("send", "w1", f"while-down-{i}", "--json").json()["id"] for i in (1, 2)]

    r = project.ok("start", "--command", SLEEP, "--no-attach")
    assert "brought back: supervisor (rerun), w1 (rerun), w2 (rerun)" in r.out, r.out
    assert "windows monitor, supervisor, w1, w2" in r.out
    live = windows(project)
    server = server_id(project)
    assert server != old_server
    for name in ("supervisor", "w1", "w2"):
        now = record(project, name)
        assert now["incarnation"] == before[name]["incarnation"] + 1
        assert {k: now[k] for k in KEPT} == {k: before[name][k] for k in KEPT}, name
        assert now["server"] == server and live[name] == now["pane_id"]
        assert now["resume"] == "rerun"
        assert now["state"] in ("idle", "starting")
    assert record(project, "w2")["worktree"] and Path(record(project, "w2")["worktree"]).is_dir()
    # A person's kill and a program's own exit stand: those are not brought back.
    assert record(project, "w3")["state"] == "killed" and "w3" not in live
    assert record(project, "w4")["state"] == "exited" and "w4" not in live
    assert record(project, "w4")["incarnation"] == before["w4"]["incarnation"]

    # The mail sent while down is delivered once w1 is back, each message once.
    wait_until(lambda: sorted(deliveries(project, "w1")) == sorted(ids), what="both delivered")
    wait_until(lambda: all(i in got.read_text() for i in ids), what="both in w1's input")
    text = got.read_text()
    for mid in ids:
        assert text.count(mid) == 1, text
    assert "while-down-1" in text and "while-down-2" in text
    how = {e["agent"]: e for e in project.events() if e.get("event") == "respawn"}
    assert {n: how[n]["how"] for n in ("supervisor", "w1", "w2")} == dict.fromkeys(
        ("supervisor", "w1", "w2"), "rerun"
    )
    # Nothing more arrives later (a second router pass, a requeue).
    project.ok("send", "w1", "after-start")
    wait_until(lambda: "after-start" in got.read_text(), what="a later message")
    final = got.read_text()
    assert all(final.count(mid) == 1 for mid in ids)
    assert len(deliveries(project, "w1")) == 3


@pytest.mark.timeout(120)
def test_stop_then_start_resume_brings_them_back_and_plain_start_does_not(
    project: Project, tmp_path: Path
) -> None:
    got = tmp_path / "w1-got.txt"
    project.ok("start", "--command", SLEEP, "--no-attach")
    project.ok("spawn", "w1", "--command", recorder(got), "--task", "record")
    project.ok("spawn", "w2", "--command", SLEEP, "--task", "report done")
    r = project.tool("mailbox", "done", "w2 finished", agent="w2")
    assert r.code == 0, r.err
    project.ok("stop")
    sent = project.ok("send", "w1", "while-stopped", "--json").json()["id"]

    r = project.ok("start", "--resume", "--command", SLEEP, "--no-attach")
    assert "brought back: supervisor (rerun), w1 (rerun), w2 (rerun)" in r.out, r.out
    assert record(project, "w1")["incarnation"] == 2
    # A report stands across the restart.
    assert record(project, "w2")["state"] == "done"
    wait_until(lambda: got.exists() and sent in got.read_text(), what="mail sent while stopped")
    assert got.read_text().count(sent) == 1

    # After a clean stop a plain start begins anew, and says how to resume.
    project.ok("stop")
    r = project.ok("start", "--command", SLEEP, "--no-attach")
    assert "not brought back: supervisor, w1, w2" in r.out and "--resume" in r.out, r.out
    assert not r.out.startswith("brought back:")
    assert set(windows(project)) == {"monitor", "supervisor"}
    assert record(project, "w1")["state"] == "killed"
    assert record(project, "supervisor")["incarnation"] == 3
    assert record(project, "supervisor")["resume"] == ""


@pytest.mark.timeout(60)
def test_start_fresh_after_a_crash_brings_back_nobody(project: Project) -> None:
    project.ok("start", "--command", SLEEP, "--no-attach")
    project.ok("spawn", "w1", "--command", SLEEP, "--task", "x")
    crash_server(project)
    r = project.ok("start", "--fresh", "--command", SLEEP, "--no-attach")
    assert "marked exited: supervisor, w1" in r.out
    assert "not brought back: supervisor, w1 (--fresh)" in r.out
    assert set(windows(project)) == {"monitor", "supervisor"}
    assert record(project, "w1")["state"] == "exited"
    # And the crash is not resumed by a later start either: that session began anew.
    project.ok("stop")
    r = project.ok("start", "--command", SLEEP, "--no-attach")
    assert "w1" not in r.out
    r = project.cmux("start", "--resume", "--fresh")
    assert r.code == 2 and "either --resume or --fresh" in r.err


@pytest.mark.timeout(120)
def test_demo_agents_come_back_by_running_again_with_their_task(
    project: Project, isolated_env: dict
) -> None:
    project.env["CMUX_DEMO_PACE"] = "0"
    project.ok("start", "--agent", "demo", "--no-attach")
    wait_until(lambda: project.status()["supervisor"]["state"] == "idle", what="demo supervisor")
    project.ok("spawn", "d1", "--agent", "demo", "--task", "RUN: echo step-one; sleep 600")
    pane = project.status()["d1"]["pane_id"]
    wait_until(
        lambda: "step-one" in project.tmux("capture-pane", "-p", "-t", pane) or None,
        timeout=30,
        what="d1 at work",
    )
    assert project.status()["d1"]["state"] == "busy"
    crash_server(project)

    r = project.ok("start", "--agent", "demo", "--no-attach")
    assert "brought back: supervisor (rerun), d1 (rerun)" in r.out, r.out
    d1 = wait_until(lambda: project.status()["d1"], what="d1 back")
    assert record(project, "d1")["incarnation"] == 2
    # It runs its task again, from its context file: busy with the same step.
    wait_until(
        lambda: "step-one" in project.tmux("capture-pane", "-p", "-t", d1["pane_id"]) or None,
        timeout=30,
        what="d1 running its task again",
    )
    assert project.status()["d1"]["state"] == "busy"
    wait_until(lambda: project.status()["supervisor"]["state"] == "idle", what="supervisor idle")
