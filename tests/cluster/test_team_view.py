"""The whole team from any host: two "hosts" (two data roots, each with its
own `cmux node`) on a real nats-server; host A's `cmux status` and `cmux
events -f` show B's agents and events, and A marks B's agents unreachable,
then lost, when B's node dies (its heartbeat stops), telling the parent once."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.hosts import PROJECT_ID, Host, nodes_running
from tests.cluster.natsd import NatsServer
from tests.helpers import Project, wait_until

pytestmark = pytest.mark.timeout(60)

HEARTBEAT = 0.3  # s: unreachable after 3 silent beats (~1 s)
HOST_TIMEOUT = 3  # s: then lost


def clustered(host: Host) -> None:
    """[cluster] in the host's cmux.toml, as an operator writes it."""
    toml = host.project.root / "cmux.toml"
    toml.write_text(
        toml.read_text() + f'\n[cluster]\nnats = "{host.natsd.url}"\ntoken = "{host.natsd.token}"\n'
        f'host = "{host.name}"\nproject = "{PROJECT_ID}"\n'
        f"heartbeat = {HEARTBEAT}\nhost_timeout = {HOST_TIMEOUT}\n"
    )


@pytest.fixture
def team(
    natsd: NatsServer, tmp_path: Path, isolated_env: dict[str, str]
) -> Iterator[tuple[Host, Host]]:
    a = Host.make("a", tmp_path, isolated_env, natsd)
    b = Host.make("b", tmp_path, isolated_env, natsd)
    clustered(a)
    clustered(b)
    a.agent("supervisor", role="supervisor")
    a.agent("w1", host="b")  # placed on b from here (cmux spawn --host b)
    b.agent("w1")
    with nodes_running(a, b):
        yield a, b


def status(host: Host) -> dict[str, dict[str, Any]]:
    """`cmux status --json` on ``host``: name -> row."""
    return {r["name"]: r for r in host.project.ok("status", "--json").json()}


def test_status_on_a_shows_bs_agent_with_its_exact_state_and_follows_its_changes(
    team: tuple[Host, Host],
) -> None:
    from cmux.agents import registry

    a, b = team
    b.agent("w2")
    wait_until(
        lambda: {"w1", "w2"} <= status(a).keys() and status(a)["w2"]["state"] == "idle",
        timeout=10,
        what="b's agents in a's status",
    )
    rows = status(a)
    assert (rows["w2"]["host"], rows["w1"]["host"]) == ("b", "b")
    assert rows["supervisor"]["host"] is None  # a's own, from a's registry
    registry.transition(b.data, "w2", "busy", reason="working")
    t0 = time.monotonic()
    wait_until(lambda: status(a)["w2"]["state"] == "busy", timeout=5, what="busy on a")
    changed_in = time.monotonic() - t0
    registry.transition(b.data, "w2", "waiting")
    wait_until(lambda: status(a)["w2"]["state"] == "waiting", timeout=5, what="waiting on a")
    assert changed_in < 5
    # the table shows it too, with its host
    out = a.project.ok("status").out
    assert "w2" in out and "waiting" in out
    assert "not shown" not in out  # NATS answered: no warning


def test_status_says_when_nats_does_not_answer_and_still_shows_this_hosts_agents(
    project: Project,
) -> None:
    """NATS down (nothing listens at [cluster] nats): the table says, above it,
    that the other hosts' agents are missing and what to check; --json stays
    the list scripts read, the warning on stderr; the exit code is 0."""
    from cmux.agents import registry
    from cmux.agents.registry import Agent

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    toml = project.root / "cmux.toml"
    toml.write_text(toml.read_text() + f'\n[cluster]\nnats = "nats://127.0.0.1:{port}"\n')
    registry.save(project.config().data, Agent(name="w1", state="idle"))
    out = project.ok("status").out
    lines = out.splitlines()
    warned = next(i for i, ln in enumerate(lines) if "other hosts' agents not shown" in ln)
    assert f"127.0.0.1:{port}" in lines[warned]
    assert "hint:" in lines[warned + 1] and "[cluster] nats" in lines[warned + 1]
    assert warned < next(i for i, ln in enumerate(lines) if "w1" in ln)  # above the table
    r = project.ok("status", "--json")
    assert [row["name"] for row in r.json()] == ["w1"]
    assert "other hosts' agents not shown" in r.err and "hint:" in r.err


