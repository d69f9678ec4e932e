"""The store: send, find and read mail, holds and counts.

Send is write tmp, fsync, link into new, unlink tmp, fsync new: a crash leaves
either nothing in new/ or the whole message, and once the link is made the
message counts as sent (nothing after it can turn a send into "not sent").
Claiming and delivering are cmux/mail/claims.py; dead letters
cmux/mail/deadletter.py; the folders themselves cmux/mail/maildir.py
(mailbox/README.md is the public description of all of it).

Every entry is opened and loaded one at a time, and only as a regular file
(maildir.read_entry); paths are built only from names checked against the
schema. Paths are strings; on ``tools/mailbox send`` this module and what
it imports stay off ``re``, ``typing``, ``pathlib`` and ``json``
(docs/PERFORMANCE.md).
"""

from __future__ import annotations

import os
import time

from cmux import identity
from cmux.errors import (
    ConfigError,
    EmptyMessage,
    InvalidSender,
    MessageLoop,
    MessageTooLarge,
    StorageError,
    UnknownRecipient,
)
from cmux.fsutil import atomic_write, fsync_dir
from cmux.mail import maildir
from cmux.mail.maildir import SEEN, SUFFIX, BadEntry, note, read_entry
from cmux.mail.message import KINDS, MalformedMessage, Message, check_paths, valid_id, valid_name
from cmux.paths import DEADLETTER, HUMAN, SUPERVISOR

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

    from cmux.config import Config
    from cmux.paths import DataRoot

# A reply sent this soon after the message it answers counts as one more hop
# in a conversation; past the depth limit the hop goes to deadletter.
REPLY_WINDOW = 300.0


def ensure(data: DataRoot, agent: str) -> str:
    """Make ``agent``'s mailbox: from now on it is a recipient."""
    for folder in (maildir.tmp_dir, maildir.new_dir, maildir.cur_dir):
        os.makedirs(folder(data, agent), exist_ok=True)
    return maildir.box(data, agent)


def known(data: DataRoot, agent: str) -> bool:
    if not valid_name(agent) or agent == DEADLETTER:
        return False
    return maildir.has_new(data, agent)


def recipients(data: DataRoot) -> list[str]:
    return sorted(n for n in maildir.box_names(data) if maildir.has_new(data, n))


def pending(data: DataRoot, agent: str) -> list[str]:
    """Names in new/, oldest first."""
    try:
        return sorted(n for n in os.listdir(maildir.new_dir(data, agent)) if not n.startswith("."))
    except FileNotFoundError:
        return []


def claimed(data: DataRoot, agent: str) -> list[str]:
    """Claimed but never marked delivered (to deliver again after a crash)."""
    try:
        return sorted(
            n
            for n in os.listdir(maildir.cur_dir(data, agent))
            if not n.endswith(SEEN) and not n.startswith(".")
        )
    except FileNotFoundError:
        return []


def parse(path: str, agent: str, name: str) -> Message:
    """Read and check one entry of ``agent``'s mailbox: a regular file, a valid
    message (message.from_json), addressed to this box, named after its id."""
    msg = Message.from_json(read_entry(path))
    if msg.to != agent:
        raise MalformedMessage(f"it is addressed to {msg.to!r} but sits in {agent!r}'s mailbox")
    if name.removesuffix(SEEN) != msg.id + SUFFIX:
        raise MalformedMessage(f"its file name {name!r} does not match its id {msg.id!r}")
    return msg


# -- sending ------------------------------------------------------------------------------


def deliver_to_new(data: DataRoot, msg: Message, *, sync_dir: bool = True) -> str:
    """The atomic Maildir write: tmp, fsync, link into new/, unlink, fsync new/
    (without ``sync_dir`` the caller fsyncs new/ itself, once for many)."""
    check_paths(msg)
    new = maildir.new_dir(data, msg.to)
    tmp = os.path.join(maildir.tmp_dir(data, msg.to), f"{msg.id}{SUFFIX}")
    dest = os.path.join(new, f"{msg.id}{SUFFIX}")
    raw = msg.to_json().encode()
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            view = memoryview(raw)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.link(tmp, dest)
    except OSError as exc:
        _unlink(tmp)
        raise maildir.storage_error(tmp, exc) from exc
    # Linked into new/: the message is sent. What follows is tidying, and a
    # failure of it (a full disk, an I/O error) must not tell the sender otherwise.
    try:
        _unlink(tmp)
        if sync_dir:
            fsync_dir(new)
    except OSError:
        pass
    return dest


