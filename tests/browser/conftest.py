"""The browser tier: the dashboard (cmux/dashboard, DASH-CONTRACT) driven by a
real headless Chromium, against a real cmux session with real agents.

Needs Debian's ``chromium`` (bin/test installs it with apt-get when it can) and
the Python ``playwright`` package (the dev extra), used with that system
browser: Playwright never downloads one of its own. Without either, every test
here is skipped with the reason in pytest's summary (-ra). ``bin/test -m
browser`` runs the tier alone.

One session of the module shares one browser, one cmux project (its own
private HOME and tmux socket directory, like every test's) and one dashboard
process: starting them once keeps the tier inside its time budget. Each test
gets a fresh browser context (no cookies, no storage) and names its own
agents, so the tests do not depend on one another's order.

CMUX_SCREENSHOTS=1 makes the tests save each page into docs/dashboard/*.png
(docs/DASHBOARD.md shows them); without it nothing in the tree is written.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import (
    CHROMIUM,
    CHROMIUM_ARGS,
    REPO,
    Dashboard,
    Project,
    kill_servers,
    make_repo,
    private_env,
    record,
    start_dashboard,
    stop_dashboard,
    wait_until,
)

SHOTS = REPO / "docs" / "dashboard"
# Read at import: every test's isolated_env takes CMUX_* out of the environment.
TAKE_SHOTS = os.environ.get("CMUX_SCREENSHOTS") == "1"
VIEWPORT = {"width": 1280, "height": 800}

# The session every test looks at: checks that pass until a test breaks them
# (rounds far apart, and never an automatic rollback: the rollback test makes
# its own), and no dashboard of `cmux start`'s own (the fixture runs one).
TEAM_TOML = """
[dashboard]
enabled = false

[health]
interval = 3600
threshold = 1
rollback_budget = 0

[[health.checks]]
name = "code"
command = "test ! -e BROKEN"
timeout = 10
"""


def missing() -> str | None:
    """Why the tier cannot run here, or None."""
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        return (
            f"browser: no chromium at {CHROMIUM} (bin/test installs Debian's `chromium` "
            "with apt-get as root; or set CMUX_CHROMIUM)"
        )
    if importlib.util.find_spec("playwright") is None:
        return "browser: the playwright package is missing (pip install -e '.[dev]')"
    if importlib.util.find_spec("cmux.dashboard") is None:
        return "browser: cmux.dashboard is not in this tree"
    return None


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One headless Chromium for the whole run (Debian's, not Playwright's)."""
    why = missing()
    if why:
        pytest.skip(why)
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A page in a fresh context (no cookie of an earlier test); JavaScript
    errors on it fail the test at the end."""
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(10_000)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield pg
    finally:
        context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


@dataclass
class Team:
    """The module's session: its project, its dashboard, a folder beside it."""

    project: Project
    dash: Dashboard
    helper_dir: Path

    def pane(self, name: str) -> str:
        pane = record(self.project, name)["pane_id"]  # the registry, not a CLI call per poll
        return self.project.tmux("capture-pane", "-p", "-J", "-t", pane)


@pytest.fixture(scope="module")
def team(browser: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Team]:
    """A running cmux session (a command supervisor, a finished demo worker,
    a shell, a `cat`) and a dashboard on it, for the module's tests."""
    base = tmp_path_factory.mktemp("team")
    home = base / "home"
    home.mkdir()
    sockdir = Path(tempfile.mkdtemp(prefix="cxb", dir="/tmp"))  # short: sockets fit
    env = {**private_env(home, sockdir), "SHELL": "bash", "CMUX_DEMO_PACE": "0"}
    project = Project(root=make_repo(base / "proj"), env=env)
    project.ok("init")
    asker = shlex.join([sys.executable, str(Path(__file__).with_name("asker.py"))])
    with open(project.root / "cmux.toml", "a") as fh:
        # A [profiles.X] program: its screen is read (a --command's is not).
        fh.write(TEAM_TOML + f'\n[profiles.asker]\ncommand = "{asker}"\ntask = "none"\n')
    dash: Dashboard | None = None
    try:
        project.ok("start", "--command", "sleep 3600", "--no-attach")
        project.ok("spawn", "demo-1", "--agent", "demo", "--task", "count the words")
        project.ok("spawn", "sh1", "--agent", "shell", "--task", "a shell")
        project.ok("spawn", "cat1", "--command", "cat", "--task", "echo what it is told")
        wait_until(
            lambda: record(project, "demo-1")["state"] == "done",
            timeout=20,
            what="the demo worker to finish",
        )
        dash = start_dashboard(project, base / "dashboard.log")
        yield Team(project, dash, base)
    finally:
        if dash is not None:
            stop_dashboard(project, dash)
        project.cmux("stop")
        kill_servers(sockdir)
        shutil.rmtree(sockdir, ignore_errors=True)


def shot(page: Any, name: str) -> None:
    """Save what the page shows as docs/dashboard/NAME.png, with CMUX_SCREENSHOTS=1."""
    if not TAKE_SHOTS:
        return
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.wait_for_function(  # on a live page, the header's dot shows the stream connected
        "() => !window.cmuxStream || document.getElementById('live').className === 'on'",
        timeout=5_000,
    )
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
