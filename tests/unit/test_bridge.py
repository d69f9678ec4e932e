"""The cluster bridge's decisions (cmux/cluster/bridge.py) and the receiving
store's dedupe (cmux/mail/arrivals.py), on real files, without NATS."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cmux.cluster import bridge
from cmux.config import Config
from cmux.delivery.router import Router
from cmux.mail import arrivals, claims, maildir, store
from cmux.mail.message import Message
from cmux.paths import DataRoot


def test_where_an_agent_lives() -> None:
    records = {"w1": {"name": "w1"}, "w2": {"name": "w2", "host": "b"}, "w3": {"host": "a"}}
    keys = ["b.w5", "a.w6", "c.w1", "b.w7", "c.w7", "bad key", "b.NOT_A_NAME"]
    assert bridge.locations("a", records, keys) == {
        "w1": "a",  # a record here without host: here, whatever a key says
        "w2": "b",
        "w3": "a",
        "w5": "b",
        "w7": "b",  # two claims: the first host in sorted order, on every node
    }


def test_spool_markers_follow_where_agents_live() -> None:
    where = {"w1": "a", "w2": "b", "w3": "c"}
    marked = {"w1": "b", "w2": "b", "w4": "c", "human": None}
    mark, unmark = bridge.spool_changes("a", where, marked)
    assert mark == {"w3": "c"}  # w2 is marked already
    assert unmark == ["w1"]  # w1 lives here now; w4, unknown now, stays a spool


def test_to_publish_goes_oldest_first_across_boxes_and_holds_later_ids() -> None:
    t = 0x18ED3000_00000000
    ids = [f"{t + n:016x}-1-aaaaaa" for n in range(4)]
    pending = {
        "w1": [f"{ids[2]}.json", f"{ids[0]}.json"],
        "w2": [f"{ids[1]}.json", f"{ids[3]}.json"],
    }
    pending["w2"].append(".hidden.json")
    pending["w3"] = ["custom-id.json"]  # not new_id's form: never held back
    spools = {"w1": "b", "w2": "c", "w3": "b"}
    out = bridge.to_publish(spools, pending, before=f"{t + 3:016x}")
    assert [(o.agent, o.host, o.name) for o in out] == [
        ("w1", "b", f"{ids[0]}.json"),
        ("w2", "c", f"{ids[1]}.json"),
        ("w1", "b", f"{ids[2]}.json"),
        ("w3", "b", "custom-id.json"),
    ]  # ids[3] was made after the listing began: next round


def test_the_publishing_lane_is_the_sender() -> None:
    m1 = Message(to="b1", body="x", sender="a1")
    m2 = Message(to="b2", body="y", sender="a1")
    m3 = Message(to="b1", body="z", sender="a2")
    lanes = [bridge.lane(m.to_json().encode()) for m in (m1, m2, m3)]
    assert lanes[0] == lanes[1] != lanes[2]  # one sender: one lane, whatever the box
    # what names no sender shares one lane (one at a time), never a sender's
    assert bridge.lane(b"not json") == bridge.lane(b"[1]") == bridge.lane(b'{"from": 3}') == ""
    assert "" not in lanes


@pytest.mark.parametrize(
    ("outcome", "ack"),
    [("stored", True), ("duplicate", True), ("deadlettered", True), ("failed", False)],
)
def test_the_ack_rule(outcome: bridge.Outcome, ack: bool) -> None:
    assert bridge.decide_ack(outcome) is ack


def test_decide_receipt() -> None:
    m = Message(to="w1", body="x", sender="s")
    assert bridge.decide_receipt("w1", m.id, m).action == "store"
    assert bridge.decide_receipt("w1", None, m).action == "store"
    assert bridge.decide_receipt("w2", m.id, m).action == "deadletter"
    assert bridge.decide_receipt("w1", "other", m).action == "deadletter"
    assert bridge.decide_receipt(None, m.id, m).action == "deadletter"
    assert bridge.decide_receipt("w1", "x", None, "not JSON").action == "deadletter"


def test_subjects_and_keys() -> None:
    assert bridge.mail_subject("p1", "b", "w1") == "cmux.p1.mail.b.w1"
    assert bridge.subject_agent("cmux.p1.mail.b.w1", "p1", "b") == "w1"
    assert bridge.subject_agent("cmux.p1.mail.c.w1", "p1", "b") is None
    assert bridge.subject_agent("cmux.p1.mail.b.W!", "p1", "b") is None
    assert bridge.split_key("host-2.w1") == ("host-2", "w1")
    assert bridge.split_key("w1") is None
    assert (
        not bridge.valid_token("a.b") and not bridge.valid_token("") and bridge.valid_token("b-2")
    )


def test_arrival_writes_only_an_id_seen_nowhere() -> None:
    assert arrivals.arrival([False, False, False])
    assert not arrivals.arrival([False, True, False])
    assert not arrivals.arrival(iter([True]))


def test_the_same_id_twice_is_one_file_wherever_the_first_went(data: DataRoot) -> None:
    m = Message(to="w1", body="hello", sender="s1")
    assert arrivals.receive(data, m) is True
    assert arrivals.receive(data, m) is False  # in new/
    assert store.pending(data, "w1") == [f"{m.id}.json"]
    # claimed by the router (cur/), then delivered (cur/ with :2,S): still a duplicate
    (loaded,) = claims.take(data, "w1")
    assert arrivals.receive(data, m) is False
    claims.mark_delivered(loaded.path)
    assert arrivals.receive(data, m) is False
    assert store.pending(data, "w1") == []
    assert os.listdir(maildir.cur_dir(data, "w1")) == [f"{m.id}.json:2,S"]
    # a crashed earlier write left its tmp file: the next one still lands
    m2 = Message(to="w1", body="again", sender="s1")
    Path(maildir.tmp_dir(data, "w1"), f"{m2.id}.json").write_text("half")
    assert arrivals.receive(data, m2) is True
    assert store.find(data, "w1", m2.id) == m2


def test_receive_of_bad_bytes_is_a_dead_letter_and_acked(data: DataRoot) -> None:
    data.ensure()
    assert bridge.receive(data, "w1", "abc", b"{not json") == "deadlettered"
    m = Message(to="w2", body="x", sender="s")
    assert bridge.receive(data, "w1", m.id, m.to_json().encode()) == "deadlettered"
    assert len([n for n in os.listdir(data.deadletter_path) if n.endswith(".reason")]) == 2
    assert store.pending(data, "w1") == [] and store.pending(data, "w2") == []


def test_a_spool_box_is_marked_before_it_takes_mail_and_the_router_leaves_it(
    cfg: Config,
) -> None:
    data = cfg.data
    bridge.mark_spool(data, "w9", "b")
    assert maildir.remote_host(data, "w9") == "b" and store.known(data, "w9")
    msg = store.send(cfg, to="w9", body="for another host", sender="human")
    # the router would deadletter mail for an agent it has no record of; a spool it leaves
    router = Router.__new__(Router)
    router.data = data
    router.deliver_agent("w9")
    assert store.pending(data, "w9") == [f"{msg.id}.json"]
    item = bridge.Outgoing("w9", "b", f"{msg.id}.json")
    assert bridge.read_spooled(data, item) == msg.to_json().encode()
    bridge.mark_sent(data, item)
    assert store.pending(data, "w9") == []
    assert os.listdir(maildir.sent_dir(data, "w9")) == [f"{msg.id}.json"]
    bridge.unmark_spool(data, "w9")
    assert maildir.remote_host(data, "w9") is None


def test_the_monitor_starts_a_node_only_with_a_cluster(cfg: Config) -> None:
    from cmux.monitor import daemons_for

    assert "node" not in [p.name for p in daemons_for(cfg)]
    clustered = cfg.replace(raw={**cfg.raw, "cluster": {"nats": "nats://10.0.0.1:4222"}})
    (node,) = [p for p in daemons_for(clustered) if p.name == "node"]
    assert node.argv[-1] == "node"


def test_a_batch_is_stored_in_order_once_each(data: DataRoot) -> None:
    there = Message(to="w1", body="there already", sender="s1")
    assert arrivals.receive(data, there) is True
    a, b = Message(to="w1", body="a", sender="s1"), Message(to="w2", body="b", sender="s2")
    Path(maildir.tmp_dir(data, "w1"), f"{a.id}.json").write_text("half")  # a crashed try
    got = arrivals.receive_many(data, [a, there, b, a])
    assert got == [True, False, True, False]
    assert sorted(store.pending(data, "w1")) == sorted([f"{a.id}.json", f"{there.id}.json"])
    assert store.find(data, "w1", a.id) == a and store.find(data, "w2", b.id) == b
    assert os.listdir(maildir.tmp_dir(data, "w1")) == []
    outcomes = bridge.receive_batch(
        data, [("w2", b.id, b.to_json().encode()), ("w2", "x", b"{"), ("w3", None, b"[]")]
    )
    assert outcomes == ["duplicate", "deadlettered", "deadlettered"]


def test_the_node_reads_its_settings_from_the_cluster_section(cfg: Config) -> None:
    from cmux.cluster.node import project_id, settings_for
    from cmux.config import load_config
    from cmux.errors import ConfigError

    with pytest.raises(ConfigError) as none:
        settings_for(cfg)
    assert none.value.hint and "[cluster] nats" in none.value.hint
    toml = Path(cfg.project) / "cmux.toml"
    toml.write_text(
        toml.read_text()
        + '\n[cluster]\nnats = "nats://10.0.0.1:4222"\ntoken = "t0k"\nhost = "build2"\n'
        + "heartbeat = 0.5\nhost_timeout = 30\n"
    )
    s = settings_for(load_config(cfg.project))
    assert (s.host, s.nats.url, s.nats.token, s.heartbeat, s.host_timeout) == (
        "build2",
        "nats://10.0.0.1:4222",
        "t0k",
        0.5,
        30.0,
    )
    # every clone of the trunk names the project alike: its root commit
    assert s.project == project_id(cfg) and len(s.project) == 12
    assert s.replicas == 1  # [cluster] replicas: one copy unless told
    toml.write_text(toml.read_text() + "replicas = 3\n")
    assert settings_for(load_config(cfg.project)).replicas == 3
    assert settings_for(cfg, url="nats://h:1", host="x").host == "x"
    with pytest.raises(ConfigError):
        settings_for(cfg, url="nats://h:1", host="a.b")


def test_a_delivery_lost_between_servers_is_a_gap_in_the_consumer_sequence() -> None:
    lost = bridge.deliveries_lost
    assert not lost(None, [7, 5, 6])  # a fresh start: any run, in any order
    assert lost(None, [5, 7])  # 6 went out and never came
    assert not lost(4, [5, 6]) and not lost(4, [6, 5])
    assert lost(4, [6, 7])  # 5 lost: taking 6 and 7 would put them before it
    assert not lost(9, [8, 9])  # a new consumer leader numbering again: no gap
    assert not lost(9, [8, 10, 11]) and lost(9, [8, 11])
    assert not lost(3, [])


def test_events_go_many_to_a_message_and_a_repeat_makes_the_same_ids() -> None:
    lines = [f'{{"event": "e{i}", "pad": "{"x" * 20}"}}'.encode() for i in range(10)]
    chunks = bridge.events_chunks(lines, limit=100)
    # every line once, in order, split on newlines as view.follow_events reads them
    assert [line for payload, _ in chunks for line in payload.split(b"\n")] == lines
    assert all(len(payload) <= 100 for payload, _ in chunks) and len(chunks) > 1
    ids = [mid for _, mid in chunks]
    first = len(chunks[0][0].split(b"\n"))
    assert ids[0] == f"0+{first}" and ids[1].startswith(f"{first}+") and len(set(ids)) == len(ids)
    assert bridge.events_chunks(lines, limit=100) == chunks  # published again: dropped by id
    grown = bridge.events_chunks([*lines, b'{"event": "late"}'], limit=100)
    assert grown[-1][1] != ids[-1]  # the last chunk grew: a new id, its lines not lost
    assert bridge.events_chunks([b"x" * 300, b"y"], limit=100) == [
        (b"x" * 300, "0+1"),
        (b"y", "1+1"),
    ]
    assert bridge.events_chunks([]) == []


def test_a_publish_moves_each_file_to_sent_and_notes_each_in_one_append(cfg: Config) -> None:
    from cmux import events

    data = cfg.data
    for agent in ("w1", "w2"):
        bridge.mark_spool(data, agent, "b")
    msgs = [store.send(cfg, to=f"w{1 + i % 2}", body=f"m{i}", sender="human") for i in range(5)]
    items = [bridge.Outgoing(m.to, "b", f"{m.id}.json") for m in msgs]
    bridge.mark_sent(data, items[0])  # its PubAck came before, the move lost to a crash
    os.link(
        os.path.join(maildir.sent_dir(data, "w1"), items[0].name),
        os.path.join(maildir.new_dir(data, "w1"), items[0].name),
    )
    _, offset = events.read(data)
    bridge.mark_sent_many(data, items)
    maildir.note_many(
        data, [("cluster-sent", i.agent, {"id": i.name[:-5], "host": "b"}) for i in items]
    )
    assert store.pending(data, "w1") == [] and store.pending(data, "w2") == []
    assert sorted(os.listdir(maildir.sent_dir(data, "w1"))) == sorted(
        i.name for i in items if i.agent == "w1"
    )
    noted, _ = events.read(data, offset=offset)
    assert [(e["event"], e["agent"], e["id"]) for e in noted] == [
        ("cluster-sent", m.to, m.id) for m in msgs
    ]


def test_every_reader_gets_each_event_of_a_message_of_several() -> None:
    import json

    from cmux.cluster.view import merge_events, payload_events

    evs = [{"ts": f"2026-01-01T10:00:0{i}.000Z", "event": f"e{i}", "host": "b"} for i in range(6)]
    chunks = bridge.events_chunks([json.dumps(e).encode() for e in evs], limit=120)
    assert len(chunks) > 1
    assert [e for payload, _ in chunks for e in payload_events(payload)] == evs
    assert payload_events(b'{"event": "one", "host": "b"}') == [{"event": "one", "host": "b"}]
    assert payload_events(b'not json\n[1]\n{"event": "x"}') == [{"event": "x"}]
    local = [{"ts": "2026-01-01T10:00:02.500Z", "event": "mine"}]
    got = merge_events(local, [p for p, _ in chunks], "a")
    assert [(e["event"], e["host"]) for e in got] == [
        *[(f"e{i}", "b") for i in range(3)],
        ("mine", "a"),
        *[(f"e{i}", "b") for i in range(3, 6)],
    ]
    assert [e["event"] for e in merge_events(local, [p for p, _ in chunks], "a", last=2)] == [
        "e4",
        "e5",
    ]
