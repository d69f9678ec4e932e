"""The tmux gateway's error mapping and the agent launch line."""

from __future__ import annotations

from pathlib import Path

import pytest

from cmux.agents import profiles
from cmux.config import load_config
from cmux.errors import TmuxError, TmuxNotRunning, TmuxTargetMissing
from cmux.tmux import Tmux, _classify


@pytest.mark.parametrize(
    ("stderr", "cls"),
    [
        ("no server running on /tmp/tmux-0/x", TmuxNotRunning),
        ("error connecting to /tmp/tmux-0/x (No such file or directory)", TmuxNotRunning),
        ("can't find pane: %99", TmuxTargetMissing),
        ("duplicate session: x", TmuxError),
    ],
)
def test_tmux_complaints_become_typed_errors(stderr: str, cls: type) -> None:
    err = _classify(["kill-pane", "-t"], stderr)
    assert type(err) is cls
    assert stderr in str(err)


def test_a_missing_server_is_not_running_not_a_crash() -> None:
    t = Tmux("cmux-test-nothing-here")
    assert t.server_running() is False
    assert t.list_panes() == []
    assert t.pane("%1") is None
    with pytest.raises(TmuxNotRunning):
        t.cmd("list-windows")


def test_tmux_missing_from_path_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    t = Tmux("x", binary="/no/such/tmux")
    with pytest.raises(TmuxError, match="not installed"):
        t.cmd("list-sessions")


def test_launch_lines(tmp_path: Path) -> None:
    (tmp_path / "cmux.toml").write_text(
        '[claude]\ncommand = "claude"\npermission_mode = "plan"\n'
        '[profiles.aider]\ncommand = "aider --yes"\n'
        '[profiles.typed]\ncommand = "bot"\ntask = "type"\n'
    )
    cfg = load_config(tmp_path)
    claude = profiles.build_launch(
        cfg, name="w1", role="worker", profile=profiles.resolve(cfg, "claude"), task="do it"
    )
    argv = claude.argv
    assert argv[0] == "claude" and argv[-1] == "do it"
    assert argv[argv.index("--permission-mode") + 1] == "plan"
    assert "one focused task" in argv[argv.index("--append-system-prompt") + 1]
    settings = Path(argv[argv.index("--settings") + 1])
    assert settings.is_file() and "cmux hook Stop" in settings.read_text().replace(
        "-m cmux", "cmux"
    )
    assert claude.session_id and argv[argv.index("--session-id") + 1] == claude.session_id
    aider = profiles.build_launch(
        cfg, name="w2", role="worker", profile=profiles.resolve(cfg, "aider"), task="t"
    )
    assert aider.argv == ["aider", "--yes", "t"]
    typed = profiles.build_launch(
        cfg, name="w3", role="worker", profile=profiles.resolve(cfg, "typed"), task="t"
    )
    assert typed.argv == ["bot"] and typed.type_task == "t"
    env = aider.env
    assert env["CMUX_AGENT"] == "w2" and Path(env["CMUX_HOME"]).is_absolute()
    assert Path(env["CMUX_TOOLS"], "mailbox").is_file()
    wrapped = aider.wrapped()
    assert wrapped[:2] == ["sh", "-c"] and wrapped[-3:] == ["aider", "--yes", "t"]
