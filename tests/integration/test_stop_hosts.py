"""`cmux stop` with an agent recorded on a host that does not answer (a
closed port on loopback: refused at once): this host's session stops all
the same, the host is named with the ssh error and a hint, its agent's
record is left as it was, and the exit code is 1; `--here` does not call
the host. (tests/multihost/test_stop.py stops real hosts over real ssh.)"""

from __future__ import annotations

import json
import socket

import pytest

from cmux.agents import registry
from cmux.agents.registry import Agent
from cmux.config import load_config
from tests.helpers import Project

pytestmark = pytest.mark.timeout(90)


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then let go)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_stop_names_a_host_it_could_not_reach_and_exits_1(project: Project) -> None:
    with (project.root / "cmux.toml").open("a") as f:
        f.write(
            '\n[cluster]\nhost = "a"\ntrunk = "ssh://root@127.0.0.1/nowhere"\n'
            f'[hosts.b]\nssh = "root@127.0.0.1"\nport = {closed_port()}\ndir = "/tmp/cx-none"\n'
        )
    project.ok("start", "--no-attach", "--command", "exec sleep 600")
    cfg = load_config(project.root)
    registry.save(cfg.data, Agent(name="w1", role="worker", state="busy", host="b"), event=None)

    r = project.cmux("stop", "--timeout", "20")
    assert r.code == 1, (r.out, r.err)
    assert r.out.startswith(f"stopped {cfg.session_name}"), r.out  # this host's, all the same
    assert "b: not stopped: host b (root@127.0.0.1) is unreachable" in r.err, r.err
    assert "w1 left as recorded" in r.err and "hint: " in r.err, r.err
    assert "not everything stopped on b: `cmux stop` again tries again" in r.err, r.err
    assert registry.get(cfg.data, "w1").state == "busy"
    assert registry.get(cfg.data, "supervisor").state == "killed"

    j = project.cmux("stop", "--json", "--timeout", "20")
    assert j.code == 1, (j.out, j.err)
    said = json.loads(j.out)
    assert said["was_running"] is False
    (b,) = said["hosts"]
    assert b["host"] == "b" and b["ok"] is False and b["asked"] == ["w1"] and b["error"], b

    here = project.cmux("stop", "--here")
    assert here.code == 0 and "b:" not in here.out + here.err, (here.out, here.err)
    assert registry.get(cfg.data, "w1").state == "busy"
