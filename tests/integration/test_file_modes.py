"""The data root is its owner's alone: after a real session (mail both ways,
a dead letter, the journal and its index, events, a health daemon, saved
logs) every directory is 0700 and every file 0600; the project's own files
and what agents write there keep the person's umask."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from tests.helpers import Project, wait_until

HEALTH = """
[health]
interval = 1

[[health.checks]]
name = "ok"
command = "true"
"""


def modes(root: Path) -> dict[str, str]:
    """Every path under ``root`` (and root) whose mode is not 0700/0600."""
    wrong = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [".", *dirnames, *filenames]:
            path = Path(dirpath) / name
            st = path.lstat()
            want = 0o700 if stat.S_ISDIR(st.st_mode) else 0o600
            if stat.S_ISLNK(st.st_mode):
                continue
            if stat.S_IMODE(st.st_mode) != want:
                wrong[str(path.relative_to(root))] = oct(stat.S_IMODE(st.st_mode))
    return wrong


def test_a_whole_session_leaves_only_private_files_and_project_modes_alone(
    project: Project,
) -> None:
    mask = os.umask(0o022)  # the person's umask, passed on to cmux: read it
    os.umask(mask)
    (project.root / "cmux.toml").write_text(
        (project.root / "cmux.toml").read_text().replace("depth_limit = 8", "depth_limit = 1")
        + HEALTH
    )
    project.ok("start", "--command", "sleep 600", "--no-attach")
    made = project.root / "made-by-agent.txt"
    project.ok("spawn", "w1", "--command", f"echo hi > {made}; sleep 600", "--task", "write")
    sent = project.ok("send", "w1", "hello", "--json").json()
    assert project.tool("mailbox", "send", "human", "report", agent="w1").code == 0
    # A reply (depth 1) is within the limit; the person's answer to it
    # (depth 2) is past it: dead-lettered, with its reason, and refused.
    r = project.tool(
        "mailbox", "send", "human", "re", "--reply-to", sent["id"], "--json", agent="w1"
    )
    assert r.code == 0, r.err
    r = project.tool("mailbox", "send", "w1", "re re", "--reply-to", r.json()["id"])
    assert r.code != 0 and "not delivered" in r.err, r.err
    assert project.tool("journal", "add", "learned", "--body", "a thing", agent="w1").code == 0
    assert project.tool("journal", "remember", "the tests need TZ=UTC", agent="w1").code == 0
    project.ok("journal", "search", "learned")
    project.ok("inbox")
    wait_until(made.exists, what="the agent's file")
    wait_until(lambda: any(e["event"] == "deliver" for e in project.events()), what="a delivery")
    wait_until((project.data / "state" / "health.json").exists, what="a health round")
    project.ok("kill", "w1")
    project.ok("stop")

    data = project.data
    assert list((data / "mailbox" / "deadletter").iterdir()), "nothing was dead-lettered"
    assert (data / "state" / "logs" / "w1.log").exists()
    assert (data / "state" / "index.db").exists()
    assert modes(data) == {}
    # The project's files keep the person's modes, also what an agent wrote:
    # cmux's private umask is cmux's own, not its agents'.
    usual = 0o666 & ~mask
    assert stat.S_IMODE((project.root / "cmux.toml").stat().st_mode) == usual
    assert stat.S_IMODE((project.root / ".gitignore").stat().st_mode) == usual
    assert stat.S_IMODE(made.stat().st_mode) == usual


def test_an_existing_open_data_root_is_made_private_at_start(project: Project) -> None:
    os.chmod(project.data, 0o755)
    project.ok("start", "--command", "sleep 600", "--no-attach")
    assert stat.S_IMODE(project.data.stat().st_mode) == 0o700
    project.ok("stop")
    os.chmod(project.data, 0o755)
    project.ok("init")
    assert stat.S_IMODE(project.data.stat().st_mode) == 0o700


def test_json_files_written_by_cmux_are_private(project: Project) -> None:
    project.ok("start", "--command", "sleep 600", "--no-attach")
    reg = project.data / "state" / "agents" / "supervisor.json"
    assert json.loads(reg.read_text())["name"] == "supervisor"
    assert stat.S_IMODE(reg.stat().st_mode) == 0o600
