"""cmux/remote/probe.py: the probe's lines read back, and what decide says
of a host. (tests/multihost/ probes real hosts over real ssh.)"""

from __future__ import annotations

import subprocess

import pytest

from cmux.config import Host
from cmux.remote import probe
from cmux.remote.probe import HostInfo

pytestmark = pytest.mark.timeout(30)


def test_the_probe_script_runs_in_sh_and_reads_back(tmp_path) -> None:
    """The script itself, run by a real sh here (as ssh runs it there)."""
    host = Host(name="b", ssh="h", dir=str(tmp_path / "not" / "yet"), cmux="no-such-cmux")
    text = probe.script(host, ["sh", "no-such-agent"])
    out = subprocess.run(["sh", "-s"], input=text, capture_output=True, text=True, check=True)
    info = probe.parse(HostInfo(name="b", ssh="h", dir=host.dir, reachable=True), out.stdout)
    assert info.load is not None and info.cores and info.cores >= 1
    assert info.versions["git"].startswith("git version")
    assert info.versions["tmux"].startswith("tmux ")
    assert "cmux" not in info.versions  # not on PATH by that name
    assert info.dir_ok is True  # tmp_path is writable, so the folder can be made
    assert info.programs["sh"].endswith("/sh") and info.programs["no-such-agent"] == ""


def findings(info: HostInfo) -> dict[str, probe.Finding]:
    return {f.what: f for f in probe.decide(info, local_cmux="cmux, version 0.1.0")}


def test_decide_says_what_to_fix_on_a_host() -> None:
    info = HostInfo(name="b", ssh="u@h", dir="/srv", reachable=True, dir_ok=False)
    info.versions = {"tmux": "tmux 3.1", "python": "Python 3.9.2", "cmux": "cmux, version 0.2.0"}
    info.programs = {"claude": ""}
    f = findings(info)
    assert f["ssh"].status == "ok"
    assert f["tmux"].status == "fail" and "3.2" in f["tmux"].fix
    assert f["git"].status == "fail" and "apt-get install git" in f["git"].fix
    assert f["python"].status == "fail" and "3.10" in f["python"].fix
    assert f["cmux"].status == "warn"
    assert f["dir"].status == "fail" and "mkdir -p /srv" in f["dir"].fix
    assert f["agent claude"].status == "warn"


def test_an_unreachable_host_is_one_failed_finding_with_its_hint() -> None:
    info = HostInfo(name="b", ssh="u@h", dir="/srv", error="host b is unreachable", hint="is it up")
    assert probe.decide(info) == [probe.Finding("ssh", "fail", "host b is unreachable", "is it up")]


def test_a_probe_moves_the_agents_of_each_host_as_seen() -> None:
    from cmux.agents.registry import Agent
    from cmux.remote.place import state_moves

    agents = [
        Agent(name="w1", host="b", state="busy"),
        Agent(name="w2", host="b", state="unreachable", since=1000.0),
        Agent(name="w3", host="c", state="unreachable", since=1000.0),
        Agent(name="w4", host="c", state="killed"),
        Agent(name="w5", state="busy"),  # this host's own: no probe says anything of it
        Agent(name="w6", host="c", state="idle"),
    ]
    down = HostInfo(name="b", ssh="b", dir="/", reachable=False, error="no route")
    up = HostInfo(name="c", ssh="c", dir="/", reachable=True)
    up.states = {"w3": "done", "w4": "idle", "w6": "idle", "w9": "busy"}
    moves = state_moves(agents, [down, up], now=1030.0, host_timeout=60)
    assert [(n, s) for n, s, _, _ in moves] == [("w1", "unreachable"), ("w3", "done")]
    later = state_moves(agents, [down, up], now=1061.0, host_timeout=60)
    assert ("w2", "lost") in [(n, s) for n, s, _, _ in later]


def test_placement_by_load_takes_the_least_loaded_host_with_room() -> None:
    from cmux.remote.place import choose

    b = HostInfo(name="b", ssh="b", dir="/", reachable=True, load=1.0, cores=4, limit=2)
    c = HostInfo(name="c", ssh="c", dir="/", reachable=True, load=0.9, cores=1)
    d = HostInfo(name="d", ssh="d", dir="/", reachable=False)
    assert choose(0.5, [b, c, d], {}) == "b"  # 0.25 per core
    assert choose(0.5, [b, c, d], {"b": 2}) == "local"  # b is full; c (0.9) is busier than here
    assert choose(0.1, [b, c, d], {}) == "local"
    assert choose(2.0, [c, d], {}) == "c"


def test_an_old_clone_makes_way_only_when_all_of_it_is_on_the_trunk(tmp_path) -> None:
    from cmux.errors import AgentError
    from cmux.remote.there import _clear_old_clone
    from tests.helpers import git, make_repo

    trunk = make_repo(tmp_path / "trunk")
    git(trunk, "branch", "cmux/w1")
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(trunk), str(clone))
    git(clone, "checkout", "-q", "-b", "cmux/w1", "origin/cmux/w1")
    (clone / "more.txt").write_text("not pushed\n")
    git(clone, "add", "more.txt")
    git(clone, "commit", "-qm", "not on the trunk")
    with pytest.raises(AgentError):
        _clear_old_clone(clone, "cmux/w1", str(trunk), {})
    assert (clone / "more.txt").exists()  # refused, nothing removed
    git(clone, "push", "-q", "origin", "cmux/w1")
    (clone / "README.md").write_text("changed, not committed\n")
    with pytest.raises(AgentError):
        _clear_old_clone(clone, "cmux/w1", str(trunk), {})
    git(clone, "checkout", "-q", "--", "README.md")
    _clear_old_clone(clone, "cmux/w1", str(trunk), {})
    assert not clone.exists()


