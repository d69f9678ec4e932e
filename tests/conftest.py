"""Every test gets a private HOME and a private tmux socket directory, so no
test can touch the user's own tmux server or home.

libtmux (a dev dependency, the tests' independent observer of tmux) brings a
pytest plugin with fixtures of its own (``server``, ``session``). We do not
use them: each starts a bare server on a socket of its own under a HOME made
once per session, while cmux's tests need the server cmux itself started for
a project (its socket named after the data root, cmux.config.socket_name)
inside this test's own TMUX_TMPDIR and HOME. ``Project.server()`` gives the
libtmux view of that server."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import Project, make_repo

_KEEP = ("PATH", "LANG", "LC_ALL", "TERM", "USER", "LOGNAME", "SHELL", "TZ", "CMUX_TEST_CLAUDE")


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[dict[str, str]]:
    home = tmp_path / "home"
    home.mkdir()
    # Short path: tmux sockets must fit in 108 bytes.
    sockdir = Path(tempfile.mkdtemp(prefix="cxt", dir="/tmp"))
    for key in list(os.environ):
        if (key.startswith("CMUX_") and key != "CMUX_TEST_CLAUDE") or key in ("TMUX", "TMUX_PANE"):
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("TMUX_TMPDIR", str(sockdir))
    monkeypatch.setenv("LANG", os.environ.get("LANG") or "C.UTF-8")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(home / ".gitconfig"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    (home / ".gitconfig").write_text("[user]\n\temail = test@example.invalid\n\tname = cmux test\n")
    env = {k: v for k, v in os.environ.items() if k in _KEEP}
    env.update(
        HOME=str(home),
        TMUX_TMPDIR=str(sockdir),
        GIT_CONFIG_GLOBAL=str(home / ".gitconfig"),
        GIT_CONFIG_NOSYSTEM="1",
        LANG=os.environ["LANG"],
    )
    try:
        yield env
    finally:
        _kill_servers(sockdir)
        shutil.rmtree(sockdir, ignore_errors=True)


def _kill_servers(sockdir: Path) -> None:
    for sock in sockdir.glob("tmux-*/*"):
        subprocess.run(["tmux", "-S", str(sock), "kill-server"], capture_output=True, check=False)


@pytest.fixture
def project(tmp_path: Path, isolated_env: dict[str, str]) -> Iterator[Project]:
    """A git repository with one commit, made a cmux project (`cmux init`)."""
    root = make_repo(tmp_path / "proj")
    p = Project(root=root, env=isolated_env)
    p.ok("init")
    yield p
    p.cmux("stop")
