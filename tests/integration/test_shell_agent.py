"""A shell agent runs what is typed into it: cmux says so at spawn, and
cmux's own notices reach it as comments that run nothing (real tmux, a real
interactive shell, the real router)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.helpers import REPO, Project, wait_until

NOTICE = textwrap.dedent(
    """
    import sys
    from cmux.config import load_config
    from cmux.mail import store
    store.send(load_config(), to=sys.argv[1], body=sys.argv[2], sender="cmux", kind="notice")
    """
)
SHELLS = [s for s in ("bash", "dash", "zsh") if shutil.which(s)]


def notice(project: Project, to: str, body: str) -> None:
    """What cmux's health monitor and watchdogs do to tell an agent something."""
    env = {**project.env, "CMUX_HOME": str(project.data), "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-c", NOTICE, to, body], env=env, cwd=project.root, check=True)


@pytest.mark.parametrize("shell", SHELLS)
def test_cmux_notices_run_nothing_in_a_shell_agent_and_a_persons_mail_arrives(
    project: Project, tmp_path: Path, shell: str
) -> None:
    (Path(project.env["HOME"]) / ".zshrc").touch()  # no first-run menu
    project.ok("start", "--command", "sleep 600", "--no-attach")
    spawned = project.ok(
        "spawn", "sh1", "--agent", "shell", "--task", "a shell", env={"SHELL": shell}
    )
    assert "executes the mail" in spawned.err  # said at spawn, on stderr

    marks = [tmp_path / f"NOTICE{i}" for i in range(4)]
    notice(
        project,
        "sh1",
        f"health: the tests fail\ntouch {marks[0]}\n$(touch {marks[1]}) `touch {marks[2]}`",
    )
    notice(project, "sh1", f"one line; touch {marks[3]} && touch {marks[3]}")

    # A person's mail after them: typed as it is, so its own lines run (the
    # documented behaviour), and its arrival shows the notices were read first.
    # (zsh refuses the header line as a bad glob and drops the whole paste.)
    person = tmp_path / "PERSON"
    project.ok("send", "sh1", f"hello from a person\ntouch {person}")
    pane = project.status()["sh1"]["pane_id"]

    def screen() -> str:
        return project.tmux("capture-pane", "-p", "-J", "-t", pane, "-S", "-")

    if shell == "zsh":  # its line editor echoes a line once it reads it
        wait_until(lambda: "hello from a person" in screen(), what="the person's mail")
    else:
        wait_until(person.exists, what="the person's mail typed into the shell")
    assert [m.name for m in marks if m.exists()] == [], "a cmux notice ran in the shell"
    assert "hello from a person" in screen()
    assert f"# touch {marks[0]}" in screen()  # the notice is visible, as a comment


def test_start_with_a_shell_supervisor_warns(project: Project) -> None:
    r = project.ok("start", "--agent", "shell", "--no-attach", env={"SHELL": "sh"})
    assert "supervisor runs a shell" in r.err
    assert "executes the mail" in r.err
    quiet = project.ok("spawn", "w1", "--agent", "demo", "--task", "demo things")
    assert "executes" not in quiet.err
