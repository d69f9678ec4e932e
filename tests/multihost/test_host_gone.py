"""A host gone for good, across real hosts: a supervisor on a, w1 and w2
spawned on b with `cmux spawn --host b` (w1 commits a file and reports done,
which pushes its branch to a's trunk; w2 keeps running). Then b is powered
off: its link cut and every process in its namespace SIGKILLed, so nothing
there answers again. From a: `cmux status --json` shows b's agents
`unreachable` (never `exited`) within a few heartbeats, then `lost` past
`[cluster] host_timeout`; the supervisor is told once per lost agent, by a
notice naming it and what to do; w1's work is on the trunk as cmux/w1; mail
sent on a to w1 after b died waits in the stream for b (not lost, not
deadlettered); `cmux hosts` says b is unreachable, with a hint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from cmux.cluster import bridge
from cmux.config import load_config
from cmux.remote.there import project_id
from tests.helpers import wait_until
from tests.multihost.conftest import TOKEN, Cluster, Host, sh, text
from tests.multihost.mail import data_of

pytestmark = [pytest.mark.multihost, pytest.mark.timeout(90)]

HEARTBEAT = 0.5  # s: unreachable after 3 silent beats
HOST_TIMEOUT = 4  # s: then lost
WORK = (
    "echo made-on-b > gone.txt && git add gone.txt && git commit -qm 'gone.txt, from b' "
    '&& mailbox done "committed gone.txt"; exec sleep 600'
)


def power_off(cluster: Cluster, name: str) -> None:
    """Host ``name`` gone for good: its cable pulled and every process in its
    namespace SIGKILLed (no process there says goodbye). The namespace itself
    stays for the fixture to delete."""
    cluster.cut(name)
    ns = cluster.hosts[name].ns
    deadline = time.monotonic() + 10
    while pids := sh("ip", "netns", "pids", ns, check=False).stdout.split():
        assert time.monotonic() < deadline, f"processes left in {ns}: {pids}"
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        time.sleep(0.05)  # (SIGKILL is not instant: look again)


def status_on(a: Host, project: Path) -> dict[str, dict[str, Any]]:
    r = a.cmux("status", "--json", cwd=project)
    assert r.code == 0, r.err
    return {row["name"]: row for row in r.json()}


def notices(root: Path, agent: str) -> list[dict[str, Any]]:
    """The lost-worker notices in ``agent``'s Maildir (new or delivered)."""
    out = []
    for folder in ("new", "cur"):
        d = root / "mailbox" / agent / folder
        for p in sorted(d.iterdir()) if d.exists() else []:
            m = json.loads(p.read_text())
            if m.get("kind") == "notice" and " is lost" in m.get("body", ""):
                out.append(m)
    return out


def in_stream(a: Host, url: str, subject: str) -> dict[str, Any]:
    """What JetStream holds for ``subject`` on a: the last message's id, and
    how many messages b's durable consumer has not been handed yet."""
    code = f"""
import asyncio, json, nats
async def main():
    nc = await nats.connect({url!r}, token={TOKEN!r})
    js = nc.jetstream()
    msg = await js.get_last_msg("CMUX_MAIL", {subject!r})
    info = await js.consumer_info("CMUX_MAIL", "mail-b")
    print(json.dumps({{"id": (msg.headers or {{}}).get("Nats-Msg-Id"),
                       "pending": info.num_pending}}))
    await nc.close()
asyncio.run(main())
"""
    r = a.run(sys.executable, "-c", code, timeout=20)
    assert r.code == 0, r.err
    return dict(json.loads(r.out))


