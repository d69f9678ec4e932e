"""The ack rule and the dedupe, step by step against a real nats-server: a
node that dies after storing a message but before its ack, or before storing
it, gets it again; after that the message is in the Maildir exactly once."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cmux.cluster import bridge
from cmux.mail.message import Message
from tests.cluster.hosts import PROJECT_ID, Host
from tests.cluster.natsd import NatsServer
from tests.helpers import wait_until

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def b(natsd: NatsServer, tmp_path: Path, isolated_env: dict[str, str]) -> Iterator[Host]:
    host = Host.make("b", tmp_path, isolated_env, natsd)
    host.agent("w1")
    try:
        yield host
    finally:
        host.kill_node()


def connect(natsd: NatsServer) -> Any:
    from cmux.cluster.nats import Nats, Settings

    nc = Nats.connect(Settings(url=natsd.url, token=natsd.token))
    nc.ensure_stream(bridge.MAIL_STREAM, [f"cmux.{PROJECT_ID}.mail.>"])
    return nc


def publish(nc: Any, msg: Message, *, with_id: bool = True) -> None:
    subject = bridge.mail_subject(PROJECT_ID, "b", msg.to)
    nc.publish(subject, msg.to_json().encode(), msg_id=msg.id if with_id else None)


def test_a_node_dead_before_its_ack_gets_the_message_again_and_keeps_it_once(
    b: Host, natsd: NatsServer
) -> None:
    nc = connect(natsd)
    # the consumer the node uses (its name and filter), made with a short ack_wait
    consumer = nc.pull(
        bridge.MAIL_STREAM, "mail-b", bridge.mail_filter(PROJECT_ID, "b"), ack_wait=1.0
    )
    stored, lost = (
        Message(to="w1", body="one", sender="s1"),
        Message(to="w1", body="two", sender="s1"),
    )
    publish(nc, stored)
    publish(nc, lost)
    first, second = consumer.fetch(2, timeout=2)
    # "the node": the first fsynced into new/, then it dies before the ack; the
    # second it dies holding, not stored at all
    assert bridge.receive(b.data, "w1", first.msg_id, first.data) == "stored"
    assert second.msg_id == lost.id and b.inbox_ids("w1") == [stored.id]
    nc.close()

    b.start_node()  # a real node: it waits the dead one's deliveries out, then takes them
    check = connect(natsd)
    c = check.pull(bridge.MAIL_STREAM, "mail-b", bridge.mail_filter(PROJECT_ID, "b"))
    wait_until(lambda: c.pending() == (0, 0), timeout=20, what="both acked")
    assert sorted(b.inbox_ids("w1")) == sorted([stored.id, lost.id])
    received = [e["id"] for e in b.events() if e["event"] == "cluster-received"]
    assert received == [lost.id]  # the first was there already: dropped, acked

    # the same message again, past JetStream's own duplicate window (no id):
    # the store drops it, the node acks it
    publish(check, stored, with_id=False)
    publish(check, stored)  # and within the window: JetStream drops it itself
    wait_until(lambda: c.pending() == (0, 0), timeout=10, what="the repeat acked")
    assert sorted(b.inbox_ids("w1")) == sorted([stored.id, lost.id])
    assert (
        json.loads((Path(b.data.mailbox_path("w1")) / "new" / f"{stored.id}.json").read_text())[
            "body"
        ]
        == "one"
    )
    check.close()
