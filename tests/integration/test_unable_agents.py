"""Alive but unable to work, without a model: an agent's program that ends
while the shell it ran under lives on is `crashed` (and its parent told), and
a hook-less agent whose screen says busy and never changes is `stuck` (its
parent gets its last screen lines; with stuck_action = "interrupt" it gets
C-c). Real tmux, real cmux processes; the e2e tier does the same with Claude
Code (tests/e2e/test_unable.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.helpers import Project, wait_until

# A program that looks busy as a screen-read agent shows it, and then does
# nothing; C-c makes it say so and look busy again.
FROZEN = """\
import signal, sys, time
def hit(*_):
    print("got interrupted", flush=True)
    print("esc to interrupt", flush=True)
signal.signal(signal.SIGINT, hit)
print("working on it", flush=True)
print("esc to interrupt", flush=True)
while True:
    time.sleep(1)
"""
TICKING = """\
import itertools, time
for i in itertools.count():
    print(f"step {i}", flush=True)
    print("esc to interrupt", flush=True)
    time.sleep(0.5)
"""


def notices(project: Project, to: str) -> list[str]:
    from cmux.mail import store

    data = project.config().data
    return [m.body for m in store.read_all(data, to) if m.sender == "cmux"]


def told(project: Project, to: str, *needles: str, timeout: float = 30) -> str:
    def check() -> str:
        return next((b for b in notices(project, to) if all(n in b for n in needles)), "")

    return wait_until(check, timeout=timeout, interval=0.2, what=f"{to} told {needles}")


def wait_state(project: Project, name: str, state: str, timeout: float = 30) -> dict[str, object]:
    def check() -> dict[str, object]:
        a = project.status().get(name)
        return a if a and a["state"] == state else {}

    return wait_until(check, timeout=timeout, interval=0.2, what=f"{name} {state}")


def windows(project: Project) -> list[str]:
    return project.tmux("list-windows", "-a", "-F", "#{window_name}").split()


@pytest.mark.timeout(90)
def test_a_program_that_ends_under_its_shell_is_crashed(project: Project) -> None:
    toml = project.root / "cmux.toml"
    toml.write_text(
        toml.read_text() + "\n[profiles.undershell]\n"
        "command = \"bash -c 'echo working; sleep 1; exec bash --norc'\"\n"
    )
    project.ok("start", "--no-attach", "--command", "sleep 600")
    project.ok("spawn", "w1", "--command", "sh -c 'echo working; sleep 1; exec sh'", "--task", "t")
    project.ok("spawn", "w2", "--agent", "undershell", "--task", "t")
    # A shell profile and a plain command are not crashed by being what they are.
    project.ok("spawn", "w3", "--agent", "shell", "--task", "t")
    project.ok("spawn", "w4", "--command", "sleep 600", "--task", "t")
    for name in ("w1", "w2"):
        a = wait_state(project, name, "crashed")
        assert "took over its pane" in str(a["last_event"])
        told(project, "supervisor", f"{name} crashed", "left a shell in its pane")
    status = project.status()
    assert (status["w3"]["state"], status["w4"]["state"]) == ("idle", "idle")
    # Mail is not typed into the shell it left.
    project.ok("send", "w1", "echo typed")
    held = project.data / "mailbox" / "w1" / "held"
    wait_until(lambda: held.exists() and "crashed" in held.read_text(), timeout=10)
    # Spawned again under its name: the old window goes, a new one comes.
    project.ok("spawn", "w1", "--command", "sleep 600", "--task", "again")
    wait_until(lambda: windows(project).count("w1") == 1, timeout=10)
    assert project.status()["w1"]["state"] == "idle"
    project.ok("kill", "w2")
    assert project.status()["w2"]["state"] == "killed"
    wait_until(lambda: "w2" not in windows(project), timeout=10)


@pytest.mark.timeout(90)
def test_a_hook_less_agent_whose_screen_never_changes_is_stuck(
    project: Project, tmp_path: Path
) -> None:
    (tmp_path / "frozen.py").write_text(FROZEN)
    (tmp_path / "ticking.py").write_text(TICKING)
    toml = project.root / "cmux.toml"
    toml.write_text(
        toml.read_text()
        + f'\n[profiles.frozen]\ncommand = "{sys.executable} {tmp_path / "frozen.py"}"\n'
        + f'\n[profiles.ticking]\ncommand = "{sys.executable} {tmp_path / "ticking.py"}"\n'
        + '\n[health]\nstuck_after = 3\nstuck_action = "interrupt"\n'
    )
    project.ok("start", "--no-attach", "--command", "sleep 600")
    project.ok("spawn", "w1", "--agent", "frozen", "--task", "t")
    project.ok("spawn", "w2", "--agent", "ticking", "--task", "t")
    wait_state(project, "w1", "busy")
    a = wait_state(project, "w1", "stuck")
    assert "nothing moved" in str(a["last_event"])
    body = told(project, "supervisor", "w1 has been busy for", "cmux interrupted it")
    assert "working on it" in body  # its last screen lines
    # The interrupt reached it (C-c), its screen changed: busy again.
    wait_until(lambda: "got interrupted" in screen(project, "w1"), timeout=10)
    wait_state(project, "w1", "busy", timeout=10)
    # One that keeps printing is busy all along.
    assert project.status()["w2"]["state"] == "busy"
    assert not any("w2" in b for b in notices(project, "supervisor"))


def screen(project: Project, name: str) -> str:
    pane = str(project.status()[name]["pane_id"])
    return project.tmux("capture-pane", "-p", "-J", "-t", pane)
