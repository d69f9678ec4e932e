"""`cmux hook EVENT`: the states, the session record, mail at Stop, the loop
guard, and that a hook never fails the agent. Hook JSON as Claude Code 2.1.197
sends it (captured with a dumping hook)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from cmux.agents import hookstate, profiles, registry
from cmux.agents.registry import Agent, State
from cmux.config import Config
from cmux.delivery import handover, hooks, policy
from cmux.mail import claims, maildir, store
from tests.helpers import REPO

SID = "11111111-2222-3333-4444-555555555555"
TRANSCRIPT = "/home/u/.claude/projects/-p/11111111-2222-3333-4444-555555555555.jsonl"


@pytest.fixture
def cfg(cfg: Config, monkeypatch: pytest.MonkeyPatch) -> Config:
    """The shared project (tests/unit/conftest.py) as an agent's hook sees it,
    with supervisor and w1 registered as Claude Code agents."""
    c = cfg
    monkeypatch.setenv("CMUX_HOME", str(c.data.root))
    monkeypatch.setenv("CMUX_PROJECT", str(c.project_root))
    for name, role in (("supervisor", "supervisor"), ("w1", "worker")):
        registry.save(
            c.data,
            Agent(
                name=name,
                role=role,
                profile="claude",
                parent=None if role == "supervisor" else "supervisor",
            ),
        )
    return c


def payload(event: str, **extra: Any) -> dict[str, Any]:
    return {
        "session_id": SID,
        "transcript_path": TRANSCRIPT,
        "cwd": "/p",
        "hook_event_name": event,
        **extra,
    }


def hook(cfg: Config, event: str, name: str = "w1", **extra: Any) -> tuple[int, str]:
    out = io.StringIO()
    env = {"CMUX_HOME": str(cfg.data.root), "CMUX_AGENT": name, "CMUX_ROLE": _role(name)}
    env.update(extra.pop("env_extra", None) or {})
    code = hooks.run(event, io.StringIO(json.dumps(payload(event, **extra))), out, env)
    return code, out.getvalue()


def _role(name: str) -> str:
    return "supervisor" if name == "supervisor" else "worker"


def state(cfg: Config, name: str = "w1") -> str:
    return registry.get(cfg.data, name).state


def set_state(cfg: Config, *states: State, name: str = "w1") -> None:
    for s in states:
        registry.transition(cfg.data, name, s)


# -- states -----------------------------------------------------------------------------


def test_session_start_makes_a_starting_agent_idle_and_records_the_session(cfg: Config) -> None:
    assert hook(cfg, "SessionStart", source="startup") == (0, "")
    agent = registry.get(cfg.data, "w1")
    assert (agent.state, agent.session_id, agent.transcript) == ("idle", SID, TRANSCRIPT)
    sessions = cfg.data.state_dir / "hooks" / "w1.sessions"
    assert sessions.read_text().split() == [TRANSCRIPT]


def test_session_start_does_not_undo_a_prompt_already_submitted(cfg: Config) -> None:
    set_state(cfg, "busy")
    hook(cfg, "SessionStart", source="startup")
    assert state(cfg) == "busy"


def test_the_supervisor_starts_with_what_the_journal_remembers(cfg: Config) -> None:
    from cmux.journal import store as journal

    journal.remember(cfg.data, "The build needs Python 3.12", agent="human")
    code, out = hook(cfg, "SessionStart", name="supervisor", source="startup")
    assert code == 0
    assert "The build needs Python 3.12" in out
    # a worker's context is its task file; it gets no journal dump
    assert hook(cfg, "SessionStart", name="w1", source="startup")[1] == ""
    # ... unless it starts afresh because its conversation was lost (resume.py)
    _, memory = hook(cfg, "SessionStart", source="startup", env_extra={"CMUX_MEMORY": "1"})
    assert "The build needs Python 3.12" in memory


def test_prompt_and_tool_use_make_it_busy(cfg: Config) -> None:
    set_state(cfg, "idle")
    hook(cfg, "UserPromptSubmit", prompt="do it")
    assert state(cfg) == "busy"
    set_state(cfg, "idle")
    hook(cfg, "PreToolUse", tool_name="Bash", tool_input={"command": "ls"})
    assert state(cfg) == "busy"
    assert "using Bash" in registry.get(cfg.data, "w1").last_event


def test_done_stays_done_through_tool_use_and_stop_but_not_a_new_prompt(cfg: Config) -> None:
    set_state(cfg, "busy", "done")
    hook(cfg, "PreToolUse", tool_name="Bash")
    hook(cfg, "Stop", stop_hook_active=False)
    assert state(cfg) == "done"
    hook(cfg, "UserPromptSubmit", prompt="one more thing")
    assert state(cfg) == "busy"


def test_a_notice_from_cmux_does_not_undo_a_report(cfg: Config) -> None:
    set_state(cfg, "busy", "done")
    landed = "[cmux mail 18ed-1 from cmux kind=notice]\nmerged: cmux/w1 landed on main at abc."
    hook(cfg, "UserPromptSubmit", prompt=landed)
    assert state(cfg) == "done"
    hook(cfg, "Stop", stop_hook_active=False)
    assert state(cfg) == "done"
    # a notice together with mail from someone else is new work
    both = landed + "\n[cmux mail 18ed-2 from supervisor kind=message]\nfix the test too"
    hook(cfg, "UserPromptSubmit", prompt=both)
    assert state(cfg) == "busy"


def test_a_busy_agents_tool_use_writes_nothing(cfg: Config) -> None:
    hook(cfg, "SessionStart")
    set_state(cfg, "busy")
    before = cfg.data.agent_file("w1").stat().st_mtime_ns
    events_before = cfg.data.events_file.read_text()
    for _ in range(5):
        hook(cfg, "PreToolUse", tool_name="Bash")
    assert cfg.data.agent_file("w1").stat().st_mtime_ns == before
    assert cfg.data.events_file.read_text() == events_before


def test_the_fast_path_reads_the_registrys_own_file(cfg: Config) -> None:
    assert hookstate.agent_file(str(cfg.data.root), "w1") == str(cfg.data.agent_file("w1"))


def test_permission_notification_means_waiting_and_the_parent_is_told(cfg: Config) -> None:
    set_state(cfg, "busy")
    note = {"message": "Claude needs your permission", "notification_type": "permission_prompt"}
    hook(cfg, "Notification", **note)
    assert state(cfg) == "waiting"
    [msg] = store.read_all(cfg.data, "supervisor")
    assert msg.sender == "cmux" and msg.kind == "notice"
    assert "workers approve w1" in msg.body and "workers deny w1" in msg.body
    # the same question notified twice is told once
    hook(cfg, "Notification", **note)
    assert len(store.read_all(cfg.data, "supervisor")) == 1
    # the next tool call (after an answer) is busy again
    hook(cfg, "PreToolUse", tool_name="Bash")
    assert state(cfg) == "busy"


def test_a_waiting_supervisor_tells_the_person(cfg: Config) -> None:
    set_state(cfg, "busy", name="supervisor")
    hook(cfg, "Notification", name="supervisor", message="Claude needs your permission to use Bash")
    assert state(cfg, "supervisor") == "waiting"
    assert [m.kind for m in store.read_all(cfg.data, "human")] == ["notice"]


def test_other_notifications_change_nothing(cfg: Config) -> None:
    set_state(cfg, "idle")
    hook(
        cfg,
        "Notification",
        message="Claude is waiting for your input",
        notification_type="idle_prompt",
    )
    assert state(cfg) == "idle"
    assert store.read_all(cfg.data, "supervisor") == []


def test_stop_without_mail_is_idle(cfg: Config) -> None:
    set_state(cfg, "busy")
    assert hook(cfg, "Stop", stop_hook_active=False) == (0, "")
    assert state(cfg) == "idle"


def test_session_end_is_exited_but_a_cleared_session_goes_on(cfg: Config) -> None:
    set_state(cfg, "idle")
    hook(cfg, "SessionEnd", reason="clear")
    assert state(cfg) == "idle"
    hook(cfg, "SessionEnd", reason="prompt_input_exit")
    assert state(cfg) == "exited"
    assert "prompt_input_exit" in registry.get(cfg.data, "w1").last_event


def test_a_killed_agent_stays_killed(cfg: Config) -> None:
    set_state(cfg, "idle", "killed")
    for event in ("SessionEnd", "Stop", "PreToolUse", "UserPromptSubmit"):
        hook(cfg, event)
    assert state(cfg) == "killed"


# -- mail at Stop -------------------------------------------------------------------------


def test_stop_hands_waiting_mail_over_and_marks_it_delivered(cfg: Config) -> None:
    set_state(cfg, "busy")
    a = store.send(cfg, to="w1", body="rebase on main first", sender="supervisor")
    b = store.send(cfg, to="w1", body="line one\nline two", sender="human")
    code, out = hook(cfg, "Stop", stop_hook_active=False)
    assert code == 0
    answer = json.loads(out)
    assert answer["decision"] == "block"
    reason = answer["reason"]
    assert f"[cmux mail {a.id} from supervisor kind=message] rebase on main first" in reason
    assert f"[cmux mail {b.id} from human kind=message]\nline one\nline two" in reason
    assert reason.index(a.id) < reason.index(b.id)
    # delivered exactly when handed over: flagged in cur/, nothing left in new/
    assert store.pending(cfg.data, "w1") == [] and store.claimed(cfg.data, "w1") == []
    cur = sorted(p.name for p in (cfg.data.mailbox("w1") / "cur").iterdir())
    assert cur == sorted(f"{m.id}.json{maildir.SEEN}" for m in (a, b))
    delivered = [e for e in _events(cfg) if e["event"] == "deliver"]
    assert {e["id"] for e in delivered} == {a.id, b.id}
    assert {e["via"] for e in delivered} == {"stop-hook"}
    assert state(cfg) == "busy"  # it goes on with the mail


def test_mail_to_a_done_worker_wakes_it(cfg: Config) -> None:
    set_state(cfg, "busy", "done")
    store.send(cfg, to="w1", body="tests fail on CI, look again", sender="supervisor")
    assert json.loads(hook(cfg, "Stop")[1])["decision"] == "block"
    assert state(cfg) == "busy"


def test_a_message_is_handed_over_once(cfg: Config) -> None:
    set_state(cfg, "busy")
    store.send(cfg, to="w1", body="once", sender="supervisor")
    assert hook(cfg, "Stop", stop_hook_active=False)[1]
    assert hook(cfg, "Stop", stop_hook_active=True)[1] == ""
    assert state(cfg) == "idle"


def test_loop_guard_stops_chained_handovers(cfg: Config) -> None:
    set_state(cfg, "busy")
    handed = 0
    active = False
    for i in range(policy.MAX_CHAINED_HANDOVERS + 3):
        store.send(cfg, to="w1", body=f"message {i}", sender="human")
        out = hook(cfg, "Stop", stop_hook_active=active)[1]
        if not out:
            break
        handed += 1
        active = True
    assert handed == policy.MAX_CHAINED_HANDOVERS
    assert state(cfg) == "idle"
    assert len(store.pending(cfg.data, "w1")) == 1  # left for the router
    # a new turn starts a new count
    hook(cfg, "UserPromptSubmit", prompt="go on")
    assert hook(cfg, "Stop", stop_hook_active=False)[1]


def test_stop_hook_active_alone_does_not_lose_mail(cfg: Config) -> None:
    set_state(cfg, "busy")
    store.send(cfg, to="w1", body="late news", sender="supervisor")
    out = hook(cfg, "Stop", stop_hook_active=True)[1]
    assert "late news" in json.loads(out)["reason"]


# -- never failing the agent ----------------------------------------------------------------


def test_bad_input_is_logged_and_exit_code_is_zero(cfg: Config) -> None:
    out = io.StringIO()
    env = {"CMUX_HOME": str(cfg.data.root), "CMUX_AGENT": "w1"}
    assert hooks.run("Stop", io.StringIO("{not json"), out, env) == 0
    assert out.getvalue() == ""
    log = (cfg.data.state_dir / "hooks.log").read_text()
    assert "Stop w1" in log and "JSONDecodeError" in log


def test_a_broken_mailbox_does_not_fail_the_hook(
    cfg: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_state(cfg, "busy")
    store.send(cfg, to="w1", body="x", sender="human")

    def boom(*a: object, **k: object) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(claims, "take", boom)
    assert hook(cfg, "Stop") == (0, "")
    assert "disk on fire" in (cfg.data.state_dir / "hooks.log").read_text()


def test_unknown_agents_and_strangers_are_left_alone(cfg: Config) -> None:
    out = io.StringIO()
    assert hooks.run("Stop", io.StringIO("{}"), out, {}) == 0
    env = {"CMUX_HOME": str(cfg.data.root), "CMUX_AGENT": "nobody"}
    assert hooks.run("Stop", io.StringIO(json.dumps(payload("Stop"))), out, env) == 0
    assert out.getvalue() == ""
    assert not (cfg.data.state_dir / "hooks.log").exists()


# -- the real command -------------------------------------------------------------------------


def _run_hook(cfg: Config, event: str, body: dict[str, Any], *argv: str) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "CMUX_HOME": str(cfg.data.root),
        "CMUX_AGENT": "w1",
        "CMUX_PROJECT": str(cfg.project_root),
    }
    return subprocess.Popen(
        [sys.executable, *(argv or ("-m", "cmux", "hook")), event],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd="/",
    )


def test_cmux_hook_stop_as_claude_code_calls_it(cfg: Config) -> None:
    set_state(cfg, "busy")
    msg = store.send(cfg, to="w1", body="hello from the test", sender="human")
    proc = _run_hook(cfg, "Stop", payload("Stop"))
    out, err = proc.communicate(json.dumps(payload("Stop", stop_hook_active=False)), timeout=30)
    assert proc.returncode == 0, err
    answer = json.loads(out)
    assert answer["decision"] == "block" and msg.id in answer["reason"]
    assert state(cfg) == "busy"


def test_the_settings_hooks_call_cmux_hook_for_every_event() -> None:
    settings = profiles.claude_settings("acceptEdits")
    hooks = settings["hooks"]
    assert isinstance(hooks, dict)
    assert set(hooks) == set(hookstate.EVENTS)
    for event, [entry] in hooks.items():
        [command] = entry["hooks"]
        assert command["command"].endswith(f"-m cmux hook {event}")
    assert "skipDangerousModePermissionPrompt" not in settings
    assert "Bash(mailbox:*)" in settings["permissions"]["allow"]  # type: ignore[index]
    assert profiles.claude_settings("bypassPermissions")["skipDangerousModePermissionPrompt"]


def test_a_busy_agents_tool_call_imports_none_of_the_heavy_modules(cfg: Config) -> None:
    hook(cfg, "SessionStart")
    set_state(cfg, "busy")
    code = (
        "import io, json, sys\n"
        "from cmux.delivery import hooks\n"
        "env = {'CMUX_HOME': sys.argv[1], 'CMUX_AGENT': 'w1'}\n"
        "hooks.run('PreToolUse', io.StringIO(sys.argv[2]), sys.stdout, env)\n"
        "heavy = [m for m in ('click', 'rich', 'libtmux', 'git', 'cmux.agents.registry',"
        " 'cmux.mail.store', 'cmux.config') if m in sys.modules]\n"
        "print(json.dumps(heavy))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(cfg.data.root), json.dumps(payload("PreToolUse"))],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    ).stdout
    assert json.loads(out) == []


def test_hook_latency_is_reported(cfg: Config) -> None:
    """Not a benchmark: a bound that catches an accidental heavy import."""
    hook(cfg, "SessionStart")
    set_state(cfg, "busy")
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        proc = _run_hook(cfg, "PreToolUse", {}, "-m", "cmux.delivery.hooks")
        proc.communicate(json.dumps(payload("PreToolUse", tool_name="Bash")), timeout=30)
        times.append(time.perf_counter() - t0)
    assert min(times) < 1.0


def _events(cfg: Config) -> list[dict[str, Any]]:
    return [json.loads(x) for x in cfg.data.events_file.read_text().splitlines() if x.strip()]


def test_the_quick_mail_check_looks_where_the_store_writes(cfg: Config) -> None:
    home = str(cfg.data.root)
    assert not handover.mail_waiting(home, "w1")
    store.send(cfg, to="w1", body="x", sender="human")
    assert handover.mail_waiting(home, "w1") and store.pending(cfg.data, "w1")
    assert not handover.mail_waiting(home, "nobody")


def test_stop_hands_over_good_mail_past_a_fifo_a_directory_and_a_symlink(
    cfg: Config, tmp_path: Path
) -> None:
    from cmux.mail.message import new_id

    set_state(cfg, "busy")
    new = cfg.data.mailbox("w1") / "new"
    fifo, folder, link = (f"{new_id()}.json" for _ in range(3))
    os.mkfifo(new / fifo)
    (new / folder).mkdir()
    (tmp_path / "target").write_text("not mail")
    os.symlink(tmp_path / "target", new / link)
    msg = store.send(cfg, to="w1", body="the real one", sender="supervisor")
    proc = _run_hook(cfg, "Stop", payload("Stop"))
    out, err = proc.communicate(json.dumps(payload("Stop", stop_hook_active=False)), timeout=30)
    assert proc.returncode == 0, err
    reason = json.loads(out)["reason"]
    assert reason == f"[cmux mail {msg.id} from supervisor kind=message] the real one"
    dl = cfg.data.deadletter
    assert {p.name for p in dl.glob("*.reason")} == {f"{n}.reason" for n in (fifo, folder, link)}
    assert store.pending(cfg.data, "w1") == [] and store.claimed(cfg.data, "w1") == []
    assert (tmp_path / "target").read_text() == "not mail"


def test_a_hook_of_an_earlier_incarnation_changes_nothing(cfg: Config) -> None:
    """The SessionEnd of a process the server's end took down can come after its
    successor resumed the same session: it must not end the successor."""
    set_state(cfg, "idle")
    registry.update(cfg.data, "w1", incarnation=2)
    hook(cfg, "SessionEnd", reason="other", env_extra={"CMUX_INCARNATION": "1"})
    assert state(cfg) == "idle"
    hook(cfg, "SessionEnd", reason="other", env_extra={"CMUX_INCARNATION": "2"})
    assert state(cfg) == "exited"
