"""Mail across real hosts over NATS: nats-server with JetStream on host a, a
supervisor on a, w1 spawned on b and w2 on c with `cmux spawn --host`; each
host's monitor starts its node daemon (the [cluster] section travels to the
worker hosts with the spawn). Every agent sends N messages to each of the
other two; each arrives exactly once, delivered in its sender's order, and
`cmux status --json` on a shows w1 and w2 in the states their hosts hold.
Then b's link is cut while every agent sends a second round: a's status
shows w1 unreachable, b's mail waits in its spools; mended, still nothing
lost or doubled, and a's status agrees with b again."""

from __future__ import annotations

from typing import Any

import pytest

from cmux.agents import registry
from tests.helpers import wait_until
from tests.multihost.conftest import TOKEN, Cluster, text
from tests.multihost.mail import ROUNDS, bodies, data_of, delivered, remote_of, sender, states_there

pytestmark = [pytest.mark.multihost, pytest.mark.timeout(120)]

N = 8  # messages from each agent to each of the other two


def test_supervisor_on_a_and_workers_on_b_and_c_exchange_mail_exactly_once_in_order(
    cluster: Cluster, natsd: str
) -> None:
    a, b, c = (cluster.hosts[n] for n in ("a", "b", "c"))
    extra = f'nats = "{natsd}"\ntoken = "{TOKEN}"\nheartbeat = 0.5\nack_wait = 2\n'
    toml = cluster.toml().replace('host = "a"\n', f'host = "a"\n{extra}')
    # Each agent receives while it sends: depth counts that as replies.
    toml += "[dashboard]\nenabled = false\n[mail]\ndepth_limit = 100\n"
    (cluster.project / "cmux.toml").write_text(toml)
    go = cluster.project.parent / "go"
    plan = {"supervisor": ("w1", "w2"), "w1": ("w2", "supervisor"), "w2": ("supervisor", "w1")}

    started = a.cmux(
        "start", "--no-attach", "--command", sender(go, plan["supervisor"], N),
        cwd=cluster.project,
    )  # fmt: skip
    assert started.code == 0, started.err
    for name, host in (("w1", "b"), ("w2", "c")):
        r = a.cmux(
            "spawn", name, "--host", host, "--task", "mail",
            "--command", sender(go, plan[name], N), "--json",
            cwd=cluster.project, timeout=60,
        )  # fmt: skip
        assert r.code == 0, r.err

    # Each host's node marks the boxes of the agents that live elsewhere as
    # its spools (from CMUX_AGENTS): then every send has a box to go to.
    roots = {h.name: data_of(h, cluster) for h in (a, b, c)}
    where = {"supervisor": "a", "w1": "b", "w2": "c"}

    def spools_ready() -> bool:
        return all(
            remote_of(roots[h], agent) == where[agent]
            for h in roots
            for agent in where
            if where[agent] != h
        )

    wait_until(spools_ready, timeout=20, interval=0.2, what="every host's spools of the others")
    (go.parent / "go-r1").touch()

    def report() -> str:
        """What each host's mail looks like, and its node's log: for a failure."""
        lines = []
        for h, root in roots.items():
            for agent in where:
                box = root / "mailbox" / agent
                n = {f: len(list((box / f).glob("*"))) for f in ("new", "cur", "sent")}
                lines.append(f"{h}/{agent}: {n} delivered={len(delivered(root, agent))}")
            lines.append(f"{h} node.log: {text(root / 'state' / 'node.log')[-1500:]}")
        lines += [f"{p.name}: {text(p)[-500:]}" for p in go.parent.glob("fail-*")]
        lines += [
            f"{h} deadletter: {len(list((r / 'mailbox' / 'deadletter').glob('*')))}"
            for h, r in roots.items()
        ]
        return "\n".join(lines)

    def arrived(tag: str, count: int) -> bool:
        return all(
            sum(1 for _, s in delivered(roots[where[r]], r) if s != "cmux") >= count for r in where
        )

    def check(tag: str, count: int) -> None:
        fails = [p.read_text() for p in go.parent.glob("fail-*") if p.read_text().strip()]
        assert not fails, fails
        for r in where:
            got = delivered(roots[where[r]], r)
            ids = [i for i, s in got if s in where]
            assert len(ids) == len(set(ids)), f"{r} got a message twice"
            said = bodies(roots[where[r]], r, ids)
            for s in where:
                if s == r:
                    continue
                mine = [x for x in said if x.startswith(f"{s}-")]
                want = [f"{s}-{t}-{r}-{i}" for t in ROUNDS if t <= tag for i in range(1, N + 1)]
                assert mine == want, (r, s, mine)  # each once, in its sender's order
            assert len(ids) == count, (r, len(ids))

    try:
        wait_until(lambda: arrived("r1", 2 * N), timeout=30, interval=0.2)
    except AssertionError:
        raise AssertionError(f"not {2 * N} messages to each: {report()}") from None
    check("r1", 2 * N)

    # `cmux status --json` on a: w1 and w2 on their hosts, in the states they hold there.
    def status_on_a() -> dict[str, dict[str, Any]]:
        r = a.cmux("status", "--json", cwd=cluster.project)
        return {row["name"]: row for row in r.json()} if r.code == 0 else {}

    def status_agrees() -> bool:
        rows, there = status_on_a(), states_there(cluster)
        return (
            all(n in rows for n in there)
            and (rows["w1"]["host"], rows["w2"]["host"]) == ("b", "c")
            and all(rows[n]["state"] == s for n, s in there.items())
        )

    assert all(s in registry.LIVE for s in states_there(cluster).values()), states_there(cluster)

    wait_until(status_agrees, timeout=10, interval=0.3, what="a's status as b and c hold it")

    # b's link cut while every agent sends its second round: b's senders
    # spool, a's and c's mail for w1 waits in the stream; mended, all of it
    # arrives, still each once and in order.
    cluster.cut("b")
    (go.parent / "go-r2").touch()

    def sent_meanwhile() -> bool:
        spooled_on_b = all(  # b's r2 waits in its spools' new/ (its r1 is in sent/)
            len(list((roots["b"] / "mailbox" / to / "new").glob("*"))) == N
            for to in ("w2", "supervisor")
        )
        return spooled_on_b and all(
            len(list((roots[h] / "mailbox" / "w1" / "sent").glob("*"))) == 2 * N for h in ("a", "c")
        )

    try:
        wait_until(sent_meanwhile, timeout=20, interval=0.2)
    except AssertionError:
        raise AssertionError(f"round 2 not sent while b was cut: {report()}") from None
    # a's node stops hearing b's heartbeat: w1 unreachable (never exited), w2 as c holds it.
    wait_until(
        lambda: status_on_a().get("w1", {}).get("state") == "unreachable",
        timeout=10,
        interval=0.3,
        what="w1 unreachable in a's status while b is cut",
    )
    assert status_on_a()["w2"]["state"] == states_there(cluster)["w2"]
    # Nothing reached b meanwhile.
    assert len([1 for _, s in delivered(roots["b"], "w1") if s in where]) == 2 * N
    cluster.mend("b")
    try:
        wait_until(lambda: arrived("r2", 4 * N), timeout=30, interval=0.2)
    except AssertionError:
        raise AssertionError(f"not {4 * N} messages to each: {report()}") from None
    check("r2", 4 * N)
    wait_until(status_agrees, timeout=10, interval=0.3, what="a's status as b holds it again")
