"""What the node daemon keeps and for how long (cmux/cluster/prune.py: the
streams' limits, the spools' sent/), and the reply depth carried unchanged
across hosts. Real files, no NATS."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from cmux.cluster import bridge, prune
from cmux.config import Config, load_config
from cmux.errors import ConfigError
from cmux.mail import maildir, store
from cmux.mail.message import Message
from cmux.paths import DataRoot

pytestmark = pytest.mark.timeout(30)

HOUR_NS = 3600 * 10**9
NOW_NS = 0x18ED3000_00000000


def sent_name(age_ns: int, tail: str = "1f-abcdef") -> str:
    return f"{NOW_NS - age_ns:016x}-{tail}.json"


# -- sent/ ------------------------------------------------------------------------------


def test_only_sent_files_older_than_keep_sent_by_their_id_go() -> None:
    old, young = sent_name(25 * HOUR_NS), sent_name(23 * HOUR_NS)
    names = [young, old, "notes.txt", ".hidden.json", "not-an-id.json", sent_name(48 * HOUR_NS)]
    assert prune.to_drop(names, NOW_NS, 24 * 3600) == sorted([old, sent_name(48 * HOUR_NS)])
    # never less than the stream's duplicate window, whatever keep says
    five_min = sent_name(300 * 10**9)
    assert prune.to_drop([five_min], NOW_NS, 1.0) == []
    assert prune.to_drop([five_min], NOW_NS + 301 * 10**9, 1.0) == [five_min]


def test_pruning_is_due_once_then_only_every_prune_every() -> None:
    assert prune.due(None, 5.0)
    assert not prune.due(5.0, 5.0 + prune.PRUNE_EVERY - 1)
    assert prune.due(5.0, 5.0 + prune.PRUNE_EVERY)


def test_prune_sent_removes_the_old_files_of_every_box_and_nothing_else(
    data: DataRoot,
) -> None:
    bridge.mark_spool(data, "w9", "b")
    sent = Path(maildir.sent_dir(data, "w9"))
    old, young = sent_name(30 * HOUR_NS), sent_name(HOUR_NS)
    for name in (old, young, "keep-me.json"):
        (sent / name).write_text("{}")
    (sent / sent_name(31 * HOUR_NS, "dir")).mkdir()  # not a file: not ours to remove
    store.ensure(data, "w1")
    (Path(maildir.cur_dir(data, "w1")) / old).write_text("{}")  # cur/ is not sent/
    assert prune.prune_sent(data, maildir.box_names(data), NOW_NS, 24 * 3600) == 1
    assert sorted(os.listdir(sent)) == sorted(
        [young, "keep-me.json", sent_name(31 * HOUR_NS, "dir")]
    )
    assert os.listdir(maildir.cur_dir(data, "w1")) == [old]


def test_the_node_prunes_sent_at_once_then_at_most_every_prune_every(cfg: Config) -> None:
    from cmux.cluster.node import Node, settings_for

    toml = Path(cfg.project) / "cmux.toml"
    toml.write_text(toml.read_text() + '\n[cluster]\nnats = "nats://127.0.0.1:1"\nkeep_sent = 1\n')
    loaded = load_config(cfg.project)
    node = Node(loaded, settings_for(loaded))
    assert node.s.keep_sent == 3600.0
    bridge.mark_spool(cfg.data, "w9", "b")
    sent = Path(maildir.sent_dir(cfg.data, "w9"))
    now = time.monotonic()

    def sent_before(seconds: float) -> str:
        ns = int((time.time() - seconds) * 1e9)
        name = f"{ns:016x}-1-abcdef.json"
        (sent / name).write_text("{}")
        return name

    gone, kept = sent_before(2 * 3600), sent_before(60)
    node.housekeeping(now)
    assert os.listdir(sent) == [kept]
    later = sent_before(3 * 3600)
    node.housekeeping(now + 60)  # not yet: at most every PRUNE_EVERY
    assert sorted(os.listdir(sent)) == sorted([kept, later])
    node.housekeeping(now + prune.PRUNE_EVERY + 1)
    assert os.listdir(sent) == [kept] and gone not in os.listdir(sent)


def test_keep_sent_below_the_duplicate_window_is_refused(cfg: Config) -> None:
    toml = Path(cfg.project) / "cmux.toml"
    toml.write_text(
        toml.read_text() + '\n[cluster]\nnats = "nats://127.0.0.1:1"\nkeep_sent = 0.1\n'
    )
    with pytest.raises(ConfigError) as bad:
        load_config(cfg.project)
    assert "keep_sent" in str(bad.value) and "0.25" in str(bad.value)


def test_every_stream_has_its_limits_and_the_journal_keeps_everything() -> None:
    mail, events, journal = (
        prune.STREAMS[s] for s in (bridge.MAIL_STREAM, bridge.EVENTS_STREAM, bridge.JOURNAL_STREAM)
    )
    assert mail.max_age == 14 * prune.DAY and mail.duplicate_window == 600
    assert events.max_age == 7 * prune.DAY and events.max_msgs == 1_000_000
    assert (journal.max_age, journal.max_msgs) == (0.0, -1)  # a joining host gets it all


# -- the reply depth across hosts -------------------------------------------------------


def test_a_reply_depth_travels_unchanged_and_counts_as_on_one_host(cfg: Config) -> None:
    """The depth is a field of the message: the bridge stores the bytes it
    got, so a reply on host b to mail from host a counts one more hop, as
    it would on one host."""
    data = cfg.data
    deep = Message(to="w1", body="a reply far down a conversation", sender="w2", depth=5)
    assert bridge.receive(data, "w1", deep.id, deep.to_json().encode()) == "stored"
    assert store.find(data, "w1", deep.id).depth == 5  # type: ignore[union-attr]
    # the router delivers it (new/ -> cur/); w1 answers w2 within the reply window
    os.rename(
        os.path.join(maildir.new_dir(data, "w1"), f"{deep.id}.json"),
        os.path.join(maildir.cur_dir(data, "w1"), f"{deep.id}.json{maildir.SEEN}"),
    )
    reply = store.send(cfg, to="w2", body="and back", sender="w1")
    assert (reply.depth, reply.reply_to) == (6, deep.id)


def test_two_way_traffic_on_one_host_meets_the_depth_limit_as_across_hosts(
    cfg: Config,
) -> None:
    """Two agents each sending to the other while the other's mail is
    delivered: every message a hop of one exchange, on one host too, so the
    ninth hop passes the default limit of 8 (docs/CLUSTER.md, "Reply depth")."""
    from cmux.errors import MessageLoop

    assert cfg.depth_limit == 8
    depths = []
    for hop in range(9):
        sender, to = ("w1", "w2") if hop % 2 == 0 else ("w2", "w1")
        msg = store.send(cfg, to=to, body=f"hop {hop}", sender=sender)
        depths.append(msg.depth)
        os.rename(  # the router delivers it
            os.path.join(maildir.new_dir(cfg.data, to), f"{msg.id}.json"),
            os.path.join(maildir.cur_dir(cfg.data, to), f"{msg.id}.json{maildir.SEEN}"),
        )
    assert depths == list(range(9))
    with pytest.raises(MessageLoop):
        store.send(cfg, to="w1", body="hop 9", sender="w2")
