"""`cmux stop` on the trunk host ends the team on every host: a supervisor
on a, w1 on b (it has committed, not reported done), w2 on c. After `cmux
stop` on a: nothing of the project runs on b or c any more (their tmux
servers and the workers' programs are gone), w1's commit is on a's trunk as
cmux/w1, and every record says killed. With c's link cut: a and b stop all
the same, the exit code is 1 and the words name c, its w2 left as recorded;
`cmux start` meanwhile shows w2 unreachable (its host does not answer), not
live; once c answers, `cmux stop` again ends it."""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.helpers import git, wait_until
from tests.multihost.conftest import Cluster, Host, sh
from tests.multihost.test_spawn import branch_file, record_on, state_on_a

pytestmark = [pytest.mark.multihost, pytest.mark.timeout(120)]

W1 = "echo w1-on-b > w1.txt && git add w1.txt && git commit -qm 'w1.txt, from b' && exec sleep 601"
W2 = "exec sleep 602"


def live_servers(host: Host) -> list[str]:
    """The tmux sockets on the host with a server answering."""
    return [
        str(sock)
        for sock in host.root.glob("tmux/tmux-*/*")
        if host.run("tmux", "-S", str(sock), "list-sessions").code == 0
    ]


def running(host: Host, word: str) -> list[int]:
    """The pids in the host's namespace whose command line has ``word``."""
    pids = []
    for pid in sh("ip", "netns", "pids", host.ns, check=False).stdout.split():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if word in cmdline:
            pids.append(int(pid))
    return pids


def team(cluster: Cluster) -> dict[str, str]:
    """A supervisor on a, w1 on b (committed, busy), w2 on c; the clone's
    path of each worker."""
    a = cluster.hosts["a"]
    (cluster.project / "cmux.toml").write_text(cluster.toml("[dashboard]\nenabled = false\n"))
    started = a.cmux("start", "--no-attach", "--command", "exec sleep 600", cwd=cluster.project)
    assert started.code == 0, started.err

    def spawn(name: str, host: str, command: str) -> str:
        r = a.cmux(
            "spawn", name, "--host", host, "--task", f"work on {host}", "--command", command,
            "--json", cwd=cluster.project, timeout=90,
        )  # fmt: skip
        assert r.code == 0, r.err
        return str(r.json()["cwd"])

    with ThreadPoolExecutor(2) as pool:  # (at once: the tier's time is short)
        both = [pool.submit(spawn, *args) for args in (("w1", "b", W1), ("w2", "c", W2))]
        cwd = {"w1": both[0].result(), "w2": both[1].result()}
    wait_until(
        lambda: git(Path(cwd["w1"]), "log", "-1", "--format=%s").strip() == "w1.txt, from b",
        timeout=30,
        interval=0.2,
        what="w1's commit in its clone on b",
    )
    assert branch_file(cluster.project, "cmux/w1", "w1.txt") is None  # only on b so far
    for host, word in (("b", "sleep 601"), ("c", "sleep 602")):
        assert running(cluster.hosts[host], word), f"the worker on {host}"
    return cwd


def test_stop_on_the_trunk_host_ends_the_agents_and_sessions_on_every_host(
    cluster: Cluster,
) -> None:
    a, b, c = (cluster.hosts[n] for n in "abc")
    team(cluster)
    assert live_servers(b) and live_servers(c)

    r = a.cmux("stop", cwd=cluster.project, timeout=90)
    assert r.code == 0, r.err
    lines = r.out.splitlines()
    assert "b: w1 stopped, cmux/w1 pushed, its session ended" in lines, r.out
    assert "c: w2 stopped, cmux/w2 pushed, its session ended" in lines, r.out
    assert any(line.startswith("stopped ") for line in lines), r.out

    # Nothing of the project runs on b or c: no tmux server, no worker.
    for host, word in ((b, "sleep 601"), (c, "sleep 602")):

        def ended(h: Host = host, w: str = word) -> bool:
            return not live_servers(h) and not running(h, w)

        wait_until(ended, timeout=10, what=f"{host.name}'s tmux server and worker gone")
    assert not live_servers(a)
    # w1's work is on the trunk; every record says killed, here and there.
    assert branch_file(cluster.project, "cmux/w1", "w1.txt") == "w1-on-b"
    for name, host in (("w1", b), ("w2", c)):
        assert state_on_a(cluster, name) == "killed"
        there = record_on(host.root, name)
        assert there is not None and there["state"] == "killed", there

    # A second stop has no host left to call.
    assert a.cmux("stop", "--json", cwd=cluster.project).json()["hosts"] == []


def test_stop_with_a_host_cut_off_stops_the_rest_and_says_which_was_not_reached(
    cluster: Cluster,
) -> None:
    a, b, c = (cluster.hosts[n] for n in "abc")
    team(cluster)
    before = state_on_a(cluster, "w2")
    cluster.cut("c")

    r = a.cmux("stop", "--timeout", "15", cwd=cluster.project, timeout=90)
    assert r.code == 1, (r.out, r.err)
    assert "b: w1 stopped, cmux/w1 pushed, its session ended" in r.out.splitlines(), r.out
    assert "c: not stopped:" in r.err and "w2 left as recorded" in r.err, r.err
    assert "hint:" in r.err and "not everything stopped on c" in r.err, r.err
    # a and b stopped all the same; c's worker and its record left as they are.
    assert not live_servers(a)
    wait_until(lambda: not live_servers(b), timeout=10, what="b's tmux server gone")
    assert state_on_a(cluster, "w1") == "killed"
    assert branch_file(cluster.project, "cmux/w1", "w1.txt") == "w1-on-b"
    assert state_on_a(cluster, "w2") == before
    assert running(c, "sleep 602") and live_servers(c)

    # `cmux start` while c is still cut: w2 is unreachable, not shown live.
    started = a.cmux("start", "--no-attach", "--command", "exec sleep 600", cwd=cluster.project)
    assert started.code == 0, started.err
    assert "w2 unreachable" in started.out, started.out
    assert state_on_a(cluster, "w2") == "unreachable"

    # c back: `cmux stop` again ends w2 there.
    cluster.mend("c")
    j = a.cmux("stop", "--json", cwd=cluster.project, timeout=90)
    assert j.code == 0, (j.out, j.err)
    (only,) = json.loads(j.out)["hosts"]
    assert only["host"] == "c" and only["ok"] and only["stopped"] == ["w2"], only
    wait_until(lambda: not running(c, "sleep 602"), timeout=10, what="c's worker ended")
    assert not live_servers(c)
    assert state_on_a(cluster, "w2") == "killed"
    assert os.path.exists(cluster.project / ".cmux")  # state on disk is kept
