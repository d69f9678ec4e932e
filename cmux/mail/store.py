"""The Maildir store: send, claim, mark delivered, hold, deadletter.

Layout (mailbox/README.md is the public description):

    mailbox/<agent>/tmp/<id>.json         being written
    mailbox/<agent>/new/<id>.json         sent, waiting for the router
    mailbox/<agent>/cur/<id>.json         claimed by a router, not yet delivered
    mailbox/<agent>/cur/<id>.json:2,S     delivered (or read, for `human`)
    mailbox/<agent>/held                  why mail is held (absent: not held)
    mailbox/deadletter/<id>.json          undeliverable, with <id>.json.reason

Send is write tmp, fsync, link into new, unlink tmp, fsync new: a crash leaves
either nothing in new/ or the whole message, and once the link is made the
message counts as sent (nothing after it can turn a send into "not sent").
Claim is a link from new/ to cur/ that never replaces a file, then an unlink
of new/: exactly one claimant wins, and a stale entry of the same name in cur/
is never overwritten. Delivery is at least once: whatever sits in cur/ without
the S flag is put back into new/ (``requeue``) and delivered again, with the
same id.

Every entry is claimed, opened and loaded one at a time, and only as a regular
file (never through a symlink, never blocking on a FIFO): an entry that is not
a valid message of this mailbox is moved whole into deadletter/ under a name
no other dead letter has, with its reason beside it, and the rest of the box
goes on. Paths are built only from names checked against the schema.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

from cmux import events, identity
from cmux.config import Config
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
from cmux.mail.message import KINDS, MalformedMessage, Message, check_paths, valid_id, valid_name
from cmux.paths import DEADLETTER, HUMAN, SUPERVISOR, DataRoot

SUFFIX = ".json"
SEEN = ":2,S"
# A reply sent this soon after the message it answers counts as one more hop
# in a conversation; past the depth limit the hop goes to deadletter.
REPLY_WINDOW = 300.0
# A message file larger than this is not read into memory: it cannot be a
# message under any body limit, so it goes to deadletter unread.
MAX_FILE_BYTES = 64 * 1024 * 1024
# Claimed entries older than this that no router owns are put back into new/
# by the router's full scans (a Stop hook or `cmux inbox` that died mid-claim,
# a failure while the disk was full).
STALE_CLAIM = 60.0


class BadEntry(Exception):
    """A mailbox entry that is not a regular message file; the text says what it is."""


def note(data: DataRoot, event: str, agent: str | None = None, **fields: Any) -> None:
    """Record an event, best effort: a log line that cannot be written (a full
    disk) must not undo or hide what already happened to the mail."""
    try:
        events.record(data, event, agent, **fields)
    except (StorageError, OSError):
        pass


def box(data: DataRoot, agent: str) -> Path:
    return data.mailbox(agent)


def ensure(data: DataRoot, agent: str) -> Path:
    b = box(data, agent)
    for sub in ("tmp", "new", "cur"):
        (b / sub).mkdir(parents=True, exist_ok=True)
    return b


def known(data: DataRoot, agent: str) -> bool:
    if not valid_name(agent) or agent == DEADLETTER:
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
    check_paths(msg)
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
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        raise _storage(tmp, exc) from exc
    # Linked into new/: the message is sent. What follows is tidying, and a
    # failure of it (a full disk, an I/O error) must not tell the sender otherwise.
    try:
        tmp.unlink(missing_ok=True)
        fsync_dir(dest.parent)
    except OSError:
        pass
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
        if not name.endswith((SUFFIX, SUFFIX + SEEN)):
            continue
        try:
            if now - path.lstat().st_mtime > REPLY_WINDOW:
                break
            m = _parse(path, sender, name)
        except (OSError, BadEntry, MalformedMessage):
            continue
        if m.sender == to:
            return m.depth + 1, m.id
    return 0, None


def find(data: DataRoot, agent: str, msg_id: str) -> Message | None:
    """The message ``msg_id`` in ``agent``'s mailbox, or None (also for an id or
    a name that could not name a file)."""
    if not valid_name(agent) or not valid_id(msg_id):
        return None
    b = box(data, agent)
    for sub, name in (
        ("cur", msg_id + SUFFIX + SEEN),
        ("cur", msg_id + SUFFIX),
        ("new", msg_id + SUFFIX),
    ):
        try:
            return _parse(b / sub / name, agent, name)
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
        where = deadletter(data, msg.id + SUFFIX, msg.to_json().encode(), reason, original_to=to)
        told = _notify_loop(cfg, msg)
        raise MessageLoop(
            f"not delivered to {to}: {reason} The message is in mailbox/deadletter/{where.name}"
            + (f" and {told} was told." if told else "."),
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


def _reserve(data: DataRoot, name: str, reason: str, original_to: str | None) -> Path:
    """Claim a dead-letter name nobody has used, by creating its ``.reason``
    file (O_EXCL); returns the path the entry itself goes to. Two entries of
    one name (from new/ and cur/, or from two boxes) get ``name``, ``name.1``,
    ... so none overwrites another."""
    dl = data.deadletter
    try:
        dl.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _storage(dl, exc) from exc
    text = json.dumps({"reason": reason, "to": original_to, "ts": events.now_iso()}) + "\n"
    base = name.lstrip(".") or "entry"
    for i in range(10_000):
        cand = base if i == 0 else f"{base}.{i}"
        if i == 9_999:
            cand = f"{base}.{time.time_ns():x}{os.urandom(4).hex()}"
        rpath = dl / f"{cand}.reason"
        try:
            fd = os.open(rpath, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except FileExistsError:
            continue
        except OSError as exc:
            raise _storage(rpath, exc) from exc
        try:
            taken = os.path.lexists(dl / cand)
            if not taken:
                os.write(fd, text.encode())
        except OSError as exc:
            os.close(fd)
            rpath.unlink(missing_ok=True)
            raise _storage(rpath, exc) from exc
        os.close(fd)
        if taken:
            rpath.unlink(missing_ok=True)
            continue
        return dl / cand
    raise StorageError(f"no free dead-letter name for {name!r} in {dl}")


def deadletter(
    data: DataRoot, name: str, raw: bytes, reason: str, *, original_to: str | None = None
) -> Path:
    """Store ``raw`` in deadletter/ under a unique name, with its reason beside it."""
    dest = _reserve(data, name, reason, original_to)
    try:
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            view = memoryview(raw)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
    except OSError as exc:
        dest.unlink(missing_ok=True)
        dest.with_name(dest.name + ".reason").unlink(missing_ok=True)
        raise _storage(dest, exc) from exc
    note(data, "deadletter", original_to, file=dest.name, reason=reason)
    return dest


def quarantine(data: DataRoot, agent: str, path: Path, reason: str) -> Path | None:
    """Move the entry at ``path`` itself (a file, a directory, a FIFO, a
    symlink: whatever it is, unopened) into deadletter/ under a unique name,
    with its reason beside it. Returns where it went, or None when it could
    not be moved (already gone, or the disk refused the reason file): then it
    stays where it is, is skipped, and is tried again on a later scan."""
    try:
        dest = _reserve(data, path.name, reason, agent)
    except StorageError:
        return None
    try:
        os.rename(path, dest)
    except OSError:
        dest.with_name(dest.name + ".reason").unlink(missing_ok=True)
        return None
    _make_private(dest)
    note(data, "deadletter", agent, file=dest.name, reason=reason)
    return dest


def _make_private(path: Path) -> None:
    """A dead letter is private like the rest of the data root, whoever wrote
    it and with what mode: 0600 (0700 for a directory). A symlink is left as
    it is: chmod would follow it to its target."""
    try:
        st = os.lstat(path)
        if stat.S_ISDIR(st.st_mode):
            os.chmod(path, 0o700)
        elif not stat.S_ISLNK(st.st_mode):
            os.chmod(path, 0o600)
    except OSError:
        pass


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


_KINDS_OF_ENTRY = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISLNK, "a symbolic link"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def _not_regular(mode: int) -> str | None:
    if stat.S_ISREG(mode):
        return None
    what = next((w for test, w in _KINDS_OF_ENTRY if test(mode)), "not a regular file")
    return f"{what}, not a message file"


def read_entry(path: Path) -> bytes:
    """The bytes of a mailbox entry that is a regular file, opened without
    following a symlink and without blocking on a FIFO. Raises BadEntry for
    anything else (the entry is left untouched: not opened, not followed),
    FileNotFoundError when it is gone, OSError for an I/O failure."""
    reason = _not_regular(os.lstat(path).st_mode)
    if reason:
        raise BadEntry(reason)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # became a symlink since the lstat
            raise BadEntry("a symbolic link, not a message file") from None
        raise
    try:
        st = os.fstat(fd)
        reason = _not_regular(st.st_mode)
        if reason:
            raise BadEntry(reason)
        if st.st_size > MAX_FILE_BYTES:
            raise BadEntry(f"{st.st_size} bytes, larger than any message can be")
        chunks = []
        while True:
            chunk = os.read(fd, max(st.st_size, 65536))
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _parse(path: Path, agent: str, name: str) -> Message:
    """Read and check one entry of ``agent``'s mailbox: a regular file, a valid
    message (message.from_json), addressed to this box, named after its id."""
    msg = Message.from_json(read_entry(path))
    if msg.to != agent:
        raise MalformedMessage(f"it is addressed to {msg.to!r} but sits in {agent!r}'s mailbox")
    if name.removesuffix(SEEN) != msg.id + SUFFIX:
        raise MalformedMessage(f"its file name {name!r} does not match its id {msg.id!r}")
    return msg


def _link_over(src: Path, dst: Path) -> str:
    """Move ``src`` to ``dst`` without ever replacing what is at ``dst``
    (link, then unlink). Returns "moved", "gone" (src vanished: someone else
    took it), "taken" (dst exists), or "unlinkable" (a directory: no hard link)."""
    try:
        os.link(src, dst, follow_symlinks=False)
    except FileNotFoundError:
        return "gone"
    except FileExistsError:
        return "taken"
    except OSError as exc:
        if exc.errno in (errno.EPERM, errno.EISDIR, errno.EMLINK, errno.EXDEV):
            return "unlinkable"
        raise
    try:
        os.unlink(src)
    except FileNotFoundError:
        pass
    return "moved"


def claim(data: DataRoot, agent: str, name: str) -> Path | None:
    """Move new/<name> to cur/<name>. Returns None when someone else won, when
    a claimed entry of that name already waits in cur/ (it is put back first,
    by ``requeue``), when the entry cannot be claimed (a directory: it goes to
    deadletter) or the disk refused (it stays in new/ for later)."""
    b = box(data, agent)
    src, dst = b / "new" / name, b / "cur" / name
    try:
        how = _link_over(src, dst)
    except OSError:
        return None
    if how == "unlinkable":
        try:
            reason = _not_regular(os.lstat(src).st_mode)
            if reason is None and not os.path.lexists(dst):
                os.rename(src, dst)  # a file system without hard links: rename, as Maildir may
                return dst
        except OSError:
            return None
        if reason:
            quarantine(data, agent, src, reason)
        return None
    return dst if how == "moved" else None


def mark_delivered(path: Path) -> Path:
    dest = path.with_name(path.name + SEEN)
    os.rename(path, dest)
    return dest


def requeue(data: DataRoot, agent: str, path: Path) -> bool:
    """Put a claimed entry cur/<name> back into new/, to be delivered again
    (same id). Never replaces an entry in new/: when one of that name waits
    there already, this one is the same file (dropped) or goes to deadletter.
    True when the entry left cur/."""
    dst = box(data, agent) / "new" / path.name
    try:
        how = _link_over(path, dst)
    except OSError:
        return False
    if how == "moved":
        return True
    if how == "gone":
        return False
    try:
        st = os.lstat(path)
        if how == "taken" and os.path.samestat(st, os.lstat(dst)):
            os.unlink(path)  # a claim cut short between its link and its unlink
            return True
        if how == "unlinkable" and stat.S_ISREG(st.st_mode) and not os.path.lexists(dst):
            os.rename(path, dst)  # a file system without hard links
            return True
    except OSError:
        return False
    reason = _not_regular(st.st_mode) or f"a second entry named {path.name!r} waits in new/"
    return quarantine(data, agent, path, reason) is not None


def unclaim_all(data: DataRoot, agent: str, *, older_than: float = 0.0) -> int:
    """Put claimed-but-undelivered mail back into new/ (a router starting up
    after a crash, and every full scan for claims older than ``older_than``
    seconds): it is delivered again, with the same id."""
    n = 0
    cur = box(data, agent) / "cur"
    now = time.time()
    for name in claimed(data, agent):
        path = cur / name
        try:
            if older_than and now - os.lstat(path).st_ctime < older_than:
                continue
        except FileNotFoundError:
            continue
        if requeue(data, agent, path):
            n += 1
    if n:
        note(data, "requeue", agent, count=n)
    return n


class Loaded(NamedTuple):
    path: Path
    msg: Message


def load(data: DataRoot, agent: str, path: Path) -> Loaded | None:
    """Read a claimed entry. One that is not a valid message of this mailbox
    goes to deadletter with its reason and yields None; so does one gone
    meanwhile; one that cannot be read now (an I/O error) stays for a retry."""
    try:
        return Loaded(path, _parse(path, agent, path.name))
    except FileNotFoundError:
        return None
    except BadEntry as exc:
        quarantine(data, agent, path, str(exc))
    except MalformedMessage as exc:
        quarantine(data, agent, path, f"malformed message file: {exc}")
    except OSError:
        pass
    return None


def claim_each(data: DataRoot, agent: str) -> Iterator[Loaded]:
    """Claim and load what waits in ``agent``'s new/, oldest first, one entry
    at a time: the next is claimed only when the caller asks for it, so a
    caller that stops (a pane gone) leaves the rest in new/. Bad entries go to
    deadletter on the way and never stop the rest."""
    for name in pending(data, agent):
        path = claim(data, agent, name)
        if path is None:
            continue
        note(data, "claim", agent, id=name.removesuffix(SUFFIX))
        loaded = load(data, agent, path)
        if loaded:
            yield loaded


def take(data: DataRoot, agent: str, *, limit: int | None = None) -> list[Loaded]:
    """Claim up to ``limit`` messages from ``agent``'s new/ (see claim_each)."""
    out: list[Loaded] = []
    if limit is not None and limit <= 0:
        return out
    for loaded in claim_each(data, agent):
        out.append(loaded)
        if limit is not None and len(out) >= limit:
            break
    return out


