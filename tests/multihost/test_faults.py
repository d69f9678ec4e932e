"""Issue 16's fault cases across real hosts: a 3-node JetStream cluster, one
nats-server in each of a, b and c's namespaces (``[cluster] replicas = 3``),
a supervisor on a and seven workers spawned with `cmux spawn --host`, four
on b and three on c: 8 agents, each a `mailbox send` loop to its two
neighbours on a ring that always crosses hosts. Three rounds, one fault
each, while all 8 send:

- r1: each nats-server in turn restarted (SIGTERM, then again on its store):
  a's node first loses the server it talks to;
- r2: b's node daemon SIGKILLed (its pid file under b's data root); b's
  monitor starts it again;
- r3: c's link cut (`ip link set down` in the hub), then mended.

After each round every message is delivered exactly once to its recipient
(the routers' ``deliver`` events, the Maildirs' ``cur/``), in its sender's
order; no send failed, nothing in any deadletter/, every spool empty."""

from __future__ import annotations

import os
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from cmux import pidfile
from cmux.cluster import view
from cmux.paths import DataRoot
from tests.helpers import Run, wait_until
from tests.multihost.conftest import TOKEN, Cluster, NatsCluster, text
from tests.multihost.mail import bodies, data_of, delivered, remote_of, sender

pytestmark = [pytest.mark.multihost, pytest.mark.timeout(180)]

N = 8  # messages from each agent to each of its two neighbours, per round
ROUNDS = ("r1", "r2", "r3")
# The ring, in order: each sends to the one before and the one after it, on another host.
RING = (
    ("supervisor", "a"),
    ("w1", "b"),
    ("w2", "c"),
    ("w3", "b"),
    ("w4", "c"),
    ("w5", "b"),
    ("w6", "c"),
    ("w7", "b"),
)
WHERE = dict(RING)


def neighbours(i: int) -> tuple[str, str]:
    return RING[(i - 1) % len(RING)][0], RING[(i + 1) % len(RING)][0]


PLAN = {name: neighbours(i) for i, (name, _) in enumerate(RING)}


class Team:
    """The 8 agents' mail as the three hosts hold it."""

    def __init__(self, cluster: Cluster, go: Path) -> None:
        self.cluster, self.go = cluster, go
        self.roots = {h.name: data_of(h, cluster) for h in cluster.hosts.values()}

    def spools_ready(self) -> bool:
        return all(
            remote_of(self.roots[h], agent) == WHERE[agent]
            for h in self.roots
            for agent in WHERE
            if WHERE[agent] != h
        )

    def got(self, agent: str) -> list[str]:
        """The ids delivered to ``agent`` by its host's router, from the team."""
        return [i for i, s in delivered(self.roots[WHERE[agent]], agent) if s in WHERE]

    def arrived(self, count: int) -> bool:
        return all(len(self.got(r)) >= count for r in WHERE)

    def check(self, upto: int) -> None:
        """Rounds 1..``upto``: each message once, in its sender's order, nothing failed."""
        fails = [p.read_text() for p in self.go.parent.glob("fail-*") if p.read_text().strip()]
        assert not fails, fails
        for r in WHERE:
            ids = self.got(r)
            assert len(ids) == len(set(ids)), f"{r} got a message twice"
            said = bodies(self.roots[WHERE[r]], r, ids)
            for s in (x for x in WHERE if r in PLAN[x]):
                mine = [x for x in said if x.startswith(f"{s}-")]
                want = [f"{s}-{t}-{r}-{i}" for t in ROUNDS[:upto] for i in range(1, N + 1)]
                if mine != want:  # the whole trace, in the captured output (not cut short)
                    print(self.trace(r, s))
                assert mine == want, (r, s, mine)  # each once, in its sender's order
            assert len(ids) == 2 * N * upto, (r, len(ids))
        for h, root in self.roots.items():
            dead = [p for p in (root / "mailbox" / "deadletter").rglob("*") if p.is_file()]
            assert not dead, (h, dead)
            for agent in WHERE:
                if WHERE[agent] != h:
                    spool = root / "mailbox" / agent / "new"
                    assert not list(spool.glob("*")), (h, agent, "still spooled")

    def trace(self, r: str, s: str) -> str:
        """For a failure: how ``s``'s messages to ``r`` went, event by event."""
        from tests.multihost.mail import events_of

        out = []
        for h in (WHERE[s], WHERE[r]):
            for e in events_of(self.roots[h]):
                if e.get("event", "").startswith(("cluster-", "node-", "deliver")) and (
                    e.get("agent") in (r, None)
                ):
                    out.append(f"{h} {e}")
        return "\n".join(out[-400:]) + "\n" + self.report()

    def host_state(self, judge: str, host: str) -> str | None:
        """How ``judge``'s node sees ``host`` (its view file)."""
        doc = view.read_state(DataRoot(self.roots[judge]))
        return doc.get("hosts", {}).get(host, {}).get("state")

    def published(self) -> int:
        """How many of the team's messages the spools have published so far."""
        return sum(
            len(list((root / "mailbox" / agent / "sent").glob("*")))
            for h, root in self.roots.items()
            for agent in WHERE
            if WHERE[agent] != h
        )

    def report(self) -> str:
        """What each host's mail looks like, and its node's log: for a failure."""
        lines = []
        for h, root in self.roots.items():
            for agent in WHERE:
                box = root / "mailbox" / agent
                n = {f: len(list((box / f).glob("*"))) for f in ("new", "cur", "sent")}
                lines.append(f"{h}/{agent}: {n} delivered={len(delivered(root, agent))}")
            lines.append(f"{h} node.log: {text(root / 'state' / 'node.log')[-3000:]}")
        lines += [f"{p.name}: {text(p)[-500:]}" for p in self.go.parent.glob("fail-*")]
        return "\n".join(lines)

    def wait_sent(self, host: str, to: str, more_than: int, what: str) -> None:
        """Until ``host``'s spool for ``to`` has published more than ``more_than``."""
        sent = self.roots[host] / "mailbox" / to / "sent"
        wait_until(
            lambda: len(list(sent.glob("*"))) > more_than, timeout=20, interval=0.05, what=what
        )

    def wait_round(self, upto: int, what: str) -> None:
        try:
            wait_until(lambda: self.arrived(2 * N * upto), timeout=45, interval=0.2)
        except AssertionError:
            raise AssertionError(f"{what}: not {2 * N * upto} to each: {self.report()}") from None
        self.check(upto)


