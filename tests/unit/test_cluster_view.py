"""This host's view of the other hosts (cmux/cluster/view.py): the pure
decisions, with an injected clock, and the no-cluster path importing nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cmux.agents.registry import Agent
from cmux.cluster import view
from cmux.errors import ConfigError
from cmux.mail import store
from cmux.settings_schema import validate

pytestmark = pytest.mark.timeout(30)

HB = {"b": 2.0, "c": 2.0}


def test_a_host_silent_for_three_beats_is_unreachable_then_lost_after_host_timeout() -> None:
    def at(silent: float) -> str:
        return view.decide({"b": 1000.0}, 1000.0 + silent, heartbeat=HB, host_timeout=60)["b"]

    assert at(0) == "up"
    assert at(5.9) == "up"  # two beats missed, not three
    assert at(6.1) == "unreachable"
    assert at(59.9) == "unreachable"
    assert at(60) == "lost"
    assert at(3600) == "lost"


def test_each_host_is_judged_by_its_own_interval_and_a_short_timeout_waits_for_the_beats() -> None:
    heard = {"b": 100.0, "c": 100.0}
    got = view.decide(heard, 110.0, heartbeat={"b": 2.0, "c": 5.0}, host_timeout=1)
    assert got == {"b": "lost", "c": "up"}  # c beats every 5 s: 10 s is two beats
    assert view.decide(heard, 100.5, heartbeat={"b": 0.1}, host_timeout=1)["b"] == "unreachable"


def test_status_shows_a_silent_hosts_live_agents_so_and_keeps_the_gone() -> None:
    agents = [
        Agent(name="w1", state="busy", host="b"),
        Agent(name="w2", state="exited", host="b"),
        Agent(name="w3", state="idle", host="c"),
        Agent(name="me", state="idle"),
    ]
    got = view.overlay(agents, {"b": "lost", "c": "up"})
    assert [(a.name, a.state) for a in got] == [
        ("w1", "lost"),
        ("w2", "exited"),
        ("w3", "idle"),
        ("me", "idle"),
    ]
    assert "host b is lost" in got[0].note
    assert agents[0].state == "busy"  # the records themselves are untouched


def rec(name: str, **kw: object) -> bytes:
    return json.dumps({"name": name, "state": "idle", **kw}).encode()


def test_other_hosts_records_join_this_hosts_and_a_placed_agent_takes_its_hosts_record() -> None:
    local = [
        Agent(name="supervisor", role="supervisor", state="idle"),
        Agent(name="w1", state="starting", host="b"),  # placed on b from here
        Agent(name="x", state="idle"),  # a local x wins over c's x
    ]
    remote = {
        "a.supervisor": rec("supervisor"),  # this host's own keys: skipped
        "b.w1": rec("w1", state="busy", host="b"),
        "b.human": rec("human"),
        "c.w9": rec("w9", state="waiting"),
        "c.x": rec("x", state="busy"),
        "c.bad": b"{not json",
    }
    got = {a.name: (a.state, a.host) for a in view.merge(local, remote, "a")}
    assert got == {
        "supervisor": ("idle", None),
        "w1": ("busy", "b"),
        "x": ("idle", None),
        "w9": ("waiting", "c"),
    }


def test_the_parent_here_of_a_lost_worker_is_told_once_per_incarnation() -> None:
    local = {
        "supervisor": Agent(name="supervisor", role="supervisor"),
        "lead": Agent(name="lead", host="c"),  # lives elsewhere: told there
    }
    remote = {
        "b.w1": rec("w1", parent="supervisor", incarnation=2),
        "b.w2": rec("w2", parent="lead"),
        "b.w3": rec("w3", parent="supervisor", state="killed"),
        "c.w4": rec("w4", parent="supervisor"),  # c is up
    }
    view_: dict[str, view.HostState] = {"b": "lost", "c": "up"}
    got = view.lost_notices(view_, remote, local, set(), "a")
    assert got == [("b.w1.2", "supervisor", "w1", "b")]
    assert view.lost_notices(view_, remote, local, {"b.w1.2"}, "a") == []
    assert view.lost_notices({"b": "unreachable"}, remote, local, set(), "a") == []


def test_cluster_project_and_ack_wait_are_settings() -> None:
    validate({"cluster": {"project": "proj-1", "ack_wait": 5}})
    with pytest.raises(ConfigError, match="project"):
        validate({"cluster": {"project": "a.b"}})
    with pytest.raises(ConfigError, match="ack_wait"):
        validate({"cluster": {"ack_wait": 0}})
    validate({"cluster": {"replicas": 3}})
    for bad in (0, 6, 2.5, "3"):
        with pytest.raises(ConfigError, match="replicas"):
            validate({"cluster": {"replicas": bad}})


def test_status_without_a_cluster_imports_no_nats(tmp_path: Path) -> None:
    (tmp_path / "cmux.toml").write_text("[cmux]\nagent = 'shell'\n")
    code = (
        "import sys; from cmux.config import load_config; from cmux.status import collect_status;"
        f"collect_status(load_config({str(tmp_path)!r}), reconcile=False);"
        "print(sorted(m for m in sys.modules if m == 'nats' or m.startswith('cmux.cluster')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=20, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_the_node_judges_by_its_clock_tells_once_and_forgives_its_own_outage(cfg: Any) -> None:
    """Node.judge with an injected clock: a silent host goes unreachable, then
    lost, the parent here is told once (also by a node started again), and
    silence from before this node's own NATS outage does not count."""
    from cmux.agents import registry
    from cmux.cluster.nats import Settings
    from cmux.cluster.node import Node, NodeSettings

    def node() -> Node:
        s = NodeSettings(host="a", project="p", nats=Settings(), heartbeat=1.0, host_timeout=10)
        return Node(cfg, s, connect=lambda _: None)  # type: ignore[arg-type,return-value]

    registry.save(cfg.data, Agent(name="supervisor", role="supervisor", state="idle"))
    registry.save(cfg.data, Agent(name="w1", state="busy", host="b"))
    n = node()
    n._remote = {"b.w1": rec("w1", state="busy", parent="supervisor")}
    beat = json.dumps({"seen": 1000.0, "every": 1.0}).encode()
    n.heard("b", beat, 1000.0)
    assert n.judge(1002.0) == {"b": "up"}
    assert n.judge(1003.5) == {"b": "unreachable"}
    assert registry.get(cfg.data, "w1").state == "unreachable"
    assert view.read_view(cfg.data) == {"b": "unreachable"}
    assert n.judge(1010.0) == {"b": "lost"}
    assert registry.get(cfg.data, "w1").state == "lost"

    def told() -> list[dict[str, Any]]:
        new = Path(cfg.data.mailbox_path("supervisor")) / "new"
        msgs = [json.loads((new / n).read_text()) for n in store.pending(cfg.data, "supervisor")]
        return [m for m in msgs if "w1 on host b is lost" in m["body"]]

    assert len(told()) == 1 and told()[0]["kind"] == "notice"
    n.judge(1020.0)
    again = node()  # a node started again reads who was told
    again._remote = dict(n._remote)
    again.heard("b", beat, 1030.0)  # its first look: the beat is from 1000
    assert again.judge(1030.0) == {"b": "lost"}
    assert len(told()) == 1
    # b beats again: up, and this registry's record takes b's own state
    again.heard("b", beat, 1031.0)
    assert again.judge(1031.5) == {"b": "up"}
    assert registry.get(cfg.data, "w1").state == "busy"
    # this host was cut off from NATS from 1032 to 1050: silence counts from 1050
    again._floor = 1050.0
    assert again.judge(1051.0) == {"b": "up"}