def test_a_host_gone_for_good_its_agents_go_unreachable_then_lost_and_the_parent_is_told(
    cluster: Cluster, natsd: str
) -> None:
    a = cluster.hosts["a"]
    extra = (
        f'nats = "{natsd}"\ntoken = "{TOKEN}"\nheartbeat = {HEARTBEAT}\n'
        f"host_timeout = {HOST_TIMEOUT}\nack_wait = 2\n"
    )
    toml = cluster.toml('[merge]\ntrunk = "main"\n[dashboard]\nenabled = false\n')
    (cluster.project / "cmux.toml").write_text(toml.replace('host = "a"\n', f'host = "a"\n{extra}'))
    started = a.cmux("start", "--no-attach", "--command", "exec sleep 600", cwd=cluster.project)
    assert started.code == 0, started.err
    for name, command in (("w1", WORK), ("w2", "exec sleep 600")):
        r = a.cmux(
            "spawn", name, "--host", "b", "--task", "work on b", "--command", command,
            cwd=cluster.project, timeout=60,
        )  # fmt: skip
        assert r.code == 0, r.err
    root_a, root_b = data_of(a, cluster), data_of(cluster.hosts["b"], cluster)

    def settled() -> bool:
        """w1's report here (through NATS), both of b's agents in a's status
        with b's states, and a's node hearing b."""
        rows = status_on(a, cluster.project)
        hosts = json.loads(text(root_a / "state" / "cluster" / "hosts.json") or "{}")
        reported = any(
            json.loads(p.read_text()).get("kind") == "done"
            for folder in ("new", "cur")
            for p in (root_a / "mailbox" / "supervisor" / folder).glob("*")
        )
        return (
            reported
            and rows.get("w1", {}).get("state") == "done"
            and rows.get("w2", {}).get("state") in ("idle", "busy", "starting")
            and hosts.get("hosts", {}).get("b", {}).get("state") == "up"
        )

    try:
        wait_until(settled, timeout=30, interval=0.3, what="w1 done and w2 running, as a sees b")
    except AssertionError:
        raise AssertionError(
            f"a node.log: {text(root_a / 'state' / 'node.log')[-1500:]}\n"
            f"b node.log: {text(root_b / 'state' / 'node.log')[-1500:]}\n"
            f"status: {status_on(a, cluster.project)}"
        ) from None
    early = [n["body"] for n in notices(root_a, "supervisor")]
    assert early == [], f"{early}\n{text(root_a / 'state' / 'events.jsonl')[-3000:]}"

    t_gone = time.monotonic()
    power_off(cluster, "b")

    # From a: b's agents unreachable, never exited, then lost.
    seen: dict[str, list[str]] = {"w1": [], "w2": []}

    def reach(state: str) -> bool:
        rows = status_on(a, cluster.project)
        for name in seen:
            assert rows[name]["host"] == "b"
            if not seen[name] or seen[name][-1] != rows[name]["state"]:
                seen[name].append(rows[name]["state"])
        return all(rows[n]["state"] == state for n in seen)

    wait_until(lambda: reach("unreachable"), timeout=6 * HEARTBEAT + 3, interval=0.2)
    unreachable_after = time.monotonic() - t_gone
    wait_until(lambda: reach("lost"), timeout=HOST_TIMEOUT + 6, interval=0.2)
    lost_after = time.monotonic() - t_gone
    assert lost_after >= HOST_TIMEOUT - 0.5, lost_after  # not before host_timeout
    # Each as b last said (until a notices), then unreachable, then lost: never exited.
    assert seen["w1"] in (["done", "unreachable", "lost"], ["unreachable", "lost"]), seen
    assert seen["w2"][-2:] == ["unreachable", "lost"] and len(seen["w2"]) <= 3, seen
    assert "exited" not in seen["w2"], seen
    # a's own registry keeps the same (what watchdogs and the dashboard read).
    for name in seen:
        rec = json.loads((root_a / "state" / "agents" / f"{name}.json").read_text())
        assert rec["state"] == "lost", (name, rec["state"])

    # The supervisor is told once per lost agent, naming it and what to do.
    wait_until(lambda: len(notices(root_a, "supervisor")) == 2, timeout=5, what="two notices")
    told_at = time.monotonic()
    told = {n["body"].split(" ", 1)[0]: n["body"] for n in notices(root_a, "supervisor")}
    assert set(told) == {"w1", "w2"}, told
    for name, body in told.items():
        assert f"{name} on host b is lost" in body and "host_timeout" in body
        assert f"cmux/{name}" in body and "spawn it again" in body

    # What w1 pushed at its done is on the trunk.
    shown = subprocess.run(
        ["git", "show", "cmux/w1:gone.txt"],
        cwd=cluster.project, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert shown.returncode == 0 and shown.stdout.strip() == "made-on-b", shown.stderr

    # Mail to w1 sent on a now waits in the stream for b: stored, not deadlettered.
    sent = a.cmux("send", "w1", "are you there?", "--json", cwd=cluster.project)
    assert sent.code == 0, sent.err
    msg_id = sent.json()["id"]
    spool = root_a / "mailbox" / "w1"
    wait_until(
        lambda: (spool / "sent" / f"{msg_id}.json").exists(),
        timeout=10,
        what="a's node to hand the mail to JetStream (the PubAck)",
    )
    assert not list((spool / "new").glob("*")), "still in a's spool"
    assert not list((root_a / "mailbox" / "deadletter").glob("*"))
    view = json.loads((root_a / "state" / "cluster" / "hosts.json").read_text())
    assert view["hosts"]["b"]["state"] == "lost"
    subject = bridge.mail_subject(project_id(load_config(cluster.project)), "b", "w1")
    stream = in_stream(a, natsd, subject)
    assert stream["id"] == msg_id and stream["pending"] >= 1, stream

    # `cmux hosts` from a: b unreachable, with the ssh error and a hint.
    r = a.cmux("hosts", "b", "--json", "--timeout", "2", cwd=cluster.project)
    assert r.code == 0, r.err
    (info,) = r.json()
    assert info["reachable"] is False and info["error"] and info["hint"], info
    shown_text = a.cmux("hosts", "b", "--timeout", "2", cwd=cluster.project).out
    assert "unreachable" in shown_text and "hint:" in shown_text, shown_text

    # Told once: the judgements since (one every heartbeat) told no one again.
    assert time.monotonic() - told_at > 4 * HEARTBEAT
    assert len(notices(root_a, "supervisor")) == 2
    print(f"unreachable after {unreachable_after:.1f} s, lost after {lost_after:.1f} s")