def receive(data: DataRoot, agent: str) -> list[Message]:
    """Take what is new for ``agent`` and mark it read: ``mailbox read``, ``cmux inbox``."""
    out = []
    for loaded in claim_each(data, agent):
        try:
            mark_delivered(loaded.path)
        except FileNotFoundError:
            continue  # put back meanwhile: it is shown next time
        out.append(loaded.msg)
    return out


def read_all(data: DataRoot, agent: str) -> list[Message]:
    """Every valid message in the mailbox, delivered or not, oldest first.
    (Bad entries are skipped here; delivery moves them to deadletter.)"""
    b = box(data, agent)
    out: list[tuple[str, Message]] = []
    for sub in ("cur", "new"):
        try:
            names = os.listdir(b / sub)
        except FileNotFoundError:
            continue
        for n in names:
            if n.startswith("."):
                continue
            try:
                out.append((n, _parse(b / sub / n, agent, n)))
            except (OSError, BadEntry, MalformedMessage):
                continue
    out.sort(key=lambda t: t[1].id)
    return [m for _, m in out]


# -- holds and counts ---------------------------------------------------------------


def set_hold(data: DataRoot, agent: str, reason: str | None) -> bool:
    """Record why mail for ``agent`` is held (None clears). True if it changed."""
    path = box(data, agent) / "held"
    old = hold_reason(data, agent)
    if old == (reason or None):
        return False
    if reason:
        atomic_write(path, reason + "\n")
        note(data, "hold", agent, reason=reason, waiting=len(pending(data, agent)))
    else:
        path.unlink(missing_ok=True)
        note(data, "release", agent)
    return True


def hold_reason(data: DataRoot, agent: str) -> str | None:
    try:
        raw = read_entry(box(data, agent) / "held")
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
