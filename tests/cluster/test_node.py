"""The node daemons of two "hosts" (two data roots on this machine, each with
its own `cmux node` process) exchanging mail over a real nats-server: none
lost, none doubled, in order per sender; through a node SIGKILLed and a NATS
server restarted mid-stream."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.hosts import Host, nodes_running
from tests.cluster.natsd import NatsServer
from tests.helpers import wait_until

pytestmark = pytest.mark.timeout(90)

SENDERS = 4  # per host: 8 in all
PER_SENDER = 125  # 1000 messages
UNDER_FAULT = 50  # per sender while a node or NATS is killed: 400


@pytest.fixture
def hosts(
    natsd: NatsServer, tmp_path: Path, isolated_env: dict[str, str]
) -> Iterator[tuple[Host, Host]]:
    a = Host.make("a", tmp_path, isolated_env, natsd)
    b = Host.make("b", tmp_path, isolated_env, natsd)
    a.agent("supervisor", role="supervisor")
    for i in range(1, SENDERS + 1):
        a.agent(f"a{i}")
        b.agent(f"b{i}")
    with nodes_running(a, b):
        # Each learns the other's agents from CMUX_AGENTS: their boxes become spools.
        wait_until(
            lambda: (
                all(a.spooled_for(f"b{i}") == "b" for i in range(1, SENDERS + 1))
                and all(b.spooled_for(f"a{i}") == "a" for i in range(1, SENDERS + 1))
                and b.spooled_for("supervisor") == "a"
                and b.spooled_for("human") == "a"
            ),
            timeout=15,
            what="the spool markers from the other host's agents",
        )
        yield a, b


def send_all(a: Host, b: Host, per_sender: int = PER_SENDER) -> dict[str, list[str]]:
    """8 senders at once, 4 per host, each per_sender messages round-robin to
    the other host's agents; sender -> the ids it sent, in order."""
    sent: dict[str, list[str]] = {}

    def run(host: Host, sender: str, peers: list[str]) -> None:
        ids = sent.setdefault(sender, [])
        for n in range(per_sender):
            ids.append(host.send(peers[n % len(peers)], f"{sender} #{n}", sender))

    threads = []
    for i in range(1, SENDERS + 1):
        bs = [f"b{j}" for j in range(1, SENDERS + 1)]
        as_ = [f"a{j}" for j in range(1, SENDERS + 1)]
        threads.append(threading.Thread(target=run, args=(a, f"a{i}", bs)))
        threads.append(threading.Thread(target=run, args=(b, f"b{i}", as_)))
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return sent


def arrived(host: Host, prefix: str) -> list[str]:
    return [m for i in range(1, SENDERS + 1) for m in host.inbox_ids(f"{prefix}{i}")]


def spooled(host: Host) -> int:
    """Mail waiting in the spools for the other host's agents."""
    prefix = "b" if host.name == "a" else "a"
    return sum(len(host.files(f"{prefix}{i}", "new")) for i in range(1, SENDERS + 1))


def check_exactly_once_in_order(a: Host, b: Host, sent: dict[str, list[str]]) -> None:
    total = sum(len(ms) for ms in sent.values()) // 2
    wait_until(
        lambda: len(arrived(b, "b")) >= total and len(arrived(a, "a")) >= total,
        timeout=60,
        interval=0.1,
        what="every message on the other host",
    )
    for host, prefix, senders in ((b, "b", "a"), (a, "a", "b")):
        ids = arrived(host, prefix)
        assert len(ids) == len(set(ids)) == total, "a message doubled"
        want = {m for s, ms in sent.items() if s.startswith(senders) for m in ms}
        assert set(ids) == want, "a message lost"
        # each in the box it was sent to, with its body intact
        for i in range(1, SENDERS + 1):
            for mid in host.inbox_ids(f"{prefix}{i}"):
                raw = (
                    Path(host.data.mailbox_path(f"{prefix}{i}")) / "new" / f"{mid}.json"
                ).read_text()
                assert json.loads(raw)["to"] == f"{prefix}{i}"
        # in order per sender: the order the node stored them in (its events;
        # a node killed between a store and its event logs that one never),
        # and the order they landed in new/ (each link sets the file's ctime)
        order = [e["id"] for e in host.events() if e["event"] == "cluster-received"]
        landed = {}
        for i in range(1, SENDERS + 1):
            new = Path(host.data.mailbox_path(f"{prefix}{i}")) / "new"
            landed.update({p.name[:-5]: p.stat().st_ctime_ns for p in new.iterdir()})
        for s, ms in sent.items():
            if s.startswith(senders):
                logged = set(order) & set(ms)
                got_, want_ = [m for m in order if m in logged], [m for m in ms if m in logged]
                assert got_ == want_, s
                times = [landed[m] for m in ms]
                assert times == sorted(times), f"{s}'s messages landed out of order"
    # the spools are empty: everything moved to sent/ after its PubAck
    for host, prefix in ((a, "b"), (b, "a")):
        for i in range(1, SENDERS + 1):
            assert host.files(f"{prefix}{i}", "new") == []
        assert sum(len(host.files(f"{prefix}{i}", "sent")) for i in range(1, SENDERS + 1)) == total


