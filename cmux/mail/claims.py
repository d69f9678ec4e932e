"""Claiming and delivering: the delivery side of the store.

Claim is a link from new/ to cur/ that never replaces a file, then an unlink
of new/: exactly one claimant wins (the router, a Stop hook, `cmux inbox`),
and a stale entry of the same name in cur/ is never overwritten. Delivery is
at least once: whatever sits in cur/ without the S flag is put back into
new/ (``requeue``) and delivered again, with the same id.

Every entry is claimed, loaded and checked one at a time: one that is not a
valid message of this mailbox is moved whole into deadletter/ with its
reason, and the rest of the box goes on. A claimed entry is named by the path
this module returned for it (``Loaded.path``); callers hand it back and never
build one.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterator
from typing import NamedTuple

from cmux.mail import maildir, store
from cmux.mail.deadletter import quarantine
from cmux.mail.maildir import SEEN, SUFFIX, BadEntry, link_over, not_regular, note
from cmux.mail.message import MalformedMessage, Message
from cmux.paths import DataRoot

# Claimed entries older than this that no router owns are put back into new/
# by the router's full scans (a Stop hook or `cmux inbox` that died mid-claim,
# a failure while the disk was full).
STALE_CLAIM = 60.0


def claim(data: DataRoot, agent: str, name: str) -> str | None:
    """Move new/<name> to cur/<name>. Returns None when someone else won, when
    a claimed entry of that name already waits in cur/ (it is put back first,
    by ``requeue``), when the entry cannot be claimed (a directory: it goes to
    deadletter) or the disk refused (it stays in new/ for later)."""
    src = os.path.join(maildir.new_dir(data, agent), name)
    dst = os.path.join(maildir.cur_dir(data, agent), name)
    try:
        how = link_over(src, dst)
    except OSError:
        return None
    if how == "unlinkable":
        try:
            reason = not_regular(os.lstat(src).st_mode)
            if reason is None and not os.path.lexists(dst):
                os.rename(src, dst)  # a file system without hard links: rename, as Maildir may
                return dst
        except OSError:
            return None
        if reason:
            quarantine(data, agent, src, reason)
        return None
    return dst if how == "moved" else None


def mark_delivered(path: str) -> str:
    """cur/<id>.json -> cur/<id>.json:2,S; its mtime becomes the time of
    delivery (what a read receipt's timeout counts from)."""
    dest = path + SEEN
    os.rename(path, dest)
    try:
        os.utime(dest)
    except OSError:
        pass
    return dest


def redeliver(data: DataRoot, agent: str, msg_id: str) -> bool:
    """Put a delivered message back into new/ to be delivered again (same
    id); False when it is not (or no longer) there as delivered."""
    src = os.path.join(maildir.cur_dir(data, agent), msg_id + SUFFIX + SEEN)
    dst = os.path.join(maildir.new_dir(data, agent), msg_id + SUFFIX)
    try:
        os.link(src, dst)
    except (FileNotFoundError, FileExistsError):
        return False
    except OSError as exc:
        raise maildir.storage_error(dst, exc) from exc
    os.unlink(src)
    maildir.note(data, "redeliver", agent, id=msg_id)
    return True


def requeue(data: DataRoot, agent: str, path: str) -> bool:
    """Put a claimed entry cur/<name> back into new/, to be delivered again
    (same id). Never replaces an entry in new/: when one of that name waits
    there already, this one is the same file (dropped) or goes to deadletter.
    True when the entry left cur/."""
    name = os.path.basename(path)
    dst = os.path.join(maildir.new_dir(data, agent), name)
    try:
        how = link_over(path, dst)
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
    reason = not_regular(st.st_mode) or f"a second entry named {name!r} waits in new/"
    return quarantine(data, agent, path, reason) is not None


def unclaim_all(data: DataRoot, agent: str, *, older_than: float = 0.0) -> int:
    """Put claimed-but-undelivered mail back into new/ (a router starting up
    after a crash, and every full scan for claims older than ``older_than``
    seconds): it is delivered again, with the same id."""
    n = 0
    cur = maildir.cur_dir(data, agent)
    now = time.time()
    for name in store.claimed(data, agent):
        path = os.path.join(cur, name)
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
    path: str
    msg: Message


def load(data: DataRoot, agent: str, path: str) -> Loaded | None:
    """Read a claimed entry. One that is not a valid message of this mailbox
    goes to deadletter with its reason and yields None; so does one gone
    meanwhile; one that cannot be read now (an I/O error) stays for a retry."""
    try:
        return Loaded(path, store.parse(path, agent, os.path.basename(path)))
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
    for name in store.pending(data, agent):
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


def deadletter_all(data: DataRoot, agent: str, reason: str) -> list[str]:
    """Claim everything in ``agent``'s new/ and move it, unread, to deadletter/
    with ``reason`` (a mailbox with no agent behind it). Returns the names moved."""
    moved = []
    for name in store.pending(data, agent):
        path = claim(data, agent, name)
        if path is not None and quarantine(data, agent, path, reason) is not None:
            moved.append(name)
    return moved
