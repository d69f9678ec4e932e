"""Fixtures the unit tests share (tests/conftest.py gives every test its
private HOME and tmux socket directory first).

A module that needs more than these overrides the fixture under the same
name and asks for the shared one (pytest's fixture overriding), so the
common set-up stays written once: see test_screen.py and
test_hookstate.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from cmux.config import Config, load_config
from cmux.mail import store
from cmux.paths import DataRoot
from tests.helpers import make_repo


@pytest.fixture
def data(tmp_path: Path) -> DataRoot:
    """A data root with no project around it and nothing in it yet (not
    even the folder): each module under test makes the folders it writes."""
    return DataRoot(tmp_path / ".cmux")


@pytest.fixture
def cfg(tmp_path: Path) -> Config:
    """A git repository made a cmux project in process (cmux.project.init),
    its config loaded and its data root laid out, with mailboxes for
    supervisor, w1, w2 and human. Nothing is running, nothing is registered,
    and the environment names no project (CMUX_HOME is unset)."""
    from cmux.project import init

    root = make_repo(tmp_path / "p")
    init(root)
    c = load_config(root)
    c.data.ensure()
    for name in ("supervisor", "w1", "w2"):
        store.ensure(c.data, name)
    return c
