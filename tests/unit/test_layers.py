"""The house keeps its shape: imports only point down the layers.

docs/ARCHITECTURE.md draws the layers; ``LAYERS`` below is that drawing as
data. Every import in cmux/ counts, also one inside a function (a lazy import
is still a dependency) and one under ``TYPE_CHECKING`` (types are part of an
interface). A module may import from its own layer or any layer below it,
never from one above. A module that no layer names fails the test too, so a
new module has to be given its place.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "cmux"

# Lowest first. A name is a module or a package (then every module in it).
LAYERS: list[tuple[str, list[str]]] = [
    (
        "base",
        [
            "cmux",  # cmux/__init__.py: the version, nothing else
            "cmux.errors",
            "cmux.umask",
            "cmux.sitepath",
            "cmux.text",
            "cmux.inputs",
            "cmux.fastjson",
            "cmux.paths",
            "cmux.fsutil",
            "cmux.events",
            "cmux.pidfile",
            "cmux.config",
            "cmux.settings_schema",
            # The adapters' capability flags, plain data the stores and the
            # router ask (the adapters themselves are cmux.agents.adapters).
            "cmux.agents.adapters.capabilities",
            "cmux.agents.adapters.events",
            "cmux.cluster",  # the package's docstring; its modules are placed one by one
        ],
    ),
    # cmux.cluster.nats: the one door to NATS JetStream (nats-py); cmux.ssh: to other hosts.
    ("gateways", ["cmux.tmux", "cmux.git", "cmux.watch", "cmux.ssh", "cmux.cluster.nats"]),
    # The stores: the mailbox, the journal, and the agents' registry with the
    # identity check that reads it (an agent signs only as itself).
    ("stores", ["cmux.mail", "cmux.journal", "cmux.agents.registry", "cmux.identity"]),
    ("agents", ["cmux.agents", "cmux.remote"]),
    ("health", ["cmux.health"]),
    # cmux.cluster.bridge: the Maildir <-> JetStream decisions (beside delivery);
    # cmux.cluster.journal: the journal files <-> CMUX_JOURNAL decisions;
    # cmux.cluster.view: the other hosts' agents and events as this host sees them;
    # cmux.cluster.prune: what the node keeps, for how long (streams, sent/).
    (
        "delivery and merging",
        [
            "cmux.delivery",
            "cmux.merge",
            "cmux.cluster.bridge",
            "cmux.cluster.journal",
            "cmux.cluster.prune",
            "cmux.cluster.view",
        ],
    ),
    (
        "daemons and views",
        [
            "cmux.daemons",
            "cmux.status",
            "cmux.monitor",
            "cmux.keeper",
            "cmux.cluster.node",
            "cmux.cluster.node_journal",
            "cmux.cluster.feed",  # the other hosts, live, for the dashboard and the watchdogs
        ],
    ),
    ("operations", ["cmux.ops", "cmux.project", "cmux.doctor"]),
    (
        "front ends",
        ["cmux.cli", "cmux.agenttools", "cmux.ui", "cmux.dashboard", "cmux.__main__"],
    ),
]


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> int | None:
    """The layer of ``module``: the longest matching name wins."""
    best: tuple[int, int] | None = None  # (length of the match, layer)
    for i, (_, names) in enumerate(LAYERS):
        for name in names:
            if module == name or module.startswith(name + "."):
                if name == "cmux" and module != "cmux":
                    continue  # the package itself is base; its modules are placed one by one
                if best is None or len(name) > best[0]:
                    best = (len(name), i)
    return None if best is None else best[1]


def imports(path: Path) -> list[tuple[int, str]]:
    """Every cmux module ``path`` imports: (line, module)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.startswith("cmux")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join([*base, node.module] if node.module else base)
            else:
                mod = node.module or ""
            if not mod.startswith("cmux"):
                continue
            # `from cmux.mail import store` imports the module cmux.mail.store
            for a in node.names:
                sub = f"{mod}.{a.name}"
                target = sub if (PACKAGE.parent / (sub.replace(".", "/") + ".py")).exists() else mod
                out.append((node.lineno, target))
    return out


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def test_every_module_has_a_layer() -> None:
    unplaced = [module_name(p) for p in modules() if layer_of(module_name(p)) is None]
    assert not unplaced, f"give these a layer in LAYERS (and docs/ARCHITECTURE.md): {unplaced}"


def test_no_module_imports_from_a_layer_above_its_own() -> None:
    wrong = []
    for path in modules():
        me = module_name(path)
        mine = layer_of(me)
        if mine is None:
            continue
        for line, target in imports(path):
            theirs = layer_of(target)
            if theirs is not None and theirs > mine:
                wrong.append(
                    f"{path.relative_to(PACKAGE.parent)}:{line}: {me} ({LAYERS[mine][0]}) "
                    f"imports {target} ({LAYERS[theirs][0]})"
                )
    assert not wrong, "imports that point up the layers:\n" + "\n".join(wrong)


def test_the_mailbox_and_the_journal_do_not_know_each_other() -> None:
    """Within the stores' layer the two stores stay independent, so either
    can be used (and documented, mailbox/README.md, journal/README.md) alone."""
    wrong = []
    for path in modules():
        me = module_name(path)
        for line, target in imports(path):
            if me.startswith("cmux.mail") and target.startswith("cmux.journal"):
                wrong.append(f"{me}:{line} imports {target}")
            if me.startswith("cmux.journal") and target.startswith("cmux.mail"):
                wrong.append(f"{me}:{line} imports {target}")
    assert not wrong, wrong


@pytest.mark.parametrize(
    ("module", "layer"),
    [
        ("cmux.mail.store", "stores"),
        ("cmux.agents.registry", "stores"),
        ("cmux.agents.spawn", "agents"),
        ("cmux.cli.mail", "front ends"),
        ("cmux", "base"),
    ],
)
def test_the_layer_table_places_modules_as_drawn(module: str, layer: str) -> None:
    index = layer_of(module)
    assert index is not None and LAYERS[index][0] == layer
