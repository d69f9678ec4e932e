"""Pane ids restart on every tmux server: a record means its pane only on its own server.

Real tmux, real cmux processes. A dead server is simulated the way it dies:
the server process goes away (kill-server) with the registry left as it was.
"""

from __future__ import annotations

import json

from cmux.agents import registry
from cmux.agents.registry import Agent
from cmux.mail import store
from tests.helpers import Project, crash_server, record, wait_until

SLEEP = "sleep 600"


def start(project: Project, *args: str) -> None:
    project.ok("start", "--command", SLEEP, "--no-attach", *args)


def write_ghost(project: Project, pane: str, **fields: object) -> None:
    """A live record of ``pane`` made on a server that is gone (written as a file)."""
    ghost = Agent(name="ghost", profile="shell", state="idle", pane_id=pane).to_dict()
    ghost.update(server="1:1", **fields)
    (project.data / "state" / "agents" / "ghost.json").write_text(json.dumps(ghost))


def screen(project: Project, pane: str) -> str:
    return project.tmux("capture-pane", "-p", "-J", "-t", pane)


def test_start_after_the_tmux_server_died_just_works(project: Project) -> None:
    start(project)
    project.ok("spawn", "w1", "--command", SLEEP, "--task", "x")
    crash_server(project)

    # No "already exists"; --fresh: what was live stays exited (by default a
    # start after a dead server brings it back: tests/integration/test_resume.py).
    r = project.ok("start", "--command", SLEEP, "--no-attach", "--fresh")
    assert "marked exited: supervisor, w1" in r.out
    status = project.status()
    assert status["supervisor"]["state"] == "idle"
    assert status["w1"]["state"] == "exited"
    assert "the tmux server ended" in record(project, "w1")["last_event"]
    server = project.tmux("display-message", "-p", "#{pid}:#{start_time}").strip()
    assert record(project, "supervisor")["server"] == server


def test_mail_for_an_agent_of_a_dead_server_never_reaches_the_new_owner_of_its_pane_id(
    project: Project,
) -> None:
    start(project)
    project.ok("spawn", "old", "--command", "cat", "--task", "x")
    old_pane = project.status()["old"]["pane_id"]
    project.ok("kill", "supervisor", "--force")
    crash_server(project)

    start(project, "--fresh")
    project.ok("spawn", "fresh", "--command", "cat", "--task", "y")
    assert project.status()["fresh"]["pane_id"] == old_pane  # the id came round again

    project.ok("send", "old", "for-old-only")
    held = project.data / "mailbox" / "old" / "held"
    wait_until(held.exists, what="old's mail held")
    assert "old has exited" in held.read_text()
    project.ok("send", "fresh", "for-fresh")
    wait_until(lambda: "for-fresh" in screen(project, old_pane), what="fresh's own mail")
    assert "for-old-only" not in screen(project, old_pane)


def test_the_router_never_types_into_a_pane_id_recorded_under_another_server(
    project: Project,
) -> None:
    start(project)
    project.ok("spawn", "target", "--command", "cat", "--task", "x")
    pane = project.status()["target"]["pane_id"]
    cfg = project.config()
    write_ghost(project, pane)
    store.ensure(cfg.data, "ghost")
    store.send(cfg, to="ghost", body="meant-for-ghost", sender="human")
    held = project.data / "mailbox" / "ghost" / "held"
    wait_until(held.exists, what="ghost's mail held")
    assert "ghost" in held.read_text()
    project.ok("send", "target", "meant-for-target")
    wait_until(lambda: "meant-for-target" in screen(project, pane), what="target's own mail")
    assert "meant-for-ghost" not in screen(project, pane)


def test_the_pane_died_hook_marks_only_the_agent_of_its_own_server(project: Project) -> None:
    start(project)
    go = project.root / "go"
    cmd = f"while [ ! -e {go} ]; do sleep 0.02; done; exit 3"
    project.ok("spawn", "real", "--command", cmd, "--task", "x")
    cfg = project.config()
    pane = registry.get(cfg.data, "real").pane_id
    assert pane
    write_ghost(project, pane, created=1.0)  # older: listed first
    go.touch()
    reg = project.data / "state" / "agents" / "real.json"
    wait_until(lambda: json.loads(reg.read_text())["state"] == "exited", what="real exited")
    assert record(project, "real")["exit_code"] == 3
    assert record(project, "ghost")["exit_code"] is None


def test_kill_and_logs_never_touch_a_pane_id_of_another_server(project: Project) -> None:
    start(project)
    project.ok("spawn", "old", "--command", SLEEP, "--task", "x")
    project.ok("kill", "supervisor", "--force")
    crash_server(project)
    start(project, "--fresh")
    project.ok("spawn", "fresh", "--command", "echo I-am-fresh; exec sleep 600", "--task", "y")
    pane = project.status()["fresh"]["pane_id"]
    assert record(project, "old")["pane_id"] == pane
    wait_until(lambda: "I-am-fresh" in screen(project, pane), what="fresh's screen")
    logs = project.cmux("logs", "old")
    assert "I-am-fresh" not in logs.out + logs.err
    project.ok("kill", "old")
    assert project.status()["fresh"]["state"] == "idle"
    assert pane in project.tmux("list-panes", "-a", "-F", "#{pane_id}").split()