def test_a_host_that_never_beat_counts_as_silent_from_the_nodes_start_or_its_newest_agent() -> None:
    agents = [
        Agent(name="w1", host="c", state="starting", created=900.0),
        Agent(name="w2", host="c", state="idle", created=1005.0),  # the newest placed on c
        Agent(name="w3", host="d", state="busy", created=100.0),
        Agent(name="w4", host="e", state="killed", created=100.0),  # gone: no reason to hear e
        Agent(name="w5", host="b", state="idle"),  # b beats
        Agent(name="me", state="idle"),
        Agent(name="here", host="a", state="idle"),  # this host's own
    ]
    got = view.unheard(agents, {"b": 1.0}, "a", since=1000.0, grace=5.0)
    assert got == {"c": 1010.0, "d": 1005.0}  # a host_timeout to beat first
    states = view.decide(got, 1013.5, heartbeat={"c": 1.0, "d": 1.0}, host_timeout=5)
    assert states == {"c": "unreachable", "d": "lost"}


def test_the_parent_of_a_lost_worker_on_a_host_that_never_beat_is_told_from_this_registry() -> None:
    local = {
        "supervisor": Agent(name="supervisor", role="supervisor"),
        "w1": Agent(name="w1", host="c", state="unreachable", parent="supervisor"),
        "w2": Agent(name="w2", host="c", state="exited", parent="supervisor"),
        "w3": Agent(name="w3", host="b", state="lost", parent="supervisor", incarnation=2),
    }
    remote = {"b.w3": rec("w3", parent="supervisor", incarnation=2)}  # b's own key wins
    got = view.lost_notices({"b": "lost", "c": "lost"}, remote, local, set(), "a")
    assert got == [("b.w3.2", "supervisor", "w3", "b"), ("c.w1.1", "supervisor", "w1", "c")]


