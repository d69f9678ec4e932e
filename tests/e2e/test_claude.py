"""cmux with the real Claude Code CLI, end to end.

The model is the scripted server in model_server.py: a line `RUN: <command>`
in what an agent is told becomes a Bash tool call, so each test scripts what
each agent does, and asserts on what reached each agent's conversation (the
requests the server received) and on what `cmux status` said along the way.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.e2e.conftest import Team, started
from tests.helpers import wait_until

pytestmark = pytest.mark.e2e


def claude_pid(team: Team, name: str) -> int:
    """The pid of the Claude Code process in ``name``'s pane (a child of cmux's wrapper)."""
    pane_pid = int(
        team.project.tmux("display-message", "-p", "-t", team.agent(name)["pane_id"], "#{pane_pid}")
    )
    children = [
        int(stat.parent.name)
        for stat in Path("/proc").glob("[0-9]*/stat")
        if _parent_pid(stat) == pane_pid
    ]
    assert children, f"no process under {name}'s pane (pid {pane_pid})"
    return min(children)


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (to end what a killed agent leaves behind)."""
    parents = {int(st.parent.name): _parent_pid(st) for st in Path("/proc").glob("[0-9]*/stat")}
    out: list[int] = []
    todo = [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parents.items() if pp == p]
        out += kids
        todo += kids
    return out


