"""The Maildir store: send, claim, mark delivered, hold, deadletter.

Layout (mailbox/README.md is the public description):

    mailbox/<agent>/tmp/<id>.json         being written
    mailbox/<agent>/new/<id>.json         sent, waiting for the router
    mailbox/<agent>/cur/<id>.json         claimed by a router, not yet delivered
    mailbox/<agent>/cur/<id>.json:2,S     delivered (or read, for `human`)
    mailbox/<agent>/held                  why mail is held (absent: not held)
    mailbox/deadletter/<id>.json          undeliverable, with <id>.json.reason

Send is write tmp, fsync, link into new, unlink tmp, fsync new: a crash leaves
either nothing in new/ or the whole message. Claim is a rename from new/ to
cur/: exactly one claimant wins. Delivery is at least once: whatever sits in
cur/ without the S flag is delivered again after a crash, with the same id.
"""

from __future__ import annotations

import errno
import json
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

from cmux import events, identity
from cmux.config import Config
from cmux.errors import EmptyMessage, MessageTooLarge, StorageError, UnknownRecipient
from cmux.fsutil import atomic_write, fsync_dir
from cmux.mail.message import KINDS, MalformedMessage, Message
from cmux.paths import DEADLETTER, HUMAN, SUPERVISOR, DataRoot

SUFFIX = ".json"
SEEN = ":2,S"
# A reply sent this soon after the message it answers counts as one more hop
# in a conversation; past the depth limit the hop goes to deadletter.
REPLY_WINDOW = 300.0


def box(data: DataRoot, agent: str) -> Path:
    return data.mailbox(agent)


def ensure(data: DataRoot, agent: str) -> Path:
    b = box(data, agent)
    for sub in ("tmp", "new", "cur"):
        (b / sub).mkdir(parents=True, exist_ok=True)
    return b


def known(data: DataRoot, agent: str) -> bool:
    if not agent or "/" in agent or agent.startswith(".") or agent == DEADLETTER:
        return False
    return (box(data, agent) / "new").is_dir()


def recipients(data: DataRoot) -> list[str]:
    try:
        return sorted(
            p.name
            for p in data.mailbox_dir.iterdir()
            if p.name != DEADLETTER and (p / "new").is_dir()
        )
    except FileNotFoundError:
        return []


def _storage(path: Path, exc: OSError) -> StorageError:
    if exc.errno == errno.ENOSPC:
        return StorageError(
            f"the disk is full: the message to {path.parent.parent.name} was not sent",
            "free some space and send it again; nothing was half written",
        )
    return StorageError(f"cannot store the message in {path.parent}: {exc.strerror}")


def deliver_to_new(data: DataRoot, msg: Message) -> Path:
    """The atomic Maildir write: tmp, fsync, link into new/, unlink, fsync new/."""
    b = box(data, msg.to)
    tmp = b / "tmp" / f"{msg.id}{SUFFIX}"
    dest = b / "new" / f"{msg.id}{SUFFIX}"
    raw = msg.to_json().encode()
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
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
        tmp.unlink(missing_ok=True)
        raise _storage(tmp, exc) from exc
    tmp.unlink(missing_ok=True)
    fsync_dir(dest.parent)
    return dest


def _infer_depth(data: DataRoot, sender: str, to: str) -> tuple[int, str | None]:
    """Depth of a reply: one more than the last message ``sender`` got from ``to``."""
    cur = box(data, sender) / "cur"
    try:
        names = sorted(os.listdir(cur), reverse=True)
    except FileNotFoundError:
        return 0, None
    now = time.time()
    for name in names[:50]:
        path = cur / name
        try:
            if now - path.stat().st_mtime > REPLY_WINDOW:
                break
            m = Message.from_json(path.read_bytes())
        except (OSError, MalformedMessage):
            continue
        if m.sender == to:
            return m.depth + 1, m.id
    return 0, None


