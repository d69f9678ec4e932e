"""The registry's state machine, names, and config precedence."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

from cmux.agents import registry
from cmux.agents.registry import Agent, State
from cmux.config import load_config
from cmux.errors import ConfigError, InvalidName, InvalidTransition, NotInitialized, UnknownAgent
from cmux.paths import DataRoot


def test_the_documented_path_through_the_states(data: DataRoot) -> None:
    registry.save(data, Agent(name="w1"))
    for state in ("idle", "busy", "waiting", "busy", "idle", "done", "busy", "blocked", "exited"):
        assert registry.transition(data, "w1", state).state == state
    events = [json.loads(x) for x in data.events_file.read_text().splitlines()]
    moves = [(e["from"], e["to"]) for e in events if e["event"] == "state"]
    assert moves[0] == ("starting", "idle") and moves[-1] == ("blocked", "exited")


@pytest.mark.parametrize(
    ("path", "bad"), [(["exited"], "busy"), (["killed"], "idle"), (["idle"], "starting")]
)
def test_forbidden_moves_raise_or_are_ignored(
    data: DataRoot, path: list[State], bad: State
) -> None:
    registry.save(data, Agent(name="w1"))
    for s in path:
        registry.transition(data, "w1", s)
    with pytest.raises(InvalidTransition):
        registry.transition(data, "w1", bad)
    assert registry.transition(data, "w1", bad, strict=False).state == path[-1]


def test_same_state_changes_nothing_and_logs_nothing(data: DataRoot) -> None:
    registry.save(data, Agent(name="w1"), event=None)
    registry.transition(data, "w1", "idle")
    before = data.events_file.read_text()
    registry.transition(data, "w1", "idle")
    assert data.events_file.read_text() == before


def test_a_move_if_since_gives_way_to_a_newer_change(data: DataRoot) -> None:
    """cmux approve's conclusion (busy) is drawn from a screen seen when the
    agent was waiting; a hook that moved it on meanwhile wins."""
    registry.save(data, Agent(name="w1", state="busy"), event=None)
    seen = registry.transition(data, "w1", "waiting").since
    assert registry.transition(data, "w1", "busy", if_since=seen).state == "busy"
    seen = registry.transition(data, "w1", "waiting").since
    registry.transition(data, "w1", "busy")  # a hook: the tool ran ...
    registry.transition(data, "w1", "waiting")  # ... and the next question shows
    assert registry.transition(data, "w1", "busy", if_since=seen).state == "waiting"


def _hammer(root: str, n: int) -> None:
    d = DataRoot(Path(root))
    for i in range(n):
        registry.transition(d, "w1", "busy" if i % 2 else "idle", strict=False)


def test_concurrent_transitions_never_tear_the_record(data: DataRoot) -> None:
    registry.save(data, Agent(name="w1", state="idle"))
    procs = [multiprocessing.Process(target=_hammer, args=(str(data.root), 50)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    agent = registry.get(data, "w1")
    assert agent.state in ("idle", "busy")
    for line in data.events_file.read_text().splitlines():
        json.loads(line)


@pytest.mark.parametrize(
    "name", ["", "W1", "1w", "a b", "a/b", "x" * 33, "human", "deadletter", "monitor"]
)
def test_bad_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidName):
        registry.validate_name(name)


def test_unknown_agent_is_named(data: DataRoot) -> None:
    with pytest.raises(UnknownAgent, match="ghost"):
        registry.get(data, "ghost")
    with pytest.raises(UnknownAgent):
        registry.get(data, "../../etc/passwd")


def test_status_summary_is_the_first_line_shortened() -> None:
    a = Agent(
        name="w",
        task="\n  fix the login bug in api/auth.py and add a regression test for it please\nmore",
    )
    assert a.task_summary.startswith("fix the login bug") and len(a.task_summary) <= 60


def test_config_precedence_env_over_file_over_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "cmux.toml").write_text('[cmux]\nagent = "demo"\n[mail]\ndepth_limit = 3\n')
    cfg = load_config(tmp_path)
    assert (
        cfg.agent == "demo"
        and cfg.depth_limit == 3
        and cfg.data.root == (tmp_path / ".cmux").resolve()
    )
    monkeypatch.setenv("CMUX_DEPTH_LIMIT", "5")
    monkeypatch.setenv("CMUX_AGENT_PROFILE", "shell")
    cfg = load_config(tmp_path)
    assert cfg.depth_limit == 5 and cfg.agent == "shell"
    assert load_config(tmp_path, agent="claude").agent == "claude"  # a flag beats both


def test_config_errors_are_clear(tmp_path: Path) -> None:
    (tmp_path / "cmux.toml").write_text("[cmux\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(tmp_path)
    (tmp_path / "cmux.toml").write_text('[profiles.x]\ntask = "arg"\n')
    with pytest.raises(ConfigError, match="needs a command"):
        load_config(tmp_path)
    (tmp_path / "cmux.toml").unlink()
    (tmp_path / "nowhere").mkdir()
    with pytest.raises(NotInitialized, match="cmux init"):
        load_config(tmp_path / "nowhere")


def test_agents_in_a_worktree_find_the_data_root_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "cmux.toml").write_text("")
    elsewhere = tmp_path / "worktree"
    elsewhere.mkdir()
    (elsewhere / "cmux.toml").write_text('[cmux]\ndata_root = "wrong"\n')
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("CMUX_HOME", str(tmp_path / ".cmux"))
    monkeypatch.setenv("CMUX_PROJECT", str(tmp_path))
    cfg = load_config()
    assert cfg.data.root == (tmp_path / ".cmux").resolve()
    assert cfg.project_root == tmp_path.resolve()
