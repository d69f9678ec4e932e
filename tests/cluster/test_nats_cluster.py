"""cmux/cluster/nats.py against a 3-node JetStream cluster on loopback: the
streams and buckets in three copies, a bucket never made by a reader, and
the one the client talks to restarted mid-stream: it goes on through
another server, the publishes repeated with their ids are stored once, and
the durable pull consumer resumes where it was, in order."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cmux.errors import ClusterError
from tests.cluster.conftest import require_nats
from tests.cluster.natsd import NatsCluster
from tests.helpers import wait_until

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def trio(tmp_path: Path) -> Iterator[NatsCluster]:
    require_nats()
    c = NatsCluster(tmp_path / "trio")
    try:
        c.start()
        yield c
    finally:
        c.kill()


def connect(c: NatsCluster) -> Any:
    from cmux.cluster.nats import Nats, Settings

    return Nats.connect(Settings(url=c.url, token=c.token), timeout=5)


def held(c: NatsCluster) -> list[set[str]]:
    """The streams each server's store holds."""
    out = []
    for srv in c.servers:
        d = srv.store / "jetstream" / "$G" / "streams"
        out.append({p.name for p in d.iterdir()} if d.exists() else set())
    return out


def test_replicated_streams_survive_the_clients_server_restarting(trio: NatsCluster) -> None:
    nc = connect(trio)
    try:
        nc.ensure_stream("T", ["t.>"], replicas=3)
        nc.ensure_kv("B", replicas=3)
        # A reader of a bucket nobody made yet finds it empty, and makes none.
        assert nc.kv_items("NOPE") == {} and nc.kv_get("NOPE", "k") is None
        with pytest.raises(ClusterError, match="no KV bucket NOPE"):
            nc.kv_put("NOPE", "k", b"v")
        wait_until(
            lambda: all({"T", "KV_B"} <= s for s in held(trio)),
            what="the stream and the bucket on all three servers",
        )
        assert not any("KV_NOPE" in s for s in held(trio))

        sub = nc.pull("T", "d", "t.>", ack_wait=2)
        for i in range(10):
            nc.publish("t.x", f"{i}".encode(), msg_id=f"m{i}")
        got = sub.fetch(batch=5, timeout=2)
        nc.ack_all(got)
        before = nc.reconnects

        trio.servers[0].stop()  # the one it talks to (first in the list)
        trio.servers[0].start(timeout=45)
        # On through another server: publishes repeated with the same ids
        # (a sender that did not see its PubAck) are stored once.
        acks = []
        for i in range(5, 20):
            acks.append(publish_again_until_stored(nc, i))
        assert nc.reconnects > before
        assert [a.duplicate for a in acks[:5]] == [True] * 5  # m5..m9 were stored before
        assert not any(a.duplicate for a in acks[5:])

        seen = [d.data.decode() for d in got]
        wait_until(lambda: take(sub, nc, seen) >= 20, timeout=20, what="all 20 through")
        assert seen == [str(i) for i in range(20)]  # each once, in order
    finally:
        nc.close()


def publish_again_until_stored(nc: Any, i: int) -> Any:
    """What the node does: publish, and on an error again with the same id."""
    out: list[Any] = []

    def once() -> bool:
        try:
            out.append(nc.publish("t.x", f"{i}".encode(), msg_id=f"m{i}", timeout=2))
        except ClusterError:
            return False
        return True

    wait_until(once, timeout=20, interval=0.1, what=f"m{i} stored")
    return out[-1]


def take(sub: Any, nc: Any, seen: list[str]) -> int:
    try:
        got = sorted(sub.fetch(batch=20, timeout=0.5), key=lambda d: d.stream_seq)
        nc.ack_all(got)
    except ClusterError:
        return len(seen)
    seen.extend(d.data.decode() for d in got)
    return len(seen)
