"""Exact resume with the real Claude Code CLI: conversations survive the tmux server.

A supervisor and a worker have a few turns each; the tmux server dies (or
`cmux stop`); mail is sent to the worker meanwhile; `cmux start` (or `cmux
start --resume`) brings both back in their own windows, each continuing its
own conversation (`claude --resume`, the same session id): the scripted
model sees the earlier turns in the requests of the resumed sessions, and the
mail sent while they were down arrives once. A worker whose transcript is
gone starts afresh with its task and the journal's memory, and is told so.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from cmux.agents.registry import Agent
from tests.e2e.conftest import Team, started
from tests.e2e.test_claude import claude_pid
from tests.helpers import wait_until

pytestmark = pytest.mark.e2e


def crash_server(team: Team) -> None:
    project = team.project
    project.tmux("kill-server")
    wait_until(
        lambda: (
            subprocess.run(
                ["tmux", "-L", project.socket(), "list-sessions"],
                env=project.env,
                capture_output=True,
            ).returncode
            != 0
        ),
        what="the server gone",
    )


def record(team: Team, name: str) -> Agent:
    from cmux.agents import registry

    return registry.get(team.project.config().data, name)


def since(team: Team, session: str, t0: float) -> str:
    """What the model was shown in ``session`` by requests made after ``t0``."""
    return "\n".join(r.text() for r in team.model.conversation(session) if r.ts > t0)


def last_request(team: Team, session: str) -> str:
    reqs = team.model.conversation(session)
    return reqs[-1].text() if reqs else ""


def windows(team: Team) -> dict[str, str]:
    out = team.project.tmux("list-panes", "-a", "-F", "#{window_name} #{pane_id}")
    return dict(line.split(" ", 1) for line in out.splitlines() if line.strip())


def deliveries(team: Team, name: str, mid: str) -> int:
    return sum(1 for e in team.events("deliver", name) if e.get("id") == mid)


def dump(team: Team, name: str) -> None:
    """What a failed wait leaves in the test log: the record, why mail is
    held, the bottom of the screen, the agent's last events."""
    print("record:", record(team, name))
    held = team.project.data / "mailbox" / name / "held"
    print("held:", held.read_text() if held.exists() else None)
    print("screen:\n" + "\n".join(team.screen(name).rstrip().splitlines()[-15:]))
    for e in [e for e in team.project.events() if e.get("agent") == name][-20:]:
        print("event:", e)


def two_agents_with_history(team: Team) -> tuple[str, str]:
    """A Claude supervisor and worker, two turns each; their session ids."""
    started(team)
    team.project.ok("send", "supervisor", "SAY: supervisor-turn-one")
    team.wait_seen("supervisor", "supervisor-turn-one")
    team.project.ok("spawn", "w1", "--agent", "claude", "--task", "RUN: echo worker-turn-one")
    team.wait_seen("w1", "worker-turn-one")
    team.wait_state("w1", "idle", timeout=60)
    team.wait_state("supervisor", "idle", timeout=60)
    team.project.ok("send", "w1", "SAY: worker-turn-two")
    team.wait_seen("w1", "worker-turn-two")
    team.wait_state("w1", "idle", timeout=60)
    team.project.ok("send", "supervisor", "SAY: supervisor-turn-two")
    team.wait_seen("supervisor", "supervisor-turn-two")
    team.wait_state("supervisor", "idle", timeout=60)
    # Both transcripts are on disk (what a resume needs).
    for name in ("supervisor", "w1"):
        t = record(team, name).transcript
        assert t and Path(t).is_file(), name
    return team.session("supervisor"), team.session("w1")


def check_both_back_with_their_conversations(
    team: Team, sup: str, w1: str, t0: float, mail: list[str]
) -> None:
    live = windows(team)
    for name, sid in (("supervisor", sup), ("w1", w1)):
        rec = record(team, name)
        assert rec.incarnation == 2 and rec.resume == "conversation", name
        assert rec.session_id == sid, f"{name} continues its own session"
        assert live[name] == rec.pane_id, f"{name} in its own window"
    assert record(team, "w1").parent == "supervisor"
    assert record(team, "w1").task == "RUN: echo worker-turn-one"
    # The mail sent while down reached w1's resumed conversation, each message once,
    # and the requests of that session carry the turns from before the crash.
    try:
        text = team.wait_seen("w1", *mail, timeout=60)
    except AssertionError:
        dump(team, "w1")
        raise
    assert text
    resumed = since(team, w1, t0)
    assert "worker-turn-one" in resumed and "worker-turn-two" in resumed
    newest = last_request(team, w1)
    for mid in mail:
        assert deliveries(team, "w1", mid) == 1
        assert newest.count(f"[cmux mail {mid}") == 1, newest
    team.wait_state("w1", "idle", timeout=60)
    # The supervisor's resumed session, once it has a new turn, shows its old ones.
    team.project.ok("send", "supervisor", "SAY: supervisor-after-restart")
    try:
        team.wait_seen("supervisor", "supervisor-after-restart", timeout=60)
    except AssertionError:
        dump(team, "supervisor")
        raise
    resumed = since(team, sup, t0)
    assert "supervisor-turn-one" in resumed and "supervisor-turn-two" in resumed
    assert team.model.sessions() >= {sup, w1}


