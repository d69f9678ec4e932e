"""cmux/remote/halt.py: which hosts `cmux stop` calls and whom it ends there,
what a host's answer means, and the words shown for it.
(tests/multihost/test_stop.py stops real hosts over real ssh.)"""

from __future__ import annotations

import pytest

from cmux.agents.registry import Agent
from cmux.remote import halt
from cmux.remote.halt import HostStop

pytestmark = pytest.mark.timeout(30)


def test_plan_calls_each_host_with_agents_not_gone_and_only_those() -> None:
    agents = [
        Agent(name="w2", state="busy", host="b"),
        Agent(name="w1", state="unreachable", host="b"),  # may still run: ended too
        Agent(name="w3", state="lost", host="c"),
        Agent(name="w4", state="killed", host="c"),
        Agent(name="w5", state="exited", host="d"),  # d: nobody left, not called
        Agent(name="w6", state="busy", host="e"),  # e: not in [hosts] (a parent's record)
        Agent(name="supervisor", state="busy"),  # this host's own
    ]
    assert halt.plan(agents, ["b", "c", "d"]) == {"b": ["w1", "w2"], "c": ["w3"]}
    assert halt.plan(agents, []) == {}


def test_a_hosts_answer_sorts_its_agents_into_stopped_gone_and_failed() -> None:
    r = HostStop(host="b", asked=["w1", "w2", "w3", "w4"])
    halt.took(
        r,
        {
            "agents": {
                "w1": {"ended": True, "branch": "cmux/w1", "pushed": True, "reason": "pushed"},
                "w2": {"ended": True, "branch": "cmux/w2", "pushed": False, "reason": "rejected"},
                "w3": {"ended": False},  # no record there, or killed already
                "w4": {"ended": False, "error": "registry is locked"},
            },
            "left": ["w9"],
            "session_ended": False,
        },
    )
    assert r.done and not r.ok  # w4 is not ended: the stop did not all it was asked
    assert (
        r.stopped == ["w1", "w2"] and r.gone == ["w3"] and r.failed == {"w4": "registry is locked"}
    )
    assert r.pushed == {"w1": "cmux/w1"} and r.not_pushed == {"w2": "rejected"}
    assert r.left == ["w9"]
    words = halt.summary(r)
    assert words.startswith("b: w1, w2 stopped, w3 not running there, w4 not stopped")
    assert "`cmux kill w4` tries again" in words and "cmux/w1 pushed" in words
    assert "w2's branch not pushed (rejected; its clone is kept there)" in words
    assert "still running there: w9" in words


def test_a_host_that_did_all_says_so_in_one_line() -> None:
    r = HostStop(host="b", asked=["w1", "w2"])
    ended = {"ended": True, "pushed": True}
    halt.took(
        r,
        {
            "agents": {"w1": {**ended, "branch": "cmux/w1"}, "w2": {**ended, "branch": "cmux/w2"}},
            "left": [],
            "session_ended": True,
        },
    )
    assert r.ok
    assert halt.summary(r) == "b: w1, w2 stopped, cmux/w1, cmux/w2 pushed, its session ended"
    assert r.to_dict()["ok"] is True


def test_a_host_not_reached_is_named_with_what_tries_again() -> None:
    r = HostStop(host="c", asked=["w2"], error="host c (root@h) is unreachable: timed out")
    assert not r.ok
    words = halt.summary(r)
    assert words.startswith("c: not stopped: host c (root@h) is unreachable: timed out")
    assert "w2 left as recorded" in words and "`cmux stop` again" in words


def test_an_answer_without_an_asked_agent_is_unreadable() -> None:
    """took raises on an answer that does not cover what was asked; stop_host
    reports that as a host that said something cmux cannot read."""
    with pytest.raises(KeyError):
        halt.took(HostStop(host="b", asked=["w1"]), {"agents": {}})


def test_the_host_side_with_no_project_there_claims_nothing_ended(tmp_path) -> None:
    """A [hosts] dir changed since the spawn: the agent may run elsewhere
    there, so it is not reported gone (its record here stays)."""
    said = halt.stop_here({"root": str(tmp_path / "never"), "names": ["w1"]})
    assert said["agents"]["w1"]["error"].startswith("no project of this trunk at ")
    assert said["left"] == [] and said["session_ended"] is False
    r = HostStop(host="b", asked=["w1"])
    halt.took(r, said)
    assert not r.ok and r.stopped == [] and r.gone == [] and "w1" in r.failed
