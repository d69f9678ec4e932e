"""A project whose path holds tmux format syntax: tmux runs nothing, and the
session works as in any other directory (real tmux, real hooks, a real client
drawing the status line)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import Project, make_repo, wait_until

# `#(...)` runs a command wherever tmux expands a format; `cd;` takes it to
# HOME (the test's private one), since a directory name cannot hold a `/`.
EVIL = "proj-#(cd;touch PWNED)-#S-#{session_name}"


@pytest.mark.skipif(shutil.which("script") is None, reason="needs script(1) for a tmux client")
def test_a_project_path_with_tmux_formats_runs_nothing_and_works(
    tmp_path: Path, isolated_env: dict[str, str]
) -> None:
    marker = Path(isolated_env["HOME"]) / "PWNED"
    root = make_repo(tmp_path / EVIL)
    project = Project(root=root, env=isolated_env)
    project.ok("init")
    try:
        project.ok("start", "--command", "sleep 600", "--no-attach")
        # -c: the panes start in the real directory, read literally.
        panes = project.tmux("list-panes", "-a", "-F", "#{pane_current_path}").split("\n")
        assert str(root) in panes

        # --dir with formats too, and a worker that exits with a code.
        odd = tmp_path / "work-#(cd;touch PWNED)"
        odd.mkdir()
        project.ok("spawn", "w1", "--command", "exit 7", "--task", "quit", "--dir", str(odd))
        reg = project.data / "state" / "agents" / "w1.json"
        wait_until(
            lambda: json.loads(reg.read_text()).get("exit_code") == 7, what="w1 exited with 7"
        )
        assert not marker.exists(), "tmux ran a command from the project's path"

        # The pane-died hook's own command still works: run it for a live
        # pane (only the hook marks a live pane's agent exited).
        project.ok("spawn", "w2", "--command", "sleep 600", "--task", "sleep")
        pane = project.status()["w2"]["pane_id"]
        project.tmux("set-hook", "-R", "-t", pane, "pane-died")
        reg2 = project.data / "state" / "agents" / "w2.json"
        wait_until(lambda: json.loads(reg2.read_text())["state"] == "exited", what="the hook")

        # A real client draws status-right (the project's name) literally.
        screen = tmp_path / "screen.out"
        attach = f"tmux -L {project.socket()} attach -t ={project.config().session_name}"
        client = subprocess.Popen(
            ["script", "-qfc", attach, os.devnull],
            stdout=screen.open("wb"),
            stderr=subprocess.STDOUT,
            stdin=subprocess.PIPE,
            env={**isolated_env, "TERM": "xterm"},
        )
        try:
            wait_until(
                lambda: "cmux · proj-#(cd;touch" in screen.read_bytes().decode(errors="replace"),
                what="the status line drawn",
            )
        finally:
            client.kill()
            client.wait()
        assert not marker.exists(), "tmux ran a command from the project's path"
    finally:
        project.cmux("stop")
    assert not marker.exists(), "tmux ran a command from the project's path"
