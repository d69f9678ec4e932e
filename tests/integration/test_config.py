"""cmux.toml checked as a whole against one schema, as a person and an agent meet it.

Every mistake is a clear error from every command (exit 1, no traceback) that
names the key, the value and what is allowed; nothing is silently ignored.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.helpers import REPO, Project, Run


def write(project: Project, text: str) -> None:
    (project.root / "cmux.toml").write_text(text)


def default_toml(project: Project) -> str:
    return (project.root / "cmux.toml").read_text()


def refused(r: Run, *words: str) -> None:
    assert r.code == 1, (r.code, r.out, r.err)
    assert "Traceback" not in r.err and "Traceback" not in r.out, r.err
    for w in words:
        assert w in r.err, (w, r.err)


# (what to append to or change in the file cmux init wrote, words the error must hold)
APPENDED = [
    ("[helth]\ninterval = 5\n", ["[helth] is not a section", "did you mean [health]?"]),
    ("[health]\nintervall = 5\n", ["[health] has an unknown key: intervall", "'interval'"]),
    ("[health]\nthreshold = inf\n", ["[health] threshold", "from 1 to 1000", "not inf"]),
    ("[health]\ninterval = nan\n", ["[health] interval", "from 0.05 to 86400", "not nan"]),
    ("[health]\nrollback_budget = -1\n", ["[health] rollback_budget", "from 0 to", "not -1"]),
    ("[health]\nrestart = []\n", ["[health] restart must be a non-empty string", "not []"]),
    ("health = 3\n", ["[mail] has an unknown key: health"]),
    ("[profiles.x]\ncommand = 3\n", ["[profiles.x] command must be a non-empty string", "not 3"]),
    ('[profiles.x]\ntask = "arg"\n', ["[profiles.x] needs a command"]),
    ('[profiles]\nx = "cat"\n', ["[profiles.x] must be a table", "not 'cat'"]),
    (
        '[profiles.x]\ncommand = "cat"\ntask = "typed"\n',
        ['[profiles.x] task must be one of "arg", "type", "none"', "not 'typed'"],
    ),
    (
        '[[health.checks]]\ncommand = "true"\ntimeout = inf\n',
        ["[[health.checks]] #1 timeout", "from 0.01 to 86400", "not inf"],
    ),
    (
        '[[health.checks]]\nname = "web"\nurl = "http://127.0.0.1:1/"\ntimeout = -5\n',
        ["[[health.checks]] 'web' timeout", "not -5"],
    ),
    ('[[health.checks]]\nname = "t"\n', ["[[health.checks]] 't' needs exactly one of"]),
    ("[[health.checks]]\ncommand = {}\n", ["[[health.checks]] #1 command", "not a table"]),
]
REPLACED = [
    ("depth_limit = 8", "depth_limit = -1", ["[mail] depth_limit", "from 1 to 1000", "not -1"]),
    ("depth_limit = 8", 'depth_limit = "8"', ["[mail] depth_limit", "not '8'"]),
    (
        "max_body_bytes = 8388608",
        "max_body_bytes = 1e400",
        ["[mail] max_body_bytes", "from 1 to 1073741824", "not inf"],
    ),
    ('data_root = ".cmux"', "data_root = {}", ["[cmux] data_root", "not a table"]),
    ("args = []", 'args = "x"', ["[claude] args must be a list of strings", "not 'x'"]),
    ('agent = "claude"', 'agent = "cluade"', ["'cluade' is not a profile", "'claude'"]),
    (
        'permission_mode = "acceptEdits"',
        'permission_mode = "acceptedits"',
        ["[claude] permission_mode must be one of", "did you mean 'acceptEdits'?"],
    ),
    ("[claude]\n", '[claude]\ntrust = "yes"\n', ["[claude] trust must be true or false"]),
    ("[mail]\n", "[mail]\ndepth = 3\n", ["[mail] has an unknown key: depth", "'depth_limit'"]),
]


def _cases() -> list[tuple[str, tuple[str, str] | None, list[str]]]:
    out: list[tuple[str, tuple[str, str] | None, list[str]]] = []
    out += [(extra, None, words) for extra, words in APPENDED]
    out += [("", (old, new), words) for old, new, words in REPLACED]
    return out


@pytest.mark.parametrize(("extra", "change", "words"), _cases())
def test_every_mistake_is_named_by_every_command(
    project: Project, extra: str, change: tuple[str, str] | None, words: list[str]
) -> None:
    text = default_toml(project)
    if change:
        assert change[0] in text
        text = text.replace(change[0], change[1], 1)
    write(project, text + ("\n" + extra if extra else ""))
    where = str(project.root / "cmux.toml")
    for args in (("status",), ("start", "--no-attach"), ("send", "supervisor", "hi")):
        r = project.cmux(*args)
        refused(r, where, *words)
    # an agent's tool, through the parse cache of CMUX_HOME
    refused(project.tool("mailbox", "send", "human", "hi", agent="w1"), *words)
    assert not list((project.data / "mailbox").glob("*/new/*.json")), "something was stored"
    with pytest.raises(subprocess.CalledProcessError):  # start started nothing
        project.tmux("list-sessions")


def test_an_agent_sees_a_mistake_made_after_its_config_was_cached(project: Project) -> None:
    assert project.tool("mailbox", "send", "human", "first", agent="w1").code == 0
    text = default_toml(project).replace("depth_limit = 8", "depth_limit = -1")
    write(project, text)
    refused(project.tool("mailbox", "send", "human", "second", agent="w1"), "depth_limit")
    write(project, text.replace("depth_limit = -1", "depth_limit = 8"))
    assert project.tool("mailbox", "send", "human", "third", agent="w1").code == 0


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("CMUX_DEPTH_LIMIT", "-1", ["CMUX_DEPTH_LIMIT", "from 1 to 1000", "[mail] depth_limit"]),
        ("CMUX_DEPTH_LIMIT", "lots", ["CMUX_DEPTH_LIMIT", "not 'lots'"]),
        ("CMUX_MAX_BODY", "1e400", ["CMUX_MAX_BODY", "not '1e400'"]),
        ("CMUX_MAX_BODY", "0", ["CMUX_MAX_BODY", "from 1 to", "[mail] max_body_bytes"]),
        ("CMUX_PERMISSION_MODE", "yolo", ["CMUX_PERMISSION_MODE must be one of"]),
    ],
)
def test_environment_overrides_are_checked_as_their_keys(
    project: Project, name: str, value: str, words: list[str]
) -> None:
    refused(project.cmux("send", "supervisor", "hi", env={name: value}), *words)
    assert not list((project.data / "mailbox").glob("*/new/*.json"))


def test_a_file_that_is_not_utf8_is_named(project: Project) -> None:
    (project.root / "cmux.toml").write_bytes(b'[cmux]\nagent = "d\xffmo"\n')
    refused(project.cmux("status"), "not valid UTF-8", "byte 17 (line 2, column 11) is 0xff")


def _uncommented(text: str) -> str:
    """DEFAULT_TOML with its commented examples switched on."""
    lines = []
    for line in text.splitlines():
        m = re.match(r"^# ((\[|[a-z_]+ = ).*)$", line)
        lines.append(re.sub(r"\s+#.*$", "", m.group(1)) if m else line)
    return "\n".join(lines) + "\n"


def test_the_default_file_and_every_example_in_the_docs_pass(
    project: Project, tmp_path: Path
) -> None:
    from cmux.config import DEFAULT_TOML
    from cmux.settings_schema import validate

    tomllib = pytest.importorskip("tomllib")
    validate(tomllib.loads(DEFAULT_TOML))
    full = _uncommented(DEFAULT_TOML)
    assert "[[health.checks]]" in full and "[profiles.myagent]" in full
    validate(tomllib.loads(full))
    blocks = 0
    for doc in ("README.md", "docs/HEALTH.md", "docs/CLAUDE.md", "mailbox/README.md"):
        for block in re.findall(r"```toml\n(.*?)```", (REPO / doc).read_text(), re.S):
            validate(tomllib.loads(block), doc)
            blocks += 1
    assert blocks >= 3
    write(project, full)
    assert project.ok("status").code == 0


def test_every_builtin_profile_the_schema_accepts_can_be_started(project: Project) -> None:
    from cmux.agents import profiles
    from cmux.settings_schema import BUILTIN_PROFILES

    cfg = project.config()
    for name in BUILTIN_PROFILES:
        assert profiles.resolve(cfg, name).name == name