def test_8_senders_through_nats_restarts_a_node_killed_and_a_link_cut_lose_and_double_nothing(
    cluster: Cluster, nats_cluster: NatsCluster
) -> None:
    a = cluster.hosts["a"]
    extra = (
        f'nats = "{nats_cluster.urls}"\ntoken = "{TOKEN}"\nreplicas = 3\n'
        "heartbeat = 0.5\nack_wait = 2\n"
    )
    toml = cluster.toml().replace('host = "a"\n', f'host = "a"\n{extra}')
    toml += "[dashboard]\nenabled = false\n[mail]\ndepth_limit = 1000\n"
    (cluster.project / "cmux.toml").write_text(toml)
    go = cluster.project.parent / "go"

    started = a.cmux(
        "start", "--no-attach", "--command", sender(go, PLAN["supervisor"], N, ROUNDS),
        cwd=cluster.project,
    )  # fmt: skip
    assert started.code == 0, started.err

    def spawn_on(host: str) -> list[Run]:
        """The workers of ``host``, one after the other (b's and c's side by side)."""
        runs = []
        for name, there in RING[1:]:
            if there == host:
                runs.append(a.cmux(
                    "spawn", name, "--host", host, "--task", "mail",
                    "--command", sender(go, PLAN[name], N, ROUNDS), "--json",
                    cwd=cluster.project, timeout=60,
                ))  # fmt: skip
        return runs

    with ThreadPoolExecutor(2) as pool:
        runs = [r for rs in pool.map(spawn_on, ("b", "c")) for r in rs]
    assert all(r.code == 0 for r in runs), [r.err for r in runs if r.code]
    team = Team(cluster, go)
    wait_until(team.spools_ready, timeout=30, interval=0.2, what="every host's spools")

    # r1: every nats-server in turn restarted while all 8 send, a's own first.
    (go.parent / "go-r1").touch()
    for k, name in enumerate(("a", "b", "c"), start=1):
        wait_until(
            lambda k=k: team.published() >= 12 * k,  # type: ignore[misc]
            timeout=20,
            interval=0.05,
            what=f"round 1 under way before {name}'s restart",
        )
        nats_cluster.restart(name)
    team.wait_round(1, "through the NATS restarts")

    # r2: b's node SIGKILLed mid-round; its monitor starts another.
    node_pid = team.roots["b"] / "state" / "run" / "node.pid"
    old = pidfile.alive(node_pid)
    assert old is not None, "b's node is not running"
    (go.parent / "go-r2").touch()
    team.wait_sent("b", "w2", 2 * N, "b's round 2 under way")
    os.kill(old, signal.SIGKILL)
    wait_until(
        lambda: pidfile.alive(node_pid) not in (None, old),
        timeout=20,
        interval=0.1,
        what="b's monitor to start its node again",
    )
    team.wait_round(2, "through b's node SIGKILLed")

    # r3: c's link cut mid-round, then mended.
    (go.parent / "go-r3").touch()
    team.wait_sent("c", "w3", 4 * N, "c's round 3 under way")
    logged = {n: len(text(nats_cluster.log(n))) for n in "abc"}
    cluster.cut("c")
    # c's senders go on spooling meanwhile, until a's node finds c silent.
    wait_until(
        lambda: team.host_state("a", "c") == "unreachable",
        timeout=20,
        interval=0.1,
        what="a's node to find c unreachable while its link is down",
    )
    # ... and until a route between c's server and another broke (no pong, no write).
    wait_until(
        lambda: any(
            "Router connection closed" in text(nats_cluster.log(n))[logged[n] :] for n in "abc"
        ),
        timeout=30,
        interval=0.1,
        what="a route to c's nats-server to break",
    )
    assert list((team.roots["c"] / "mailbox" / "w3" / "new").glob("*")), "c spooled nothing"
    cluster.mend("c")
    team.wait_round(3, "through c's link cut and mended")
    # The streams and buckets in three copies: each server's store holds them.
    for h in cluster.hosts.values():
        streams = h.root / "jetstream" / "jetstream" / "$G" / "streams"
        held = {p.name for p in streams.iterdir()}
        assert {"CMUX_MAIL", "CMUX_EVENTS", "KV_CMUX_AGENTS", "KV_CMUX_HOSTS"} <= held, (
            h.name,
            held,
        )
