"""Each outside program has one door: git only through cmux/git.py (on
gitpython), tmux only through cmux/tmux.py, ssh only through cmux/ssh.py. A module that runs either
itself, or imports its Python library, is listed here by file and line."""

from __future__ import annotations

import ast
from pathlib import Path

CMUX = Path(__file__).resolve().parents[2] / "cmux"

RUNNERS = {
    ("subprocess", "run"),
    ("subprocess", "Popen"),
    ("subprocess", "call"),
    ("subprocess", "check_call"),
    ("subprocess", "check_output"),
    ("subprocess", "getoutput"),
    ("subprocess", "getstatusoutput"),
    ("os", "system"),
    ("os", "popen"),
    ("asyncio", "create_subprocess_exec"),
    ("asyncio", "create_subprocess_shell"),
}


def _names_program(node: ast.AST, program: str) -> bool:
    """An argv literal starting with ``program``, or a shell line running it."""
    if isinstance(node, (ast.List, ast.Tuple)) and node.elts:
        first = node.elts[0]
        return isinstance(first, ast.Constant) and first.value == program
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value == program or node.value.startswith(program + " ")
    return False


def offenders_in(source: str, program: str, library: str) -> list[int]:
    """Lines of ``source`` that run ``program`` or import ``library``."""
    lines: set[int] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            if any(a.name.split(".")[0] == library for a in node.names):
                lines.add(node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and (node.module or "").split(".")[0] == library:
                lines.add(node.lineno)
        elif isinstance(node, (ast.List, ast.Tuple)) and _names_program(node, program):
            lines.add(node.lineno)  # an argv for the program, whoever runs it
        elif isinstance(node, ast.Call) and node.args:
            f = node.func
            runner = (
                isinstance(f, ast.Attribute)
                and isinstance(f.value, ast.Name)
                and ((f.value.id, f.attr) in RUNNERS or (f.value.id == "os" and "exec" in f.attr))
            )
            if runner and _names_program(node.args[0], program):
                lines.add(node.lineno)
    return sorted(lines)


def offenders(program: str, library: str, gateway: str) -> list[str]:
    out = []
    for path in sorted(CMUX.rglob("*.py")):
        rel = path.relative_to(CMUX.parent).as_posix()
        if rel == gateway:
            continue
        text = path.read_text()
        for n in offenders_in(text, program, library):
            out.append(f"{rel}:{n}: {text.splitlines()[n - 1].strip()}")
    return out


def test_the_scanner_sees_every_way_of_running_a_program() -> None:
    src = """
import subprocess, os
import git
from git import Repo
import libtmux.server
subprocess.run(["git", "status"])
subprocess.check_output(("git", "log"))
os.system("git gc")
os.execvp("git", ["git", "log"])
argv = ["git", "--version"]
subprocess.run(["tmux", "ls"])
subprocess.run(["gitk"])
from cmux import git as gateway
"""
    assert offenders_in(src, "git", "git") == [3, 4, 6, 7, 8, 9, 10]
    assert offenders_in(src, "tmux", "libtmux") == [5, 11]


def test_git_runs_only_in_the_git_gateway() -> None:
    assert offenders("git", "git", "cmux/git.py") == []


def test_tmux_runs_only_in_the_tmux_gateway() -> None:
    assert offenders("tmux", "libtmux", "cmux/tmux.py") == []


def test_ssh_runs_only_in_the_ssh_gateway() -> None:
    assert offenders("ssh", "paramiko", "cmux/ssh.py") == []
    assert offenders("scp", "paramiko", "cmux/ssh.py") == []


def test_nats_is_imported_only_by_the_nats_gateway() -> None:
    """NATS (nats-py) has one door, cmux/cluster/nats.py (docs/CLUSTER.md)."""
    assert offenders("nats-server", "nats", "cmux/cluster/nats.py") == []


def test_without_a_cluster_nothing_imports_the_cluster() -> None:
    """No [cluster] section = today's single-machine cmux: only the node
    daemon's own command imports cmux.cluster (the router reads a spool
    marker through cmux/mail/maildir.py, files only), and `cmux status` and
    `cmux events -f` only behind a check of [cluster] nats (that status then
    imports neither: tests/unit/test_cluster_view.py runs it); so do the
    monitor and the dashboard (the team feed, the team's events; views.py's
    import of TeamFeed is for the type checker only)."""
    guarded = {
        "cmux/cli/node.py",
        "cmux/status.py",
        "cmux/cli/mail.py",
        "cmux/monitor.py",
        "cmux/dashboard/live.py",
        "cmux/dashboard/views.py",
    }
    wrong = []
    for path in sorted(CMUX.rglob("*.py")):
        rel = path.relative_to(CMUX.parent).as_posix()
        if rel.startswith("cmux/cluster/") or rel in guarded:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("cmux.cluster"):
                wrong.append(f"{rel}:{node.lineno}")
            if isinstance(node, ast.Import) and any(
                a.name.startswith("cmux.cluster") for a in node.names
            ):
                wrong.append(f"{rel}:{node.lineno}")
    assert wrong == []