def find(data: DataRoot, agent: str, msg_id: str) -> Message | None:
    b = box(data, agent)
    for sub, name in (
        ("cur", msg_id + SUFFIX + SEEN),
        ("cur", msg_id + SUFFIX),
        ("new", msg_id + SUFFIX),
    ):
        try:
            return Message.from_json((b / sub / name).read_bytes())
        except (OSError, MalformedMessage):
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
    oversized body, or a full disk. Past the depth limit the message goes to
    deadletter (and the supervisor is told) instead of the recipient."""
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
        deadletter(
            data,
            msg.id + SUFFIX,
            msg.to_json().encode(),
            f"reply depth {depth} is past the limit of {cfg.depth_limit}: a message loop between "
            f"{sender} and {to}?",
            original_to=to,
        )
        _notify_loop(cfg, msg)
        return msg
    deliver_to_new(data, msg)
    events.record(
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


def _notify_loop(cfg: Config, msg: Message) -> None:
    target = (
        SUPERVISOR
        if known(cfg.data, SUPERVISOR) and SUPERVISOR not in (msg.sender, msg.to)
        else HUMAN
    )
    if not known(cfg.data, target):
        return
    note = Message(
        to=target,
        sender="cmux",
        kind="notice",
        body=(
            f"Stopped a message loop: {msg.sender} -> {msg.to} reached reply depth {msg.depth} "
            f"(limit {cfg.depth_limit}). Message {msg.id} is in mailbox/deadletter/. "
            f"Sort it out with them directly."
        ),
    )
    deliver_to_new(cfg.data, note)
    events.record(cfg.data, "send", target, id=note.id, sender="cmux", kind="notice")


def deadletter(
    data: DataRoot, name: str, raw: bytes, reason: str, *, original_to: str | None = None
) -> Path:
    dl = data.deadletter
    dl.mkdir(parents=True, exist_ok=True)
    dest = dl / name
    atomic_write(dest, raw)
    atomic_write(
        dl / f"{name}.reason",
        json.dumps({"reason": reason, "to": original_to, "ts": events.now_iso()}) + "\n",
    )
    events.record(data, "deadletter", original_to, file=name, reason=reason)
    return dest


# -- the reading side ---------------------------------------------------------------


def pending(data: DataRoot, agent: str) -> list[str]:
    """Names in new/, oldest first."""
    try:
        return sorted(n for n in os.listdir(box(data, agent) / "new") if not n.startswith("."))
    except FileNotFoundError:
        return []


def claimed(data: DataRoot, agent: str) -> list[str]:
    """Claimed but never marked delivered (to deliver again after a crash)."""
    try:
        return sorted(
            n
            for n in os.listdir(box(data, agent) / "cur")
            if not n.endswith(SEEN) and not n.startswith(".")
        )
    except FileNotFoundError:
        return []


def claim(data: DataRoot, agent: str, name: str) -> Path | None:
    """Move new/<name> to cur/<name>. Returns None when someone else won."""
    b = box(data, agent)
    src, dst = b / "new" / name, b / "cur" / name
    try:
        os.rename(src, dst)
    except FileNotFoundError:
        return None
    return dst


def mark_delivered(path: Path) -> Path:
    dest = path.with_name(path.name + SEEN)
    os.rename(path, dest)
    return dest


class Loaded(NamedTuple):
    path: Path
    msg: Message


def load(data: DataRoot, agent: str, path: Path) -> Loaded | None:
    """Read a claimed file; a malformed one goes to deadletter and yields None."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        msg = Message.from_json(raw)
    except MalformedMessage as exc:
        deadletter(data, path.name, raw, f"malformed message file: {exc}", original_to=agent)
        path.unlink(missing_ok=True)
        return None
    return Loaded(path, msg)


def take(data: DataRoot, agent: str, *, limit: int | None = None) -> list[Loaded]:
    """Claim what waits in ``agent``'s new/, oldest first (rename: one winner)."""
    out: list[Loaded] = []
    for name in pending(data, agent):
        if limit is not None and len(out) >= limit:
            break
        path = claim(data, agent, name)
        if path is None:
            continue
        events.record(data, "claim", agent, id=name.removesuffix(SUFFIX))
        loaded = load(data, agent, path)
        if loaded:
            out.append(loaded)
    return out


def receive(data: DataRoot, agent: str) -> list[Message]:
    """Take what is new for ``agent`` and mark it read: ``mailbox read``, ``cmux inbox``."""
    out = []
    for loaded in take(data, agent):
        mark_delivered(loaded.path)
        out.append(loaded.msg)
    return out


def unclaim_all(data: DataRoot, agent: str) -> int:
    """Put claimed-but-undelivered mail back into new/ (a router starting up
    after a crash): it is delivered again, with the same id."""
    n = 0
    b = box(data, agent)
    for name in claimed(data, agent):
        try:
            os.rename(b / "cur" / name, b / "new" / name)
            n += 1
        except FileNotFoundError:
            continue
    if n:
        events.record(data, "requeue", agent, count=n)
    return n


def read_all(data: DataRoot, agent: str) -> list[Message]:
    """Every message in the mailbox, delivered or not, oldest first."""
    b = box(data, agent)
    out: list[tuple[str, Message]] = []
    for sub in ("cur", "new"):
        try:
            names = os.listdir(b / sub)
        except FileNotFoundError:
            continue
        for n in names:
            try:
                out.append((n, Message.from_json((b / sub / n).read_bytes())))
            except (OSError, MalformedMessage):
                continue
    out.sort(key=lambda t: t[1].id)
    return [m for _, m in out]


# -- holds and counts ---------------------------------------------------------------


def set_hold(data: DataRoot, agent: str, reason: str | None) -> bool:
    """Record why mail for ``agent`` is held (None clears). True if it changed."""
    path = box(data, agent) / "held"
    old = path.read_text().strip() if path.exists() else None
    if old == (reason or None):
        return False
    if reason:
        atomic_write(path, reason + "\n")
        events.record(data, "hold", agent, reason=reason, waiting=len(pending(data, agent)))
    else:
        path.unlink(missing_ok=True)
        events.record(data, "release", agent)
    return True


def hold_reason(data: DataRoot, agent: str) -> str | None:
    try:
        return (box(data, agent) / "held").read_text().strip() or None
    except FileNotFoundError:
        return None


def pending_count(data: DataRoot, agent: str) -> int:
    return len(pending(data, agent)) + len(claimed(data, agent))


def counts(data: DataRoot, agents: Iterable[str]) -> dict[str, dict[str, int]]:
    """Per agent: mail not yet delivered, and how much of it is held."""
    out = {}
    for a in agents:
        n = pending_count(data, a)
        out[a] = {"pending": n, "held": n if hold_reason(data, a) else 0}
    return out