def test_the_node_judges_a_host_that_never_beat_and_tells_the_parent_once(cfg: Any) -> None:
    from cmux.agents import registry
    from cmux.cluster.nats import Settings
    from cmux.cluster.node import Node, NodeSettings

    s = NodeSettings(host="a", project="p", nats=Settings(), heartbeat=1.0, host_timeout=10)
    n = Node(cfg, s, connect=lambda _: None)  # type: ignore[arg-type,return-value]
    n._started = 1000.0
    registry.save(cfg.data, Agent(name="supervisor", role="supervisor", state="idle"))
    registry.save(cfg.data, Agent(name="w1", state="starting", host="c", created=990.0))
    assert n.judge(1012.0) == {"c": "up"}  # given host_timeout (10 s) to beat first
    assert n.judge(1013.5) == {"c": "unreachable"}
    assert registry.get(cfg.data, "w1").state == "unreachable"
    assert n.judge(1020.0) == {"c": "lost"}
    assert registry.get(cfg.data, "w1").state == "lost"
    n.judge(1021.0)
    new = Path(cfg.data.mailbox_path("supervisor")) / "new"
    bodies = [
        json.loads((new / m).read_text())["body"] for m in store.pending(cfg.data, "supervisor")
    ]
    told = [b for b in bodies if "w1 on host c is lost" in b]
    assert len(told) == 1 and "never beat" in told[0]
    # c beats at last: up, its agent as c's record says.
    n._remote = {"c.w1": rec("w1", state="idle", since=1021.0)}
    n.heard("c", json.dumps({"seen": 1022.0, "every": 1.0}).encode(), 1022.0)
    assert n.judge(1022.5) == {"c": "up"}
    assert registry.get(cfg.data, "w1").state == "idle"


def test_the_monitors_screen_says_when_nats_does_not_answer(tmp_path: Path) -> None:
    """The monitor window's header, with [cluster] nats where nothing listens."""
    import socket

    from cmux.config import load_config
    from cmux.monitor import StatusView
    from cmux.project import init
    from tests.helpers import make_repo

    root = make_repo(tmp_path / "p")
    init(root)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    toml = root / "cmux.toml"
    toml.write_text(toml.read_text() + f'\n[cluster]\nnats = "nats://127.0.0.1:{port}"\n')
    drawn: list[str] = []
    v = StatusView(load_config(root), draw=lambda header, rows: drawn.append(header))
    v.tty = True
    v.refresh(0.0)
    assert len(drawn) == 1 and "other hosts' agents not shown" in drawn[0], drawn
    assert f"127.0.0.1:{port}" in drawn[0]