@pytest.mark.timeout(240)
def test_kill_server_then_start_brings_both_back_with_their_conversations_and_mail(
    team: Team,
) -> None:
    sup, w1 = two_agents_with_history(team)
    crash_server(team)
    t0 = time.time()
    mail = [
        team.project.ok("send", "w1", f"SAY: while-down-{i}", "--json").json()["id"] for i in (1, 2)
    ]
    r = team.project.ok("start", "--no-attach", "--agent", "claude")
    assert "brought back: supervisor (conversation), w1 (conversation)" in r.out, r.out
    check_both_back_with_their_conversations(team, sup, w1, t0, mail)
    # Its state after the restart came from its hooks: starting, then idle (SessionStart).
    states = team.states_of("w1")
    back = len(states) - 1 - states[::-1].index("starting")
    assert states[back : back + 2] == ["starting", "idle"], states


@pytest.mark.timeout(240)
def test_stop_then_start_resume_brings_both_back_with_their_conversations(team: Team) -> None:
    sup, w1 = two_agents_with_history(team)
    team.project.ok("stop")
    t0 = time.time()
    mail = [team.project.ok("send", "w1", "SAY: while-stopped", "--json").json()["id"]]
    r = team.project.ok("start", "--no-attach", "--agent", "claude", "--resume")
    assert "brought back: supervisor (conversation), w1 (conversation)" in r.out, r.out
    check_both_back_with_their_conversations(team, sup, w1, t0, mail)


@pytest.mark.timeout(180)
def test_a_worker_whose_transcript_is_gone_starts_fresh_with_task_and_memory(
    team: Team,
) -> None:
    fact = "The staging database is read-only on Fridays (e2e fact 5150)"
    started(team)
    assert team.project.tool("journal", "remember", fact, agent="human").code == 0
    team.project.ok("spawn", "w1", "--agent", "claude", "--task", "SAY: first-life")
    team.wait_seen("w1", "first-life")
    team.wait_state("w1", "idle", timeout=60)
    old = team.session("w1")
    transcript = Path(str(record(team, "w1").transcript))
    pid = claude_pid(team, "w1")
    crash_server(team)
    # Claude Code writes its transcript as it goes down: remove it once it is gone.
    wait_until(lambda: not Path(f"/proc/{pid}").exists(), timeout=30, what="w1's claude gone")
    transcript.unlink()

    r = team.project.ok("start", "--no-attach", "--agent", "claude")
    # (The supervisor never had a turn: it has no transcript to continue either.)
    assert "supervisor (fresh), w1 (fresh)" in r.out, r.out
    team.wait_state("w1", "idle", "busy", timeout=60)
    new = team.session("w1")
    assert new != old
    rec = record(team, "w1")
    assert rec.resume == "fresh" and rec.incarnation == 2
    # It is told why, gets its task again and the journal's memory.
    text = team.wait_seen("w1", "could not be resumed", "first-life", fact, timeout=60)
    assert str(transcript) in text and "What cmux remembers" in text
    [event] = [e for e in team.events("respawn", "w1")]
    assert event["how"] == "fresh" and "is not there" in event["why"]
    context = team.project.config().data.context_file("w1").read_text()
    assert "could not be resumed" in context and fact in context


@pytest.mark.timeout(180)
def test_a_crashed_supervisor_is_brought_back_by_the_watchdog_with_its_conversation(
    team: Team,
) -> None:
    from tests.e2e.test_claude import kill_agent_process

    started(team)
    team.project.ok("send", "supervisor", "SAY: before-the-crash")
    team.wait_seen("supervisor", "before-the-crash")
    team.wait_state("supervisor", "idle", timeout=60)
    sid = team.session("supervisor")
    t0 = time.time()
    kill_agent_process(team, "supervisor")
    wait_until(
        lambda: record(team, "supervisor").incarnation == 2 and team.state("supervisor") == "idle",
        timeout=90,
        interval=0.3,
        what="the supervisor back",
    )
    rec = record(team, "supervisor")
    assert rec.resume == "conversation" and rec.session_id == sid
    team.project.ok("send", "supervisor", "SAY: after-the-crash")
    team.wait_seen("supervisor", "after-the-crash", timeout=60)
    assert "before-the-crash" in since(team, sid, t0)
    [event] = team.events("respawn", "supervisor")
    assert event["how"] == "conversation"
    # The person is told how it came back.
    from cmux.mail import store

    told = [m.body for m in store.read_all(team.project.config().data, "human")]
    assert any("with its conversation" in b for b in told), told
