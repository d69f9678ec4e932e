"""Mailbox and router with real tmux: recorder programs in the panes see
exactly what was typed into them."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import textwrap
import time
from functools import partial
from pathlib import Path

import pytest

from tests.helpers import REPO, Project, wait_until

RECORDER = REPO / "tests" / "recorder.py"
HEADER = re.compile(r"\[cmux mail (\S+) from (\S+) kind=(\w+)\]")


def start(project: Project) -> None:
    project.ok("start", "--command", "sleep 600", "--no-attach")


def spawn_recorder(project: Project, name: str, tmp: Path) -> Path:
    out = tmp / f"{name}.rec"
    out.touch()
    project.ok("spawn", name, "--command", f"{sys.executable} {RECORDER} {out}", "--task", "record")
    return out


def received(path: Path) -> list[tuple[str, str, str, str]]:
    """(id, sender, kind, body) for each delivery; Enter arrives as CR."""
    raw = path.read_bytes().decode("utf-8", errors="replace")
    out = []
    for chunk in raw.split("\r"):
        if not chunk:
            continue
        m = HEADER.match(chunk)
        assert m, f"garbled delivery: {chunk[:200]!r}"
        rest = chunk[m.end() :]
        body = rest[1:] if rest[:1] in (" ", "\n") else rest
        out.append((m.group(1), m.group(2), m.group(3), body))
    return out


def router_pid(project: Project) -> int:
    pidfile = project.data / "state" / "run" / "router.pid"
    return int(
        wait_until(lambda: pidfile.exists() and pidfile.read_text().split()[0], what="router")
    )


SENDER = textwrap.dedent(
    """
    import json, sys
    from cmux.config import load_config
    from cmux.mail import store
    cfg = load_config()
    me, targets = sys.argv[1], sys.argv[2].split(",")
    n, bodies = int(sys.argv[3]), json.loads(sys.argv[4])
    for i in range(n):
        to = targets[i % len(targets)]
        store.send(cfg, to=to, sender=me, body=f"{me}#{i:04d} " + bodies[i % len(bodies)])
    """
)

SPECIAL = [
    "plain words",
    "unicode: héllo wörld — ✓ 日本語 🚀",
    "quotes: 'single' \"double\" `back`",
    "shell: $(rm -rf /) && echo $HOME; `id` | cat > /dev/null",
    "tab\tseparated\tfields",
    "multi\nline\nbody\n  indented",
    "C-c",
    "Enter",
    "looks like keys: C-c Escape Enter M-x ; \\;",
    "ends with semicolons;;",
]


@pytest.mark.timeout(240)
def test_concurrent_senders_each_message_once_in_order_and_intact(
    project: Project, tmp_path: Path
) -> None:
    start(project)
    names = [f"r{i}" for i in range(5)]
    recs = {n: spawn_recorder(project, n, tmp_path) for n in names}
    env = {**project.env, "CMUX_HOME": str(project.data), "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", SENDER, f"s{k}", ",".join(names), "100", json.dumps(SPECIAL)],
            env=env,
            cwd=project.root,
        )
        for k in range(8)
    ]
    for p in procs:
        assert p.wait(timeout=120) == 0
    total = 800

    def count() -> int:
        return sum(len(received(p)) for p in recs.values())

    wait_until(lambda: count() >= total, timeout=150, interval=0.5, what="all 800 deliveries")
    seen_ids: set[str] = set()
    for name, path in recs.items():
        per_sender: dict[str, list[int]] = {}
        for mid, sender, kind, body in received(path):
            assert mid not in seen_ids, f"{mid} delivered twice"
            seen_ids.add(mid)
            assert kind == "message"
            assert body.startswith(f"{sender}#"), body[:80]
            seq = int(body[len(sender) + 1 : len(sender) + 5])
            expected = SPECIAL[seq % len(SPECIAL)]
            assert body == f"{sender}#{seq:04d} {expected}"
            per_sender.setdefault(sender, []).append(seq)
        for sender, seqs in per_sender.items():
            assert seqs == sorted(seqs), f"{sender} out of order at {name}"
    assert len(seen_ids) == total
    # Every send, claim and delivery is in the event log.
    kinds = [e["event"] for e in project.events()]
    assert kinds.count("send") >= total and kinds.count("deliver") == total


def test_a_one_megabyte_body_arrives_by_reference_intact(project: Project, tmp_path: Path) -> None:
    start(project)
    rec = spawn_recorder(project, "big", tmp_path)
    rng = random.Random(7)
    body = "".join(rng.choices("abcdefghij \n\t\"'$é✓", k=1024 * 1024))
    r = project.tool("mailbox", "send", "big", "-", agent="supervisor", input=body)
    assert r.code == 0, r.err
    got = wait_until(lambda: received(rec), what="the big message")
    _, sender, _, text = got[0]
    assert sender == "supervisor"
    path = Path(re.search(r"`cat (\S+)`", text).group(1))  # type: ignore[union-attr]
    assert path.read_text() == body


def test_escape_sequences_and_control_bytes_never_reach_the_pane(
    project: Project, tmp_path: Path
) -> None:
    start(project)
    rec = spawn_recorder(project, "safe", tmp_path)
    nasty = (
        "a\x1b[2Jb\x1b]0;title\x07c\x03d\x04e\x00f\x1bPdcs\x1b\\g\x9bh\x7fi\x08j\x1b[31mred\x1b[0m"
    )
    project.ok("send", "safe", "-", input=nasty)  # NUL cannot travel in argv
    project.ok("send", "safe", "line1\r\nline2\x1b[Aup")
    wait_until(lambda: len(received(rec)) == 2, what="two deliveries")
    raw = rec.read_bytes()
    assert b"\x1b" not in raw
    assert not set(raw) & (set(range(32)) - {9, 10, 13})
    assert b"\x7f" not in raw and "\x9b".encode() not in raw
    bodies = [b for *_, b in received(rec)]
    assert bodies[0] == "abcdefghijred"
    assert bodies[1] == "line1\nline2up"
    # The stored message keeps what was sent, byte for byte.
    stored = json.loads(next((project.data / "mailbox" / "safe" / "cur").glob("*")).read_text())
    assert stored["body"] in (nasty, "line1\r\nline2\x1b[Aup")


@pytest.mark.timeout(180)
def test_router_killed_at_random_moments_loses_nothing(project: Project, tmp_path: Path) -> None:
    start(project)
    recs = {n: spawn_recorder(project, n, tmp_path) for n in ("k1", "k2")}
    env = {**project.env, "CMUX_HOME": str(project.data), "PYTHONPATH": str(REPO)}
    sender = subprocess.Popen(
        [sys.executable, "-c", SENDER, "s", "k1,k2", "300", json.dumps(SPECIAL[:6])],
        env=env,
        cwd=project.root,
    )
    rng = random.Random(11)
    kills = 0
    while sender.poll() is None or kills < 4:
        pid = router_pid(project)
        time.sleep(rng.uniform(0.05, 0.4))  # a random moment, not a wait for something
        try:
            os.kill(pid, signal.SIGKILL)
            kills += 1
        except ProcessLookupError:
            pass
        wait_until(lambda: router_pid(project) != pid, timeout=15, what="router restarted")  # noqa: B023
        if kills >= 8:
            break
    assert sender.wait(timeout=60) == 0
    assert kills >= 4

    def ids() -> dict[str, list[str]]:
        return {n: [m[0] for m in received(p)] for n, p in recs.items()}

    wait_until(lambda: sum(len(set(v)) for v in ids().values()) >= 300, timeout=60, what="all 300")
    all_ids = [i for v in ids().values() for i in v]
    assert len(set(all_ids)) == 300
    # Anything delivered twice carried the same id; bodies are intact.
    for path in recs.values():
        for _, _, _, body in received(path):
            seq = int(body[2:6])
            assert body == f"s#{seq:04d} {SPECIAL[:6][seq % 6]}"


def test_unknown_recipient_empty_and_oversized_are_refused(project: Project) -> None:
    start(project)
    r = project.tool("mailbox", "send", "nobody", "hi", agent="supervisor")
    assert r.code == 1 and "no agent named 'nobody'" in r.err and "known recipients" in r.err
    r = project.tool("mailbox", "send", "human", "   ", agent="supervisor")
    assert r.code == 2 and "empty" in r.err
    r = project.cmux("send", "supervisor", "x" * 100, env={"CMUX_MAX_BODY": "50"})
    assert r.code == 1 and "over the limit" in r.err
    assert not list((project.data / "mailbox" / "supervisor" / "new").iterdir())
    assert not list((project.data / "mailbox" / "supervisor" / "tmp").iterdir())


def test_malformed_file_and_unknown_box_go_to_deadletter_and_router_goes_on(
    project: Project, tmp_path: Path
) -> None:
    start(project)
    rec = spawn_recorder(project, "r1", tmp_path)
    (project.data / "mailbox" / "r1" / "new" / "junk.json").write_text("{not json")
    stray = project.data / "mailbox" / "stray"
    for sub in ("tmp", "new", "cur"):
        (stray / sub).mkdir(parents=True)
    (stray / "new" / "0001.json").write_text(
        json.dumps({"v": 1, "id": "0001", "to": "stray", "from": "x", "body": "hello?"})
    )
    project.ok("send", "r1", "still working")
    wait_until(lambda: received(rec), what="delivery after the junk")
    dl = project.data / "mailbox" / "deadletter"
    wait_until(lambda: (dl / "junk.json.reason").exists() and (dl / "0001.json.reason").exists())
    assert "malformed" in json.loads((dl / "junk.json.reason").read_text())["reason"]
    assert "unknown recipient" in json.loads((dl / "0001.json.reason").read_text())["reason"]
    assert (dl / "junk.json").read_text() == "{not json"
    inbox = wait_until(lambda: project.ok("inbox", "--peek", "--json").json(), what="notices")
    assert any("deadletter" in m["body"] for m in inbox)
    assert [m[3] for m in received(rec)] == ["still working"]


BOT = textwrap.dedent(
    """
    import os, re, subprocess, sys, termios, tty
    other = sys.argv[1]
    tty.setraw(0, termios.TCSANOW)
    print("bot ready", flush=True)
    buf = b""
    while True:
        chunk = os.read(0, 4096)
        if not chunk:
            break
        # Enter is CR in raw mode; a line typed before setraw took effect was
        # read in cooked mode, its CR turned into LF: either ends a line.
        buf += chunk.replace(b"\\n", b"\\r")
        while b"\\r" in buf:
            line, buf = buf.split(b"\\r", 1)
            m = re.match(rb"\\[cmux mail (\\S+) from (\\S+)", line)
            if m and m.group(2) == other.encode():
                text = "re: " + line[-20:].decode(errors="replace")
                subprocess.run(["mailbox", "send", other, text])
    """
)


def test_a_message_loop_stops_at_the_depth_limit(project: Project, tmp_path: Path) -> None:
    cfg = project.root / "cmux.toml"
    cfg.write_text(cfg.read_text().replace("depth_limit = 8", "depth_limit = 4"))
    start(project)
    bot = tmp_path / "bot.py"
    bot.write_text(BOT)
    project.ok("spawn", "ping", "--command", f"{sys.executable} {bot} pong", "--task", "bounce")
    project.ok("spawn", "pong", "--command", f"{sys.executable} {bot} ping", "--task", "bounce")

    def ready(pane: str) -> bool:
        return "bot ready" in project.tmux("capture-pane", "-p", "-t", pane)

    for name in ("ping", "pong"):  # both reading their terminal before the first hop
        wait_until(partial(ready, project.status()[name]["pane_id"]), what=f"{name} ready")
    project.tool("mailbox", "send", "pong", "start the loop", agent="ping")
    dl = project.data / "mailbox" / "deadletter"
    reason = wait_until(lambda: next(dl.glob("*.reason"), None), timeout=30, what="deadletter")
    assert reason is not None
    assert "depth 5 is past the limit of 4" in json.loads(reason.read_text())["reason"]
    note = wait_until(
        lambda: [
            m
            for m in json.loads(
                project.tool("mailbox", "read", "--all", "--json", agent="supervisor").out or "[]"
            )
        ],
        what="supervisor notice",
    )
    assert "message loop" in note[0]["body"]
    sends = [
        e for e in project.events() if e["event"] == "send" and e.get("sender") in ("ping", "pong")
    ]
    assert len(sends) == 5  # depths 0..4; the sixth hop went to deadletter


def test_mail_is_held_while_the_pane_is_in_copy_mode(project: Project, tmp_path: Path) -> None:
    start(project)
    rec = spawn_recorder(project, "busy", tmp_path)
    pane = project.status()["busy"]["pane_id"]
    project.tmux("copy-mode", "-t", pane)
    project.ok("send", "busy", "wait for me")
    wait_until(lambda: project.status()["busy"]["held"] == 1, what="held")
    assert "held" in project.ok("status").out
    assert received(rec) == []
    assert any(e["event"] == "hold" and e["agent"] == "busy" for e in project.events())
    project.tmux("send-keys", "-t", pane, "-X", "cancel")
    got = wait_until(lambda: received(rec), what="delivery after copy mode")
    assert got[0][3] == "wait for me"
    assert wait_until(lambda: project.status()["busy"]["held"] == 0)


def test_done_and_blocked_update_state_and_reach_the_supervisor(
    project: Project, tmp_path: Path
) -> None:
    start(project)
    spawn_recorder(project, "w1", tmp_path)
    spawn_recorder(project, "w2", tmp_path)
    assert project.tool("mailbox", "done", "all tests pass", agent="w1").code == 0
    assert project.tool("mailbox", "blocked", "need the API key", agent="w2").code == 0
    status = project.status()
    assert status["w1"]["state"] == "done" and status["w2"]["state"] == "blocked"
    msgs = json.loads(project.tool("mailbox", "read", "--all", "--json", agent="supervisor").out)
    assert {(m["from"], m["kind"], m["body"]) for m in msgs} == {
        ("w1", "done", "all tests pass"),
        ("w2", "blocked", "need the API key"),
    }
    # The supervisor's own done goes to the person.
    assert project.tool("mailbox", "done", "task complete", agent="supervisor").code == 0
    inbox = project.ok("inbox", "--json").json()
    assert [(m["from"], m["kind"]) for m in inbox] == [("supervisor", "done")]
    assert project.ok("inbox", "--json").json() == []  # marked read


def test_human_mail_shows_in_status_and_the_monitor_window(project: Project) -> None:
    start(project)
    project.tool("mailbox", "send", "human", "question: which database?", agent="supervisor")
    assert "1 message for you" in project.ok("status").out
    pane = project.tmux("list-panes", "-t", "monitor", "-F", "#{pane_id}").split()[0]
    wait_until(
        lambda: "for you" in project.tmux("capture-pane", "-p", "-t", pane), what="monitor notice"
    )
    r = project.ok("inbox")
    assert "which database?" in r.out


def test_events_command_shows_the_flow(project: Project, tmp_path: Path) -> None:
    start(project)
    spawn_recorder(project, "ev", tmp_path)
    project.ok("send", "ev", "hello")
    wait_until(lambda: any(e["event"] == "deliver" for e in project.events()))
    out = project.ok("events", "--agent", "ev").out
    for word in ("spawn", "send", "claim", "deliver"):
        assert word in out


def test_one_router_per_data_root(project: Project) -> None:
    start(project)
    router_pid(project)
    r = project.cmux("router", env={"CMUX_HOME": str(project.data)})
    assert r.code == 1 and "already running" in r.err


def test_idle_router_uses_no_cpu_to_speak_of(project: Project, tmp_path: Path) -> None:
    start(project)
    for i in range(5):
        spawn_recorder(project, f"i{i}", tmp_path)
    pid = router_pid(project)

    def cpu() -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    wait_until(lambda: project.events()[-1]["event"] != "send")  # settled after start
    before, t0 = cpu(), time.monotonic()
    time.sleep(3)  # measuring idleness over a fixed span is the point here
    used, span = cpu() - before, time.monotonic() - t0
    assert used / span < 0.02, f"router used {used:.3f}s CPU in {span:.1f}s idle"


def test_mail_for_a_gone_pane_waits_for_the_next_one(project: Project, tmp_path: Path) -> None:
    start(project)
    project.ok("spawn", "phoenix", "--command", "exit 0", "--task", "die at once")
    wait_until(lambda: project.status()["phoenix"]["state"] == "exited")
    project.ok("send", "phoenix", "are you there?")
    wait_until(lambda: project.status()["phoenix"]["held"] == 1, what="held for the gone pane")
    held = (project.data / "mailbox" / "phoenix" / "held").read_text()
    assert "exited" in held
    out = tmp_path / "phoenix.rec"
    out.touch()
    project.ok(
        "spawn", "phoenix", "--command", f"{sys.executable} {RECORDER} {out}", "--task", "again"
    )
    got = wait_until(lambda: received(out), what="delivery to the new pane")
    # (typed before the recorder put its tty in raw mode: cooked mode turned Enter into \n)
    assert [m[3].strip() for m in got] == ["are you there?"]
    assert project.status()["phoenix"]["held"] == 0