def test_events_follow_on_a_prints_bs_events(team: tuple[Host, Host]) -> None:
    from cmux import events
    from cmux.agents import registry

    a, b = team
    proc = subprocess.Popen(
        [sys.executable, "-m", "cmux", "events", "-f", "--json", "-n", "0"],
        cwd=a.project.root,
        env=a.project.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    lines: list[dict[str, Any]] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(json.loads(line))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        # It follows from the moment its NATS reader is there: ping until one comes.
        pings = iter(range(1000))

        def pinged() -> bool:
            events.record(b.data, "ping", n=next(pings))
            return any(e.get("event") == "ping" and e.get("host") == "b" for e in lines)

        wait_until(pinged, timeout=15, interval=0.3, what="b's events on a's events -f")
        registry.transition(b.data, "w1", "busy", reason="on it")
        events.record(a.data, "here", agent="supervisor")
        wait_until(
            lambda: (
                any(
                    e.get("event") == "state" and e.get("agent") == "w1" and e.get("host") == "b"
                    for e in lines
                )
                and any(e.get("event") == "here" for e in lines)
            ),
            timeout=10,
            what="b's state change and a's own event",
        )
        got = next(e for e in lines if e.get("event") == "state" and e.get("host") == "b")
        assert (got["from"], got["to"]) == ("idle", "busy")
        # a's own events once each (not again from NATS)
        assert sum(1 for e in lines if e.get("event") == "here") == 1
    finally:
        proc.kill()
        proc.wait(5)


def notices_about(host: Host, agent: str, worker: str) -> list[str]:
    out = []
    for folder in ("new", "cur"):
        d = Path(host.data.mailbox_path(agent)) / folder
        for p in sorted(d.glob("*.json*")) if d.exists() else []:
            m = json.loads(p.read_text())
            if m.get("kind") == "notice" and f"{worker} on host b is lost" in m.get("body", ""):
                out.append(m["body"])
    return out


def test_a_host_whose_node_dies_goes_unreachable_then_lost_and_the_parent_is_told_once(
    team: tuple[Host, Host],
) -> None:
    from cmux.agents import registry
    from cmux.cluster import view
    from cmux.status import collect_status

    a, b = team
    wait_until(lambda: status(a)["w1"]["state"] == "idle", timeout=10, what="w1 on a")
    wait_until(
        # view.read_state: {} until a's node first writes hosts.json (not an error)
        lambda: view.read_state(a.data).get("hosts", {}).get("b", {}).get("state") == "up",
        timeout=10,
        what="a hears b",
    )
    b.kill_node()  # SIGKILL: b's heartbeat stops, its records stay in the bucket

    def state_on_a() -> str:
        return str({r["name"]: r for r in collect_status(a.cfg)}["w1"]["state"])

    wait_until(lambda: state_on_a() == "unreachable", timeout=5, interval=0.1, what="unreachable")
    assert registry.get(a.data, "w1").state in ("unreachable", "lost")
    wait_until(lambda: status(a)["w1"]["state"] == "lost", timeout=10, what="lost on a")
    wait_until(lambda: notices_about(a, "supervisor", "w1"), timeout=5, what="the parent told")
    assert registry.get(a.data, "w1").state == "lost"
    seen = [e["event"] for e in a.events() if e["event"].startswith("host-")]
    assert seen[-2:] == ["host-unreachable", "host-lost"], seen
    # Told once: through more judgements, and a node restarted (it reads who was told).
    a.kill_node()
    a.start_node()
    deadline = time.monotonic() + 8 * HEARTBEAT
    while time.monotonic() < deadline:
        assert len(notices_about(a, "supervisor", "w1")) == 1
        time.sleep(0.1)
    assert "host_timeout" in notices_about(a, "supervisor", "w1")[0]
