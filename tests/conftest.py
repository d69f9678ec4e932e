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
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import Project, kill_servers, make_repo, private_env


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[dict[str, str]]:
    home = tmp_path / "home"
    home.mkdir()
    # Short path: tmux sockets must fit in 108 bytes.
    sockdir = Path(tempfile.mkdtemp(prefix="cxt", dir="/tmp"))
    for key in list(os.environ):
        if (key.startswith("CMUX_") and not key.startswith("CMUX_TEST_")) or key in (
            "TMUX",
            "TMUX_PANE",
        ):
            monkeypatch.delenv(key, raising=False)
    env = private_env(home, sockdir)
    for key in ("HOME", "TMUX_TMPDIR", "LANG", "GIT_CONFIG_GLOBAL", "GIT_CONFIG_NOSYSTEM"):
        monkeypatch.setenv(key, env[key])
    try:
        yield env
    finally:
        kill_servers(sockdir)
        shutil.rmtree(sockdir, ignore_errors=True)


@pytest.fixture
def project(tmp_path: Path, isolated_env: dict[str, str]) -> Iterator[Project]:
    """A git repository with one commit, made a cmux project (`cmux init`)."""
    root = make_repo(tmp_path / "proj")
    p = Project(root=root, env=isolated_env)
    p.ok("init")
    yield p
    p.cmux("stop")
