"""tmux is reached only through its gateway, cmux/tmux.py (docs/ARCHITECTURE.md).

Outside it no module builds a tmux command line (a list starting with
"tmux"), runs a raw gateway command (``.cmd(...)``), builds a ``Tmux`` by
hand (``Tmux.for_config`` is the one way, honouring CMUX_TMUX_BIN) or reads
CMUX_TMUX_BIN itself.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "cmux"
GATEWAY = PACKAGE / "tmux.py"
MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p != GATEWAY)


def _leaks(tree: ast.AST) -> list[str]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.List, ast.Tuple)) and node.elts:
            first = node.elts[0]
            if isinstance(first, ast.Constant) and first.value == "tmux" and len(node.elts) > 1:
                out.append(f"line {node.lineno}: a tmux command line")
        if isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Attribute) and f.attr == "cmd":
                out.append(f"line {node.lineno}: a raw tmux command (.cmd)")
            if isinstance(f, ast.Name) and f.id == "Tmux":
                out.append(f"line {node.lineno}: Tmux(...) built by hand")
        if isinstance(node, ast.Constant) and node.value == "CMUX_TMUX_BIN":
            out.append(f"line {node.lineno}: reads CMUX_TMUX_BIN")
    return out


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE.parent)))
def test_no_module_but_the_gateway_talks_to_tmux(path: Path) -> None:
    assert _leaks(ast.parse(path.read_text(), str(path))) == []


def test_the_check_sees_a_leak() -> None:
    leaky = 'subprocess.run(["tmux", "new-window", "x"])\nTmux("s").cmd("switch-client")\n'
    assert len(_leaks(ast.parse(leaky))) == 3