def _unlink(path: str) -> None:
    """Remove ``path`` if it is there; other errors are the caller's to ignore."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _infer_depth(data: DataRoot, sender: str, to: str) -> tuple[int, str | None]:
    """Depth of a reply: one more than the last message ``sender`` got from ``to``."""
    cur = maildir.cur_dir(data, sender)
    try:
        names = sorted(os.listdir(cur), reverse=True)
    except FileNotFoundError:
        return 0, None
    now = time.time()
    for name in names[:50]:
        path = os.path.join(cur, name)
        if not name.endswith((SUFFIX, SUFFIX + SEEN)):
            continue
        try:
            if now - os.lstat(path).st_mtime > REPLY_WINDOW:
                break
            m = parse(path, sender, name)
        except (OSError, BadEntry, MalformedMessage):
            continue
        if m.sender == to:
            return m.depth + 1, m.id
    return 0, None


def find(data: DataRoot, agent: str, msg_id: str) -> Message | None:
    """The message ``msg_id`` in ``agent``'s mailbox, or None (also for an id or
    a name that could not name a file).

    Looked for in the order a message moves (new/, claimed in cur/, delivered
    in cur/ with the S flag), so one that the router moves on meanwhile is
    found at its next place rather than missed between two looks."""
    if not valid_name(agent) or not valid_id(msg_id):
        return None
    cur, new = maildir.cur_dir(data, agent), maildir.new_dir(data, agent)
    for folder, name in (
        (new, msg_id + SUFFIX),
        (cur, msg_id + SUFFIX),
        (cur, msg_id + SUFFIX + SEEN),
    ):
        try:
            return parse(os.path.join(folder, name), agent, name)
        except (OSError, BadEntry, MalformedMessage):
            continue
    return None


def send(
    cfg: Config,
    *,
    to: str,
    body: str,
    sender: str,
    kind: str = "message",
    subject: str = "",
    reply_to: str | None = None,
) -> Message:
    """Store a message for ``to``; raises for an unknown recipient, an empty or
    oversized body, an invalid sender name or reply id, or a full disk (then
    nothing is stored). Returning means the message is stored. Past the depth
    limit the message goes to deadletter, the supervisor is told, and
    MessageLoop says so to the sender."""
    data = cfg.data
    identity.check_sender(cfg, sender)  # an agent signs only as itself (cmux/identity.py)
    if kind not in KINDS:
        raise EmptyMessage(f"unknown kind {kind!r}", f"use one of {', '.join(KINDS)}")
    if not known(data, to):
        hint = ", ".join(recipients(data)) or "none yet"
        raise UnknownRecipient(f"no agent named {to!r} to send to", f"known recipients: {hint}")
    if not body.strip():
        raise EmptyMessage("the message is empty", 'say something: mailbox send NAME "text"')
    size = len(body.encode())
    if size > cfg.max_body_bytes:
        raise MessageTooLarge(
            f"the message is {size} bytes, over the limit of {cfg.max_body_bytes}",
            "write it to a file and send its path instead",
        )
    if not valid_name(sender):
        raise InvalidSender(
            f"invalid sender name {sender[:40]!r}",
            "$CMUX_AGENT must be an agent name: lowercase letters, digits, '-' or '_'",
        )
    if reply_to is not None and not valid_id(reply_to):
        raise InvalidSender(
            f"invalid message id {reply_to[:80]!r} to reply to",
            "give the id from a message's header line: [cmux mail <id> from ...]",
        )
    for text in (body, subject):
        try:
            text.encode()
        except UnicodeEncodeError:
            raise EmptyMessage(
                "the message is not valid text (it holds an invalid surrogate)",
                "send UTF-8 text",
            ) from None
    if cfg.depth_limit < 0:
        raise ConfigError(
            f"[mail] depth_limit is {cfg.depth_limit}: it must be 0 or more",
            "set it in cmux.toml (8 by default)",
        )
    depth = 0
    if reply_to:
        parent = find(data, sender, reply_to)
        depth = parent.depth + 1 if parent else 0
    elif sender not in (HUMAN, "cmux"):
        depth, reply_to = _infer_depth(data, sender, to)
    msg = Message(
        to=to, body=body, sender=sender, kind=kind, subject=subject, depth=depth, reply_to=reply_to
    )
    if depth > cfg.depth_limit:
        reason = (
            f"reply depth {depth} is past the limit of {cfg.depth_limit}: a message loop between "
            f"{sender} and {to}?"
        )
        from cmux.mail.deadletter import deadletter

        where = deadletter(data, msg.id + SUFFIX, msg.to_json().encode(), reason, original_to=to)
        told = _notify_loop(cfg, msg)
        raise MessageLoop(
            f"not delivered to {to}: {reason} The message is in mailbox/deadletter/"
            f"{os.path.basename(where)}" + (f" and {told} was told." if told else "."),
            "stop answering this conversation automatically; to start afresh, send a new "
            "message (not a reply) once the loop is sorted out",
        )
    deliver_to_new(data, msg)
    note(
        data,
        "send",
        to,
        id=msg.id,
        sender=sender,
        kind=kind,
        bytes=size,
        depth=depth,
        **identity.origin(),
    )
    return msg


def _notify_loop(cfg: Config, msg: Message) -> str | None:
    """Tell the supervisor (or the person) about a stopped loop; returns who, if anyone."""
    target = (
        SUPERVISOR
        if known(cfg.data, SUPERVISOR) and SUPERVISOR not in (msg.sender, msg.to)
        else HUMAN
    )
    if not known(cfg.data, target):
        return None
    body = (
        f"Stopped a message loop: {msg.sender} -> {msg.to} reached reply depth {msg.depth} "
        f"(limit {cfg.depth_limit}). Message {msg.id} is in mailbox/deadletter/. "
        f"Sort it out with them directly."
    )
    note_msg = Message(to=target, sender="cmux", kind="notice", body=body)
    try:
        deliver_to_new(cfg.data, note_msg)
    except StorageError:
        return None
    note(cfg.data, "send", target, id=note_msg.id, sender="cmux", kind="notice")
    return target


# -- reading ------------------------------------------------------------------------------


def read_all(data: DataRoot, agent: str) -> list[Message]:
    """Every valid message in the mailbox, delivered or not, oldest first.
    (Bad entries are skipped here; delivery moves them to deadletter.)"""
    out: list[tuple[str, Message]] = []
    for folder in (maildir.cur_dir(data, agent), maildir.new_dir(data, agent)):
        try:
            names = os.listdir(folder)
        except FileNotFoundError:
            continue
        for n in names:
            if n.startswith("."):
                continue
            try:
                out.append((n, parse(os.path.join(folder, n), agent, n)))
            except (OSError, BadEntry, MalformedMessage):
                continue
    out.sort(key=lambda t: t[1].id)
    return [m for _, m in out]


def unread(data: DataRoot, agent: str) -> list[Message]:
    """The valid messages still in new/, oldest first, left where they are
    (``cmux inbox --peek``)."""
    msgs = read_all(data, agent)
    new_ids = {n.removesuffix(SUFFIX) for n in pending(data, agent)}
    return [m for m in msgs if m.id in new_ids]


# -- holds and counts ---------------------------------------------------------------


def set_hold(data: DataRoot, agent: str, reason: str | None) -> bool:
    """Record why mail for ``agent`` is held (None clears). True if it changed."""
    path = maildir.held_file(data, agent)
    old = hold_reason(data, agent)
    if old == (reason or None):
        return False
    if reason:
        atomic_write(path, reason + "\n")
        note(data, "hold", agent, reason=reason, waiting=len(pending(data, agent)))
    else:
        _unlink(path)
        note(data, "release", agent)
    return True


def hold_reason(data: DataRoot, agent: str) -> str | None:
    try:
        raw = read_entry(maildir.held_file(data, agent))
    except FileNotFoundError:
        return None
    except (OSError, BadEntry):
        return "the held file is not readable"
    return raw.decode("utf-8", errors="replace").strip() or None


def pending_count(data: DataRoot, agent: str) -> int:
    return len(pending(data, agent)) + len(claimed(data, agent))


def counts(data: DataRoot, agents: Iterable[str]) -> dict[str, dict[str, int]]:
    """Per agent: mail not yet delivered, and how much of it is held."""
    out = {}
    for a in agents:
        n = pending_count(data, a)
        out[a] = {"pending": n, "held": n if hold_reason(data, a) else 0}
    return out
