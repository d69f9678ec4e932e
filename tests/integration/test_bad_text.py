"""Text that is not UTF-8, on stdin, in a file or in an argument, to every
command that takes text: a clear error naming the first bad byte, exit
non-zero, no traceback, and nothing stored."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO, Project, Run

BAD = b"caf\xc3\xa9 ok\nthen \xff\xfe here\n"  # UTF-8 up to byte 14, 0xff
WHERE = "byte 14 (line 2, column 6) is 0xff"


def run(project: Project, argv: list[str | bytes], stdin: bytes, agent: str | None) -> Run:
    env = dict(project.env)
    if agent:
        env.update(
            CMUX_HOME=str(project.data),
            CMUX_PROJECT=str(project.root),
            CMUX_PYTHON=sys.executable,
            CMUX_AGENT=agent,
            CMUX_AGENT_TOKEN=project.agent_token(agent),
        )
    proc = subprocess.run(argv, cwd=project.root, env=env, input=stdin, capture_output=True)
    return Run(
        proc.returncode,
        proc.stdout.decode("utf-8", "replace"),
        proc.stderr.decode("utf-8", "replace"),
    )


def stored(project: Project) -> list[str]:
    """Every message and journal file there is (names and sizes)."""
    files = [*project.data.glob("mailbox/*/*/*"), *project.data.glob("journal/*.md")]
    return sorted(f"{p.relative_to(project.data)}:{p.stat().st_size}" for p in files)


def refused(r: Run, what: str) -> None:
    assert r.code != 0, (r.out, r.err)
    assert "Traceback" not in r.err, r.err
    assert f"{what} is not valid UTF-8: {WHERE}" in r.err, r.err
    assert "nothing was stored" in r.err


CMUX = [sys.executable, "-m", "cmux"]
TOOLS = str(REPO / "tools")

STDIN_CASES = [
    ([f"{TOOLS}/mailbox", "send", "human", "-"], "w1", "the message"),
    ([f"{TOOLS}/mailbox", "status", "-"], "w1", "the message"),
    ([f"{TOOLS}/mailbox", "done", "-"], "w1", "the message"),
    ([*CMUX, "send", "supervisor", "-"], None, "the message"),
    ([f"{TOOLS}/journal", "add", "a title", "-"], "w1", "the body"),
    ([f"{TOOLS}/journal", "add", "a title", "--body", "-"], "w1", "the body"),
    ([*CMUX, "journal", "add", "a title", "-"], None, "the body"),
    ([*CMUX, "spawn", "w2", "--task", "-", "--agent", "demo"], None, "the task"),
    ([*CMUX, "spawn", "w2", "--task-file", "-"], None, "the task (--task-file -)"),
    ([f"{TOOLS}/workers", "spawn", "w2", "--task", "-"], "supervisor", "the task"),
]


@pytest.mark.parametrize(("argv", "agent", "what"), STDIN_CASES)
def test_invalid_utf8_on_stdin_is_refused_and_nothing_is_stored(
    project: Project, argv: list[str | bytes], agent: str | None, what: str
) -> None:
    for sub in ("tmp", "new", "cur"):  # a supervisor's mailbox, as `cmux start` makes it
        (project.data / "mailbox" / "supervisor" / sub).mkdir(parents=True, exist_ok=True)
    if agent == "supervisor":  # and its record: only the supervisor may spawn
        from cmux.agents.registry import Agent, save

        save(project.config().data, Agent(name="supervisor", role="supervisor"), event=None)
    before = stored(project)
    refused(run(project, argv, BAD, agent), what)
    assert stored(project) == before
    # the same command takes good text
    if "spawn" not in argv:
        good = run(project, argv, "caf\u00e9\n".encode(), agent)
        assert good.code == 0, good.err
        assert stored(project) != before


def test_a_task_file_that_is_not_utf8_is_refused(project: Project, tmp_path: Path) -> None:
    task = tmp_path / "task.txt"
    task.write_bytes(BAD)
    r = run(project, [*CMUX, "spawn", "w2", "--task-file", str(task), "--agent", "demo"], b"", None)
    refused(r, f"--task-file {task}")
    assert "w2" not in project.cmux("status").out


@pytest.mark.parametrize(
    ("argv", "agent", "what"),
    [
        ([f"{TOOLS}/mailbox", "send", "human", b"bad \xff"], "w1", "the message"),
        ([*CMUX, "send", "supervisor", b"bad \xff"], None, "the message"),
        ([f"{TOOLS}/journal", "add", b"title \xff"], "w1", "the title"),
        ([*CMUX, "journal", "add", "title", b"body \xff"], None, "the body"),
        ([f"{TOOLS}/journal", "remember", b"fact \xff"], "w1", "the fact"),
    ],
)
def test_an_argument_that_is_not_utf8_is_refused(
    project: Project, argv: list[str | bytes], agent: str | None, what: str
) -> None:
    before = stored(project)
    r = run(project, argv, b"", agent)
    assert r.code != 0 and "Traceback" not in r.err, r.err
    assert f"{what} is not valid UTF-8: byte " in r.err and "is 0xff" in r.err, r.err
    assert stored(project) == before