def test_the_probe_reads_each_records_state_since_and_incarnation_there(tmp_path) -> None:
    """The script run by a real sh over records written as the registry writes them."""
    from cmux.agents.registry import Agent
    from cmux.fsutil import write_json

    agents = tmp_path / "proj" / ".cmux" / "state" / "agents"
    agents.mkdir(parents=True)
    write_json(agents / "w1.json", Agent(name="w1", state="busy", since=1733.25).to_dict())
    write_json(agents / "w2.json", Agent(name="w2", state="rate-limited", incarnation=3).to_dict())
    host = Host(name="b", ssh="h", dir=str(tmp_path), cmux="no-such-cmux")
    text = probe.script(host, [], str(tmp_path / "proj"))
    out = subprocess.run(["sh", "-s"], input=text, capture_output=True, text=True, check=True)
    info = probe.parse(HostInfo(name="b", ssh="h", dir=host.dir, reachable=True), out.stdout)
    assert info.states == {"w1": "busy", "w2": "rate-limited"}
    assert info.since == {"w1": 1733.25}  # w2's is null
    assert info.incarnations == {"w1": 1, "w2": 3}


def test_a_report_older_than_the_one_taken_is_never_taken() -> None:
    """place.take_report, the one rule both writers of a remote agent's copy
    here (`cmux hosts` and the node daemon) follow: by (incarnation, since)."""
    from cmux.agents.registry import Agent
    from cmux.remote.place import take_report

    copy = Agent(name="w1", host="b", state="done", there_since=200.0)
    assert take_report(copy, "busy", 100.0) is None  # a probe that began before: stale
    assert take_report(copy, "busy", None) is None  # no since: older than any
    assert take_report(copy, "idle", 300.0) == ("idle", 300.0)  # newer
    assert take_report(copy, "done", 200.0) is None  # what it has
    assert take_report(copy, "done", 250.0) == ("done", 250.0)  # the same state, newer since
    assert take_report(copy, "busy", 5.0, incarnation=2) == ("busy", 5.0)  # spawned again there
    assert take_report(copy, "no-such-state", 900.0) is None
    # Out of this host's judgement of silence: the report it last took stands again.
    astray = Agent(name="w1", host="b", state="unreachable", there_since=200.0)
    assert take_report(astray, "done", 200.0) == ("done", 200.0)
    assert take_report(astray, "busy", 150.0) is None
    fresh = Agent(name="w1", host="b", state="starting")  # nothing taken yet
    assert take_report(fresh, "idle", None) == ("idle", None)


def test_cmux_hosts_does_not_overwrite_the_newer_state_the_node_took(cfg) -> None:
    """The node takes `done` (since 200) from CMUX_AGENTS; then a `cmux hosts`
    probe that read `busy` (since 100) earlier applies: the copy stays done.
    A newer probe is taken; then an older KV record does not undo it."""
    import json

    from cmux.agents import registry
    from cmux.agents.registry import Agent
    from cmux.cluster.nats import Settings
    from cmux.cluster.node import Node, NodeSettings
    from cmux.remote.place import sync_states

    registry.save(cfg.data, Agent(name="w1", host="b", state="unreachable"))
    s = NodeSettings(host="a", project="p", nats=Settings(), heartbeat=1.0, host_timeout=10)
    node = Node(cfg, s, connect=lambda _: None)  # type: ignore[arg-type,return-value]
    done = json.dumps({"name": "w1", "state": "done", "since": 200.0}).encode()
    node._move(registry.get(cfg.data, "w1"), "up", done)
    assert (registry.get(cfg.data, "w1").state, registry.get(cfg.data, "w1").there_since) == (
        "done",
        200.0,
    )
    stale = HostInfo(name="b", ssh="b", dir="/", reachable=True)
    stale.states, stale.since = {"w1": "busy"}, {"w1": 100.0}
    assert sync_states(cfg, [stale]) == []
    assert registry.get(cfg.data, "w1").state == "done"
    newer = HostInfo(name="b", ssh="b", dir="/", reachable=True)
    newer.states, newer.since = {"w1": "idle"}, {"w1": 300.0}
    assert [a.state for a in sync_states(cfg, [newer])] == ["idle"]
    # b silent on NATS, then back with a KV record older than what the probe took.
    registry.transition(cfg.data, "w1", "unreachable", reason="silent")
    node._move(registry.get(cfg.data, "w1"), "up", done)
    assert registry.get(cfg.data, "w1").state == "unreachable"  # the stale record: not taken
    back = json.dumps({"name": "w1", "state": "idle", "since": 300.0}).encode()
    node._move(registry.get(cfg.data, "w1"), "up", back)
    assert registry.get(cfg.data, "w1").state == "idle"
