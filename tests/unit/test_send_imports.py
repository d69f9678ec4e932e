"""``tools/mailbox send`` imports only what it needs (issue 11: a send is a
new process of every agent, median under 30 ms; docs/PERFORMANCE.md).

The real tool runs in a subprocess, as an agent runs it, with Python's
import profile (PYTHONPROFILEIMPORTTIME, the -X importtime switch) on its
standard error: every module the process imported is listed there. No timing
is asserted (the machine may be busy); what is asserted is the import list
that the timing follows from.
"""

from __future__ import annotations

import subprocess
import sys

from cmux import identity
from cmux.config import Config
from cmux.mail import claims, store
from tests.helpers import REPO

# Each costs a new process milliseconds (typing ~15 with what it pulls in,
# re ~7, pathlib ~7, json ~3 after re) or more (argparse, click, rich, git).
HEAVY = {
    "typing",
    "pathlib",
    "re",
    "enum",
    "json",
    "argparse",
    "subprocess",
    "git",
    "click",
    "rich",
    "tomllib",
}


def imported(cfg: Config, *args: str, agent: str = "w1") -> set[str]:
    """The top-level names of every module ``tools/mailbox ARGS`` imported."""
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(cfg.project_root),
        "CMUX_HOME": cfg.data.home,
        "CMUX_PROJECT": cfg.project,
        "CMUX_PYTHON": sys.executable,
        "CMUX_AGENT": agent,
        "CMUX_AGENT_TOKEN": identity.issue(cfg.data, agent),
    }
    tool = [str(REPO / "tools" / "mailbox"), *args]
    # The first call of a new project parses cmux.toml and caches it; agents
    # run on the cache from then on, so the second call is the one measured.
    subprocess.run(tool, env=env, cwd=cfg.project, check=True, capture_output=True)
    proc = subprocess.run(
        tool,
        env={**env, "PYTHONPROFILEIMPORTTIME": "1"},
        cwd=cfg.project,
        capture_output=True,
        text=True,
        check=True,
    )
    names = set()
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            name = line.rsplit("|", 1)[1].strip()
            if name != "imported package":
                names.add(name.split(".")[0])
    assert "cmux" in names, f"no import profile on stderr:\n{proc.stderr}"
    return names


def test_send_imports_nothing_heavy(cfg: Config) -> None:
    names = imported(cfg, "send", "supervisor", "tests pass")
    assert not names & HEAVY, f"tools/mailbox send imports {sorted(names & HEAVY)}"
    # -S: nothing from site-packages either (no site, no .pth files)
    assert "site" not in names
    assert [m.body for m in store.read_all(cfg.data, "supervisor")] == ["tests pass"] * 2


def test_the_reply_depth_lookup_stays_light(cfg: Config) -> None:
    """A sender with recent mail reads and parses it for the reply depth."""
    for i in range(3):
        store.send(cfg, to="w1", body=f"note {i}", sender="supervisor")
    assert len(claims.take(cfg.data, "w1")) == 3  # delivered to w1: in its cur/
    names = imported(cfg, "send", "supervisor", "answer")
    assert not names & HEAVY, f"tools/mailbox send imports {sorted(names & HEAVY)}"
    assert {m.depth for m in store.read_all(cfg.data, "supervisor")} == {1}