def kill_agent_process(team: Team, name: str) -> None:
    """SIGKILL the agent's Claude Code process, as a crash would, and end the
    tool processes it leaves orphaned (the test's own, by pid)."""
    pid = claude_pid(team, name)
    orphans = descendants(pid)
    os.kill(pid, signal.SIGKILL)
    for child in orphans:
        try:
            os.kill(child, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _parent_pid(stat: Path) -> int | None:
    try:
        # pid (comm) state ppid ...; comm may hold spaces, so split after ")"
        return int(stat.read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def mail_to(team: Team, name: str) -> list[dict[str, object]]:
    return team.project.mail_to(name)


@pytest.mark.timeout(120)
def test_a_claude_worker_reports_done_and_hooks_drive_its_states(team: Team) -> None:
    started(team)
    team.project.ok(
        "spawn", "w1", "--agent", "claude", "--task", "RUN: mailbox done 'w1 finished the task'"
    )
    assert team.state("w1") in ("starting", "idle", "busy", "done")
    team.wait_state("w1", "done")
    # The hooks drove it: starting, idle (SessionStart), busy (prompt, tool), done (mailbox).
    states = team.states_of("w1")
    assert states[:3] == ["starting", "idle", "busy"], states
    assert states[-1] == "done"
    agent = team.agent("w1")
    assert agent["pane_id"]
    # The session cmux chose is the one Claude Code used, and its transcript is known.
    from cmux.agents import registry

    rec = registry.get(team.project.config().data, "w1")
    assert rec.session_id in team.model.sessions()
    assert rec.transcript and Path(rec.transcript).is_file()
    # The report reached the supervisor's mailbox, and then its conversation.
    [done] = [m for m in mail_to(team, "supervisor") if m["kind"] == "done"]
    assert done["from"] == "w1" and "w1 finished the task" in str(done["body"])
    team.wait_seen("supervisor", str(done["id"]), "w1 finished the task")
    # Still done after its turn ended (Stop does not undo a report).
    wait_until(lambda: team.events("deliver", "supervisor"), timeout=30, what="delivery")
    assert team.state("w1") == "done"
    # Tokens, as the model server reported them, per agent.
    cost = team.project.ok("cost", "--json").json()
    by_name = {a["name"]: a for a in cost["agents"]}
    sent = team.model.usage_sent(rec.session_id)
    assert by_name["w1"]["input"] == sent["input_tokens"] > 0
    assert by_name["w1"]["output"] == sent["output_tokens"] > 0
    assert cost["total"]["total"] >= by_name["w1"]["total"] + by_name["supervisor"]["total"]


@pytest.mark.timeout(150)
def test_supervisor_spawns_two_workers_and_both_reports_reach_it(team: Team) -> None:
    started(team)
    task = "Split this in two.\n" + "\n".join(
        f"RUN: workers spawn w{i} --agent claude --task \"RUN: mailbox done 'report from w{i}'\""
        for i in (1, 2)
    )
    team.project.ok("send", "supervisor", task)
    # The task reached the supervisor's conversation through the router.
    team.wait_seen("supervisor", "Split this in two.", timeout=60)
    for name in ("w1", "w2"):
        team.wait_state(name, "done", timeout=90)
        assert team.agent(name)["role"] == "worker"
        assert team.states_of(name)[:3] == ["starting", "idle", "busy"]
    # Each worker was spawned by the supervisor, and reported to it.
    from cmux.agents import registry

    data = team.project.config().data
    assert {registry.get(data, n).parent for n in ("w1", "w2")} == {"supervisor"}
    reports = {m["from"]: m for m in mail_to(team, "supervisor") if m["kind"] == "done"}
    assert set(reports) == {"w1", "w2"}
    # Both reports reached the supervisor's conversation (what the model received).
    team.wait_seen(
        "supervisor",
        "report from w1",
        "report from w2",
        str(reports["w1"]["id"]),
        str(reports["w2"]["id"]),
        timeout=60,
    )
    # The supervisor went to work on the task and came back to idle.
    assert "busy" in team.states_of("supervisor")
    team.wait_state("supervisor", "idle", timeout=60)
    status = team.project.status()
    assert {status["w1"]["state"], status["w2"]["state"]} == {"done"}


@pytest.mark.timeout(120)
def test_mail_to_a_busy_worker_arrives_through_the_stop_hook(team: Team) -> None:
    started(team)
    team.project.ok("spawn", "w1", "--agent", "claude", "--task", "RUN: sleep 10")
    team.wait_state("w1", "busy")
    wait_until(
        lambda: "sleep 10" in team.seen_by("w1") and "Running" in team.screen("w1"),
        timeout=30,
        what="w1 running its sleep",
    )
    sent = team.project.ok(
        "send", "w1", "RUN: mailbox send supervisor 'w1 got the news while busy'", "--json"
    ).json()
    # While w1 works, nothing is typed into its pane: the mail waits for the Stop hook.
    assert team.state("w1") == "busy"
    assert not team.events("deliver", "w1")
    text = team.wait_seen("w1", "Stop hook feedback", sent["id"], timeout=60)
    [delivery] = team.events("deliver", "w1")
    assert delivery["id"] == sent["id"] and delivery["via"] == "stop-hook"
    # Delivered exactly once: marked in the mailbox, seen once in the conversation.
    from cmux.mail import store

    data = team.project.config().data
    assert store.pending_count(data, "w1") == 0
    assert text.count(f"[cmux mail {sent['id']}") >= 1
    # It acted on the mail: the supervisor got its answer.
    team.wait_seen("supervisor", "w1 got the news while busy", timeout=60)
    team.wait_state("w1", "idle", timeout=60)


@pytest.mark.timeout(150)
def test_permission_prompt_is_waiting_and_cmux_approve_and_deny_answer_it(team: Team) -> None:
    started(team)
    default_mode = {"CMUX_PERMISSION_MODE": "default"}
    team.project.ok(
        "spawn",
        "w1",
        "--agent",
        "claude",
        "--task",
        "RUN: python3 -c \"open('approved.txt', 'w').write('yes')\"\n"
        "RUN: mailbox done 'wrote approved.txt'",
        env=default_mode,
    )
    waiting = team.wait_state("w1", "waiting", timeout=60)
    assert "permission" in waiting["last_event"]
    assert "Do you want to proceed?" in team.screen("w1")
    # The supervisor was told, in its conversation.
    team.wait_seen("supervisor", "w1 is waiting for permission", "workers approve w1", timeout=60)
    # Approving an agent with no dialog is refused, and nothing is typed.
    r = team.project.cmux("approve", "supervisor")
    assert r.code == 1 and "no permission dialog" in r.err
    r = team.project.ok("approve", "w1")
    assert "approved a permission dialog of w1" in r.out
    team.wait_state("w1", "done", timeout=60)
    assert (team.project.root / "approved.txt").read_text() == "yes"
    assert team.states_of("w1")[-3:] == ["waiting", "busy", "done"]

    team.project.ok(
        "spawn",
        "w2",
        "--agent",
        "claude",
        "--task",
        "RUN: python3 -c \"open('denied.txt', 'w').write('no')\"",
        env=default_mode,
    )
    team.wait_state("w2", "waiting", timeout=60)
    r = team.project.ok("deny", "w2")
    assert "denied" in r.out
    team.wait_state("w2", "idle", timeout=30)
    assert not (team.project.root / "denied.txt").exists()
    wait_until(lambda: "Do you want to proceed?" not in team.screen("w2"), timeout=10)


@pytest.mark.timeout(150)
def test_a_killed_worker_is_reported_to_the_supervisor(team: Team) -> None:
    started(team)
    team.project.ok("spawn", "w1", "--agent", "claude", "--task", "RUN: sleep 120")
    team.wait_state("w1", "busy")
    kill_agent_process(team, "w1")
    team.wait_state("w1", "exited", timeout=30)

    # The watchdog tells the supervisor; the router puts it in its conversation.
    def report() -> dict[str, object]:
        return next((m for m in mail_to(team, "supervisor") if "w1" in str(m["body"])), {})

    note = wait_until(report, timeout=60, what="a report of w1's death")
    assert note["from"] == "cmux" and "without reporting done" in str(note["body"])
    team.wait_seen("supervisor", str(note["id"]), "w1 exited", timeout=60)
    assert team.state("supervisor") in ("idle", "busy")


@pytest.mark.timeout(150)
def test_a_killed_supervisor_comes_back_with_its_memory(team: Team) -> None:
    fact = "The deploy key lives in vault/ops (e2e fact 4711)"
    started(team)
    r = team.project.tool("journal", "remember", fact, agent="human")
    assert r.code == 0, r.err
    first = team.session("supervisor")
    assert fact not in team.model.texts(first)
    kill_agent_process(team, "supervisor")

    def back() -> dict[str, object]:
        a = team.project.status()["supervisor"]
        from cmux.agents import registry

        rec = registry.get(team.project.config().data, "supervisor")
        return a if rec.incarnation >= 2 and a["state"] == "idle" else {}

    wait_until(back, timeout=90, interval=0.3, what="the supervisor's next incarnation")
    second = team.session("supervisor")
    assert second != first
    # Its new session starts with what the journal remembers (the SessionStart
    # hook's output joins its context); the model sees it with the next turn.
    team.project.ok("send", "supervisor", "SAY: back at work")
    text = team.wait_seen("supervisor", fact, "back at work", timeout=60)
    assert "What cmux remembers" in text
    states = team.states_of("supervisor")
    assert states[states.index("exited") :][:3] == ["exited", "starting", "idle"], states


def _first_run(team: Team) -> None:
    """A HOME where the project was never trusted nor the API key approved, a
    supervisor that is not Claude (it would rewrite ~/.claude.json), and a
    Claude worker spawned into it."""
    from tests.e2e.conftest import claude_home

    team.project.ok("start", "--no-attach", "--command", "sleep 600")
    home = Path(team.project.env["HOME"])
    claude_home(home, team.project.root / "elsewhere", api_key="sk-ant-another-key-0000000000000")
    team.project.ok("spawn", "w1", "--agent", "claude", "--task", "RUN: mailbox done 'past it'")


def _dialog_on_screen(team: Team) -> str:
    from cmux.agents import screen

    reading = screen.classify(team.screen("w1"))
    return reading.screen.value if reading.dialog else ""


@pytest.mark.timeout(120)
def test_first_run_questions_are_answered_with_cmux_approve(team: Team) -> None:
    """The trust dialog and the API-key question show before any hook runs;
    `cmux approve` reads the screen and answers each; then the hooks take over."""
    _first_run(team)
    answered = []
    for _ in range(2):
        shown = wait_until(lambda: _dialog_on_screen(team), timeout=60, what="a dialog")
        r = team.project.ok("approve", "w1", "--json").json()
        assert r["dialog"] == shown
        answered.append(shown)
        wait_until(lambda s=shown: _dialog_on_screen(team) != s, timeout=10)  # type: ignore[misc]
    assert answered == ["trust", "api-key"]
    team.wait_state("w1", "done", timeout=60)
    assert team.states_of("w1")[-3:] == ["idle", "busy", "done"]


@pytest.mark.timeout(120)
def test_a_dialog_before_the_hooks_shows_waiting_in_status(team: Team) -> None:
    _first_run(team)
    waiting = team.wait_state("w1", "waiting", timeout=60)
    assert "trust" in waiting["last_event"]
    team.project.ok("approve", "w1")
    team.wait_state("w1", "waiting", timeout=60)  # the API key question comes next
    wait_until(lambda: _dialog_on_screen(team) == "api-key", timeout=30)
    team.project.ok("approve", "w1")
    team.wait_state("w1", "done", timeout=60)
