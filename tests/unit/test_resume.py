"""Exact resume: which agents come back after a session ends, and how (pure)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cmux.agents import profiles, resume
from cmux.agents.registry import Agent, State
from cmux.agents.resume import LastSession, Plan
from cmux.config import load_config
from cmux.paths import DataRoot

S = "123:456"  # the server that ended


def agent(name: str = "w1", state: State = "idle", **kw: Any) -> Agent:
    kw.setdefault("server", S)
    kw.setdefault("pane_id", "%1")
    return Agent(name=name, state=state, **kw)


def test_start_resumes_by_default_only_after_a_dead_server() -> None:
    crashed = LastSession(server=S)
    stopped = LastSession(server=S, stopped=1.0)
    assert resume.should_resume("auto", crashed)
    assert not resume.should_resume("auto", stopped)
    assert not resume.should_resume("auto", None)
    assert resume.should_resume("resume", stopped)
    assert not resume.should_resume("fresh", crashed)


def test_after_a_dead_server_those_live_on_it_come_back() -> None:
    agents = [
        agent("w1", "busy"),
        agent("w2", "exited", last_event="idle → exited: the tmux server ended, code unknown"),
        agent("w3", "exited", exit_code=3),  # ended by itself: its parent was told
        agent("w4", "killed"),  # a person's kill stands
        agent("w5", "idle", server="9:9"),  # another server's
        agent("w6", "done"),
        agent("supervisor", "exited", role="supervisor", created=99.0),
    ]
    names = [a.name for a in resume.candidates(agents, LastSession(server=S))]
    assert names == ["supervisor", "w1", "w2", "w6"]
    assert resume.candidates(agents, None) == []


def test_after_a_stop_those_it_ended_come_back_in_that_incarnation() -> None:
    last = LastSession(server=S, stopped=1.0, ended={"w1": 2, "w2": 1, "w3": 1})
    agents = [
        agent("w1", "killed", incarnation=2),
        agent("w2", "killed", incarnation=2),  # spawned and ended again since
        agent("w3", "idle"),  # live again already
        agent("w4", "killed"),  # not ended by that stop
    ]
    assert [a.name for a in resume.candidates(agents, last)] == ["w1"]


def test_the_plan_continues_a_conversation_only_when_it_can(tmp_path: Path) -> None:
    t = tmp_path / "s.jsonl"
    t.write_text("{}\n")
    a = agent(session_id="sid-1", transcript=str(t))
    assert resume.plan(a, resumes=False, transcript=None) == Plan("rerun")
    assert resume.plan(a, resumes=True, transcript=t) == Plan("conversation", session_id="sid-1")
    gone = resume.plan(a, resumes=True, transcript=None)
    assert gone.how == "fresh" and "transcript of session sid-1 is not there" in gone.why
    assert str(t) in gone.why
    assert resume.plan(agent(), resumes=True, transcript=None).how == "fresh"
    failed = agent(
        "w1",
        "exited",
        session_id="sid-1",
        resume="conversation",
        last_event="starting → exited: its process exited, code 1",
    )
    assert "failed last time" in resume.plan(failed, resumes=True, transcript=t).why


@pytest.mark.parametrize(
    ("state", "last_event", "carried", "working"),
    [
        ("exited", "done → exited: the tmux server ended", "done", False),
        ("killed", "blocked → killed: cmux stop", "blocked", False),
        ("exited", "busy → exited: session ended (other)", None, True),
        ("killed", "waiting → killed: cmux stop", None, True),
        ("idle", "", None, False),
        ("done", "busy → done: reported", "done", False),
    ],
)
def test_a_report_outlives_the_restart_and_work_in_hand_is_noticed(
    state: State, last_event: str, carried: str | None, working: bool
) -> None:
    a = agent(state=state, last_event=last_event)
    assert resume.carried_state(a) == carried
    assert resume.was_working(a) is working


def test_the_last_session_file_round_trips(tmp_path: Path) -> None:
    data = DataRoot(tmp_path)
    data.ensure()
    assert resume.load(data) is None
    resume.started(data, S)
    assert resume.load(data) == LastSession(server=S, started=resume.load(data).started)  # type: ignore[union-attr]
    resume.stopped(data, [agent("w1", "killed", incarnation=3)])
    last = resume.load(data)
    assert last is not None and last.stopped and last.ended == {"w1": 3}


def test_a_resumed_claude_keeps_its_session_id_and_gets_no_first_prompt(tmp_path: Path) -> None:
    (tmp_path / "cmux.toml").write_text('[claude]\ncommand = "claude"\n')
    cfg = load_config(tmp_path)
    claude = profiles.resolve(cfg, "claude")
    back = profiles.build_launch(
        cfg, name="w1", role="worker", profile=claude, task="do it", resume_session="sid-9"
    )
    argv = back.argv
    assert argv[argv.index("--resume") + 1] == "sid-9" and "--session-id" not in argv
    assert "do it" not in argv and back.session_id == "sid-9"
    assert back.env["CMUX_SESSION_ID"] == "sid-9" and "CMUX_MEMORY" not in back.env
    fresh = profiles.build_launch(
        cfg,
        name="w1",
        role="worker",
        profile=claude,
        task="do it",
        prompt="[cmux] lost\n\ndo it",
        memory=True,
    )
    assert fresh.argv[-1] == "[cmux] lost\n\ndo it" and "--resume" not in fresh.argv
    assert fresh.session_id != "sid-9" and fresh.env["CMUX_MEMORY"] == "1"
