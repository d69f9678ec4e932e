"""The bridge between the local Maildirs and JetStream: what the node daemon
(cmux/cluster/node.py) decides, as pure functions, beside the few acts on
the local files that carry those decisions out. No NATS here: the node
passes what it got from cmux/cluster/nats.py.

Names (docs/CLUSTER.md): stream CMUX_MAIL on ``cmux.<project>.mail.<host>.<agent>``,
CMUX_EVENTS on ``cmux.<project>.events.<host>``, CMUX_JOURNAL on
``cmux.<project>.journal``; KV CMUX_AGENTS (``<host>.<agent>``) and
CMUX_HOSTS (``<host>``).

The rules, each a function below:

- Where an agent lives (:func:`locations`): a local registry record without
  ``host`` (or with this host's name) is here; a record with another host,
  or another host's key in CMUX_AGENTS, is there. Here wins a conflict.
- Which boxes are spools (:func:`spool_changes`): the box of an agent that
  lives elsewhere carries a ``remote`` marker (maildir.remote_file) naming
  its host, written before its new/ exists, so the local router never types
  or deadletters that mail.
- What to publish (:func:`to_publish`): every file in a spool's new/, oldest
  first, one at a time per sender (:func:`lane`), senders side by side; it
  moves to sent/ only after its PubAck (:func:`mark_sent`).
- What to do with a delivery (:func:`decide_receipt`) and when to ack
  (:func:`decide_ack`): ack only once the message is fsynced in the
  recipient's new/ (cmux/mail/arrivals.py), or is already there (a duplicate,
  dropped), or was quarantined as undeliverable; never before.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from cmux.errors import StorageError
from cmux.mail import arrivals, maildir, store
from cmux.mail.deadletter import deadletter
from cmux.mail.message import MalformedMessage, Message, valid_id
from cmux.paths import DataRoot, valid_name

MAIL_STREAM = "CMUX_MAIL"
EVENTS_STREAM = "CMUX_EVENTS"
JOURNAL_STREAM = "CMUX_JOURNAL"
AGENTS_KV = "CMUX_AGENTS"
HOSTS_KV = "CMUX_HOSTS"


def valid_token(name: str) -> bool:
    """A host or project name that may be one token of a subject or key."""
    return 0 < len(name) <= 64 and all(c.isascii() and (c.isalnum() or c in "-_") for c in name)


def mail_subject(project: str, host: str, agent: str) -> str:
    return f"cmux.{project}.mail.{host}.{agent}"


def mail_filter(project: str, host: str) -> str:
    """Every subject of mail for ``host``'s agents (its consumer's filter)."""
    return f"cmux.{project}.mail.{host}.*"


def events_subject(project: str, host: str) -> str:
    return f"cmux.{project}.events.{host}"


EVENTS_CHUNK = 64 * 1024  # bytes of events in one CMUX_EVENTS message (NATS allows 1 MB)


def events_chunks(lines: list[bytes], limit: int = EVENTS_CHUNK) -> list[tuple[bytes, str]]:
    """One read of the events log as CMUX_EVENTS messages: the JSON lines
    joined by newlines, up to ``limit`` bytes a message (a longer line goes
    alone), each with its part of the Nats-Msg-Id: ``<first>+<count>``, the
    lines it holds. Publishing a read again (the node died before noting the
    offset) makes the same ids for the same lines, which JetStream drops; a
    chunk that grew since has another id (its first lines come twice: events
    are at least once). Readers split each message: view.payload_events."""
    out: list[tuple[bytes, str]] = []
    first, size = 0, 0
    for i, line in enumerate(lines):
        if i > first and size + len(line) > limit:
            out.append((b"\n".join(lines[first:i]), f"{first}+{i - first}"))
            first, size = i, 0
        size += len(line) + 1
    if first < len(lines):
        out.append((b"\n".join(lines[first:]), f"{first}+{len(lines) - first}"))
    return out


def journal_subject(project: str) -> str:
    return f"cmux.{project}.journal"


def agent_key(host: str, agent: str) -> str:
    return f"{host}.{agent}"


def split_key(key: str) -> tuple[str, str] | None:
    """(host, agent) of a CMUX_AGENTS key, or None for a key that is no such pair."""
    host, dot, agent = key.rpartition(".")
    if not dot or not valid_token(host) or not valid_name(agent):
        return None
    return host, agent


def subject_agent(subject: str, project: str, host: str) -> str | None:
    """The agent a mail subject for this host names, or None (not ours, or bad)."""
    prefix = f"cmux.{project}.mail.{host}."
    if not subject.startswith(prefix):
        return None
    agent = subject[len(prefix) :]
    return agent if valid_name(agent) else None


# -- where each agent lives -----------------------------------------------------------


def locations(
    me: str, records: Mapping[str, Mapping[str, object]], remote_keys: Iterable[str]
) -> dict[str, str]:
    """Agent -> the host it lives on. ``records`` are this host's registry
    records (raw JSON, by name; "host" may be missing: a record from before
    the cluster, local), ``remote_keys`` the keys of CMUX_AGENTS. A record
    here without another host wins over any key; among keys of other hosts
    for one name, the first host in sorted order (a name lives in one place;
    two claims are an operator's mistake, and every node picks the same)."""
    out: dict[str, str] = {}
    for key in sorted(remote_keys):
        pair = split_key(key)
        if pair is None or pair[0] == me:
            continue
        out.setdefault(pair[1], pair[0])
    for name, rec in records.items():
        host = rec.get("host")
        out[name] = host if isinstance(host, str) and host and host != me else me
    return out


def spool_changes(
    me: str, where: Mapping[str, str], marked: Mapping[str, str | None]
) -> tuple[dict[str, str], list[str]]:
    """(boxes to mark as spools for a host, boxes to unmark), given where each
    agent lives and each box's current marker (None: a local box)."""
    mark = {a: h for a, h in where.items() if h != me and marked.get(a) != h}
    unmark = sorted(a for a, h in marked.items() if h and where.get(a, h) == me)
    return mark, unmark


@dataclass(frozen=True)
class Outgoing:
    agent: str
    host: str
    name: str  # <id>.json in the spool's new/


def id_time(name: str) -> str | None:
    """The time of sending at the start of a message id made by
    message.new_id (16 hex digits of nanoseconds), or None for another id."""
    head = name[:16]
    if len(name) > 16 and name[16] == "-" and all(c in "0123456789abcdef" for c in head):
        return head
    return None


def to_publish(
    spools: Mapping[str, str], pending: Mapping[str, list[str]], before: str
) -> list[Outgoing]:
    """The spooled files to publish now, oldest first across all boxes, so one
    sender's messages to several agents are stored on the stream in the order
    they were sent. ``spools``: box -> the host it spools for; ``pending``:
    box -> names in new/, listed after the moment ``before`` (an id_time).

    Only ids made before ``before`` go now; later ones wait for the next
    round. That keeps each sender's order although the boxes are listed one
    after another: a sender makes its next id only after its last message
    was linked, so a message with an id from before the listing began has
    every earlier message of its sender already in a new/ when listed."""
    out: list[Outgoing] = []
    for agent in spools:
        for name in pending.get(agent, ()):
            if not name.endswith(maildir.SUFFIX) or name.startswith("."):
                continue
            t = id_time(name)
            if t is None or t < before:
                out.append(Outgoing(agent, spools[agent], name))
    out.sort(key=lambda o: (o.name, o.agent))
    return out


def lane(raw: bytes) -> str:
    """The publishing lane of a spooled file: its sender. Only each sender's
    order must hold on the stream, so messages of different senders may be
    in flight together (Nats.publish_many); a file that names no sender
    goes in the one lane "" (one at a time among such files)."""
    try:
        sender = json.loads(raw).get("from")
    except (ValueError, AttributeError):
        return ""
    return f"from:{sender}" if isinstance(sender, str) else ""


# -- receiving ---------------------------------------------------------------------------

Action = Literal["store", "deadletter"]


@dataclass(frozen=True)
class Receipt:
    action: Action
    reason: str = ""


def decide_receipt(
    subject_agent: str | None, header_id: str | None, msg: Message | None, error: str = ""
) -> Receipt:
    """What one delivered message becomes: stored in its recipient's Maildir,
    or (it can never be a message of that box) a dead letter."""
    if msg is None:
        return Receipt("deadletter", f"not a message: {error}")
    if subject_agent is None or msg.to != subject_agent:
        return Receipt(
            "deadletter", f"sent on a subject for {subject_agent!r}, addressed to {msg.to!r}"
        )
    if header_id is not None and header_id != msg.id:
        return Receipt("deadletter", f"its Nats-Msg-Id {header_id!r} is not its id {msg.id!r}")
    return Receipt("store")


Outcome = Literal["stored", "duplicate", "deadlettered", "failed"]


def decide_ack(outcome: Outcome) -> bool:
    """The ack rule: ack only when the message is durably here (just stored,
    or already stored: a duplicate) or durably set aside (a dead letter). A
    failure (a full disk, an I/O error) is not acked: JetStream delivers it
    again after the consumer's ack_wait."""
    return outcome in ("stored", "duplicate", "deadlettered")


def deliveries_lost(last: int | None, consumer_seqs: Iterable[int]) -> bool:
    """Whether a delivery was lost on the way before this batch: the server
    numbers every delivery of a consumer (``consumer_seqs``, redeliveries
    too) one after the other, so a number skipped since ``last`` (the
    highest this node got; None: from a fresh start, nothing to compare)
    is one that went out and never came, in a route between servers that
    broke (a server restarted, a link cut) while this node's own connection
    stayed up. Taking the batch then would store its messages before the
    lost one, which comes again only after ack_wait: out of its sender's
    order. Numbers at or below ``last`` (a new consumer leader numbering
    again) are no gap."""
    fresh = sorted({s for s in consumer_seqs if last is None or s > last})
    if not fresh:
        return False
    first = fresh[0] if last is None else last + 1
    return fresh != list(range(first, first + len(fresh)))


def _verdict(
    subject_agent: str | None, header_id: str | None, raw: bytes
) -> tuple[Receipt, Message | None]:
    try:
        msg: Message | None = Message.from_json(raw)
        error = ""
    except MalformedMessage as exc:
        msg, error = None, str(exc)
    return decide_receipt(subject_agent, header_id, msg, error), msg


def _deadletter(
    data: DataRoot,
    subject_agent: str | None,
    header_id: str | None,
    raw: bytes,
    why: Receipt,
    msg: Message | None,
) -> Outcome:
    known_id = msg.id if msg else header_id
    name = (known_id if known_id and valid_id(known_id) else "from-cluster") + ".json"
    try:
        deadletter(data, name, raw, f"from the cluster: {why.reason}", original_to=subject_agent)
    except (OSError, StorageError):
        return "failed"
    return "deadlettered"


def receive(
    data: DataRoot, subject_agent: str | None, header_id: str | None, raw: bytes
) -> Outcome:
    """Carry out :func:`decide_receipt` for one delivery; the outcome for :func:`decide_ack`."""
    return receive_batch(data, [(subject_agent, header_id, raw)])[0]


def receive_batch(
    data: DataRoot, batch: list[tuple[str | None, str | None, bytes]]
) -> list[Outcome]:
    """:func:`receive` for deliveries in stream order (subject's agent, its
    Nats-Msg-Id, the bytes): the messages stored together
    (arrivals.receive_many: durable when this returns), the rest dead letters."""
    out: list[Outcome] = ["failed"] * len(batch)
    to_store: list[tuple[int, Message]] = []
    for i, (agent, header_id, raw) in enumerate(batch):
        why, msg = _verdict(agent, header_id, raw)
        if why.action == "deadletter":
            out[i] = _deadletter(data, agent, header_id, raw, why, msg)
        else:
            assert msg is not None
            to_store.append((i, msg))
    try:
        results = arrivals.receive_many(data, [m for _, m in to_store])
    except (OSError, StorageError):
        return out
    for (i, _), r in zip(to_store, results, strict=True):
        out[i] = "failed" if isinstance(r, StorageError) else ("stored" if r else "duplicate")
    return out


# -- the spool on the sending host ---------------------------------------------------------


def mark_spool(data: DataRoot, agent: str, host: str) -> None:
    """Make ``agent``'s box a spool for ``host``: the marker first, then the
    folders, so no mail lands in it before the router knows to leave it."""
    from cmux.fsutil import atomic_write

    os.makedirs(maildir.box(data, agent), exist_ok=True)
    atomic_write(maildir.remote_file(data, agent), host + "\n")
    store.ensure(data, agent)
    os.makedirs(maildir.sent_dir(data, agent), exist_ok=True)


def unmark_spool(data: DataRoot, agent: str) -> None:
    """The agent lives here now: its box is the router's again."""
    try:
        os.unlink(maildir.remote_file(data, agent))
    except FileNotFoundError:
        pass


def spool_markers(data: DataRoot) -> dict[str, str | None]:
    return {n: maildir.remote_host(data, n) for n in maildir.box_names(data)}


def read_spooled(data: DataRoot, item: Outgoing) -> bytes | None:
    """The bytes of a spooled file, or None when it is gone or no regular file."""
    try:
        return maildir.read_entry(os.path.join(maildir.new_dir(data, item.agent), item.name))
    except (OSError, maildir.BadEntry):
        return None


def mark_sent(data: DataRoot, item: Outgoing) -> None:
    """After its PubAck: the spooled file moves from new/ to sent/."""
    mark_sent_many(data, [item])


def mark_sent_many(data: DataRoot, items: Iterable[Outgoing]) -> None:
    """:func:`mark_sent` for the files of one publish (each PubAck'd), in
    order; each box's sent/ made once, not per file."""
    dirs: dict[str, tuple[str, str]] = {}  # agent -> (new/, sent/)
    for item in items:
        if item.agent not in dirs:
            sent = maildir.sent_dir(data, item.agent)
            os.makedirs(sent, exist_ok=True)
            dirs[item.agent] = (maildir.new_dir(data, item.agent), sent)
        new, sent = dirs[item.agent]
        src = os.path.join(new, item.name)
        if maildir.link_over(src, os.path.join(sent, item.name)) == "taken":
            os.unlink(src)  # published before, the move lost to a crash: sent/ has it