def test_1000_messages_from_8_senders_cross_exactly_once_in_order(
    hosts: tuple[Host, Host], natsd: NatsServer
) -> None:
    a, b = hosts
    sent = send_all(a, b)
    check_exactly_once_in_order(a, b, sent)
    check_heartbeats_and_the_agents_bucket(a, natsd)


def test_a_node_sigkilled_mid_stream_loses_and_doubles_nothing(hosts: tuple[Host, Host]) -> None:
    a, b = hosts
    box: dict[str, dict[str, list[str]]] = {}
    sender = threading.Thread(target=lambda: box.setdefault("sent", send_all(a, b, UNDER_FAULT)))
    sender.start()
    wait_until(lambda: len(arrived(b, "b")) >= 40, timeout=30, what="the stream under way")
    b.kill_node()  # SIGKILL: between any two steps
    a.kill_node()
    # both down while the senders go on spooling
    wait_until(lambda: spooled(a) or not sender.is_alive(), timeout=30, what="mail spooled")
    b.start_node()
    a.start_node()
    sender.join(60)
    check_exactly_once_in_order(a, b, box["sent"])


def test_nats_restarted_mid_stream_loses_nothing(
    hosts: tuple[Host, Host], natsd: NatsServer
) -> None:
    a, b = hosts
    box: dict[str, dict[str, list[str]]] = {}
    sender = threading.Thread(target=lambda: box.setdefault("sent", send_all(a, b, UNDER_FAULT)))
    sender.start()
    wait_until(lambda: len(arrived(b, "b")) >= 40, timeout=30, what="the stream under way")
    natsd.kill()  # SIGKILL the server; its store stays
    wait_until(lambda: spooled(a) or not sender.is_alive(), timeout=30, what="mail spooled")
    natsd.start()
    sender.join(60)
    check_exactly_once_in_order(a, b, box["sent"])
    assert (
        a.proc is not None
        and a.proc.poll() is None
        and b.proc is not None
        and b.proc.poll() is None
    )


def check_heartbeats_and_the_agents_bucket(a: Host, natsd: NatsServer) -> None:
    from cmux.cluster.nats import Nats, Settings

    nc = Nats.connect(Settings(url=natsd.url, token=natsd.token))
    try:
        wait_until(lambda: nc.kv_items("CMUX_HOSTS").keys() >= {"a", "b"}, what="two heartbeats")
        seen = {k: json.loads(v) for k, v in nc.kv_items("CMUX_HOSTS").items()}
        assert seen["a"]["agents"] == SENDERS + 1 and seen["b"]["agents"] == SENDERS
        assert time.time() - seen["b"]["seen"] < 10
        agents = nc.kv_items("CMUX_AGENTS")
        assert json.loads(agents["b.b1"])["host"] == "b"
        assert json.loads(agents["a.supervisor"])["role"] == "supervisor"
        # a record that goes away leaves the bucket
        from cmux.agents import registry

        registry.remove(a.data, "a4")
        wait_until(lambda: "a.a4" not in nc.kv_items("CMUX_AGENTS"), what="a.a4 removed")
    finally:
        nc.close()
