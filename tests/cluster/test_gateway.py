"""cmux/cluster/nats.py against a real nats-server with JetStream on loopback."""

from __future__ import annotations

from typing import Any

import pytest

from cmux.errors import NatsUnavailable
from tests.cluster.natsd import NatsServer, free_port

pytestmark = pytest.mark.timeout(30)


def connect(natsd: NatsServer, token: str | None = None) -> Any:
    from cmux.cluster.nats import Nats, Settings

    return Nats.connect(Settings(url=natsd.url, token=token or natsd.token), timeout=3)


def test_a_wrong_token_or_no_server_is_a_clear_error(natsd: NatsServer) -> None:
    with pytest.raises(NatsUnavailable) as bad:
        connect(natsd, token="not-the-token")
    assert "credentials" in str(bad.value) or "not reachable" in str(bad.value)
    from cmux.cluster.nats import Nats, Settings

    with pytest.raises(NatsUnavailable) as none:
        Nats.connect(Settings(url=f"nats://127.0.0.1:{free_port()}"), timeout=1)
    assert none.value.hint and "nats-server" in none.value.hint


def test_publish_with_an_id_twice_stores_it_once_and_pull_acks(natsd: NatsServer) -> None:
    nc = connect(natsd)
    try:
        nc.ensure_stream("T", ["t.>"])
        nc.ensure_stream("T", ["t.>"])  # a second ensure keeps it
        first = nc.publish("t.a", b"one", msg_id="m1")
        again = nc.publish("t.a", b"one", msg_id="m1")
        other = nc.publish("t.a", b"two", msg_id="m2")
        assert (first.duplicate, again.duplicate, other.duplicate) == (False, True, False)
        assert again.seq == first.seq and other.seq == first.seq + 1
        consumer = nc.pull("T", "c1", "t.>", ack_wait=1.0)
        got = consumer.fetch(1, timeout=2)
        assert [d.data for d in got] == [b"one"] and got[0].msg_id == "m1"
        got[0].ack()
        second = consumer.fetch(1, timeout=2)
        assert [d.data for d in second] == [b"two"]
        # not acked: it comes again after ack_wait, counted as a second delivery
        redelivered = consumer.fetch(1, timeout=3)
        assert [d.data for d in redelivered] == [b"two"] and redelivered[0].num_delivered == 2
        redelivered[0].ack()
        assert consumer.fetch(1, timeout=0.5) == []
    finally:
        nc.close()


def test_publish_many_keeps_each_lanes_order_and_runs_lanes_side_by_side(
    natsd: NatsServer,
) -> None:
    nc = connect(natsd)
    try:
        nc.ensure_stream("L", ["l.>"])
        items = [("l.x", f"{s}{n}".encode(), f"{s}{n}") for n in range(30) for s in "abc"]
        items.sort(key=lambda it: it[1][:1])  # lane a's 30, then b's, then c's
        acks = nc.publish_many(items, lanes=[it[1][:1].decode() for it in items])
        assert len(acks) == 90 and not any(a.duplicate for a in acks)
        # each PubAck is its own item's: the same item again is a duplicate at its seq
        again = nc.publish_many([items[40]], lanes=["b"])
        assert again[0].duplicate and again[0].seq == acks[40].seq
        consumer = nc.pull("L", "c1", "l.>", ack_wait=5.0, max_ack_pending=100)
        got: list[bytes] = []
        while len(got) < 90:
            batch = consumer.fetch(90, timeout=2)
            assert batch, f"only {len(got)} of 90 stored"
            got += [d.data for d in sorted(batch, key=lambda d: d.stream_seq)]
        for lane in "abc":
            assert [g for g in got if g.startswith(lane.encode())] == [
                f"{lane}{n}".encode() for n in range(30)
            ], f"lane {lane} out of order"
        # in flight together: the stream begins with every lane's first, not 30 of a
        assert sorted(got[:3]) == [b"a0", b"b0", b"c0"]
        with pytest.raises(ValueError):
            nc.publish_many(items[:2], lanes=["a"])
    finally:
        nc.close()


def test_kv_put_get_watch(natsd: NatsServer) -> None:
    nc = connect(natsd)
    try:
        nc.ensure_kv("B")
        assert nc.kv_get("B", "a.x") is None
        nc.kv_put("B", "a.x", b"1")
        w = nc.kv_watch("B")
        first = w.next(2)
        assert first is not None and (first.key, first.value) == ("a.x", b"1")
        nc.kv_put("B", "b.y", b"2")
        nc.kv_delete("B", "a.x")
        seen = [w.next(2), w.next(2)]
        assert [(e.key, e.value) for e in seen if e] == [("b.y", b"2"), ("a.x", None)]
        assert nc.kv_items("B") == {"b.y": b"2"}
        w.stop()
    finally:
        nc.close()


def test_a_stream_made_without_limits_takes_them_at_the_next_ensure(natsd: NatsServer) -> None:
    nc = connect(natsd)
    try:
        nc.ensure_stream("L", ["l.>"])  # as a node before the limits made it
        for i in range(5):
            nc.publish("l.a", f"m{i}".encode(), msg_id=f"m{i}")
        nc.ensure_stream("L", ["l.>"], max_msgs=3, max_age=3600)
        got = nc.pull("L", "c1", "l.>", ack_wait=1.0).fetch(10, timeout=1)
        assert [d.data for d in got] == [b"m2", b"m3", b"m4"]  # the oldest went first
        nc.publish("l.a", b"m5", msg_id="m5")
        nc.ensure_stream("L", ["l.>"], max_msgs=3, max_age=3600)  # the same: kept as it is
        got = nc.pull("L", "c2", "l.>", ack_wait=1.0).fetch(10, timeout=1)
        assert [d.data for d in got] == [b"m3", b"m4", b"m5"]
    finally:
        nc.close()
