"""The mailbox on disk: its folders, one entry at a time, its event lines.

Layout (mailbox/README.md is the public description):

    mailbox/<agent>/tmp/<id>.json         being written
    mailbox/<agent>/new/<id>.json         sent, waiting for the router
    mailbox/<agent>/cur/<id>.json         claimed by a router, not yet delivered
    mailbox/<agent>/cur/<id>.json:2,S     delivered (or read, for `human`)
    mailbox/<agent>/held                  why mail is held (absent: not held)
    mailbox/<agent>/receipts              which delivered messages were read
    mailbox/<agent>/large/<id>.txt        a body too large to type
    mailbox/<agent>/remote                the host the agent lives on, when another
                                          one: this box is the node daemon's spool
                                          (docs/CLUSTER.md), the router leaves it
    mailbox/<agent>/sent/<id>.json        spooled mail the node published (acked)
    mailbox/deadletter/<id>.json          undeliverable, with <id>.json.reason

Invariant: this module is the only place that spells these folder names;
every other module asks it (or the store, claims and deadletter modules
built on it) for a path. An entry is only ever read as a regular file (never
through a symlink, never blocking on a FIFO), and moved only by a link that
never replaces what is at its destination.

It imports no message code, so the Stop hook's "is any mail waiting" check
(``waiting``) costs a listdir and nothing more. Paths are strings (os.path),
as everywhere in cmux/mail/: ``tools/mailbox send`` imports no pathlib.
"""

from __future__ import annotations

import errno
import os
import stat

from cmux import events
from cmux.errors import StorageError
from cmux.paths import DEADLETTER

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from cmux.paths import DataRoot

SUFFIX = ".json"
SEEN = ":2,S"
# A message file larger than this is not read into memory: it cannot be a
# message under any body limit, so it goes to deadletter unread.
MAX_FILE_BYTES = 64 * 1024 * 1024


class BadEntry(Exception):
    """A mailbox entry that is not a regular message file; the text says what it is."""


def note(data: DataRoot, event: str, agent: str | None = None, **fields: Any) -> None:
    """Record a mail event (mailbox/README.md, Events), best effort: a log line
    that cannot be written (a full disk) must not undo or hide what already
    happened to the mail."""
    try:
        events.record(data, event, agent, **fields)
    except (StorageError, OSError):
        pass


def note_many(data: DataRoot, entries: list[tuple[str, str | None, dict[str, Any]]]) -> None:
    """:func:`note` for several mail events (event, agent, fields), one append."""
    try:
        events.record_many(data, entries)
    except (StorageError, OSError):
        pass


# -- paths --------------------------------------------------------------------------------


def box(data: DataRoot, agent: str) -> str:
    return data.mailbox_path(agent)


def tmp_dir(data: DataRoot, agent: str) -> str:
    return os.path.join(box(data, agent), "tmp")


def new_dir(data: DataRoot, agent: str) -> str:
    """Where mail for ``agent`` lands when it is sent: what a watcher watches."""
    return os.path.join(box(data, agent), "new")


def cur_dir(data: DataRoot, agent: str) -> str:
    return os.path.join(box(data, agent), "cur")


def held_file(data: DataRoot, agent: str) -> str:
    return os.path.join(box(data, agent), "held")


def receipts_file(data: DataRoot, agent: str) -> str:
    """What proves each delivered message read (cmux/mail/receipts.py)."""
    return os.path.join(box(data, agent), "receipts")


def sent_dir(data: DataRoot, agent: str) -> str:
    """Spooled mail for an agent on another host, once NATS stored it."""
    return os.path.join(box(data, agent), "sent")


def remote_file(data: DataRoot, agent: str) -> str:
    """Names the host ``agent`` lives on when it is not this one."""
    return os.path.join(box(data, agent), "remote")


def remote_host(data: DataRoot, agent: str) -> str | None:
    """The other host whose agent this box spools for, or None (a local box)."""
    try:
        with open(remote_file(data, agent), "rb") as fh:
            host = fh.read(256).decode("utf-8", errors="replace").strip()
    except OSError:
        return None
    return host or None


def large_file(data: DataRoot, agent: str, msg_id: str) -> str:
    """Where a body too large to type is written (names checked by the caller)."""
    return os.path.join(box(data, agent), "large", f"{msg_id}.txt")


def waiting(home: str, name: str) -> bool:
    """Anything in ``name``'s new/ under the data root ``home`` (``pending``
    for the Stop hook, without a DataRoot)."""
    try:
        return any(
            not n.startswith(".") for n in os.listdir(os.path.join(home, "mailbox", name, "new"))
        )
    except OSError:
        return False


def box_names(data: DataRoot) -> list[str]:
    """Every mailbox directory but the dead letters (its new/ may not be made yet)."""
    try:
        return [
            e.name for e in os.scandir(data.mailboxes_path) if e.is_dir() and e.name != DEADLETTER
        ]
    except FileNotFoundError:
        return []


def has_new(data: DataRoot, agent: str) -> bool:
    return os.path.isdir(new_dir(data, agent))


def storage_error(path: str, exc: OSError) -> StorageError:
    """What a failed write in ``path``'s folder tells the sender."""
    folder = os.path.dirname(path)
    if exc.errno == errno.ENOSPC:
        return StorageError(
            f"the disk is full: the message to {os.path.basename(os.path.dirname(folder))} "
            "was not sent",
            "free some space and send it again; nothing was half written",
        )
    return StorageError(f"cannot store the message in {folder}: {exc.strerror}")


# -- one entry ------------------------------------------------------------------------------

_KINDS_OF_ENTRY = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISLNK, "a symbolic link"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def not_regular(mode: int) -> str | None:
    """Why an entry of this mode is no message file; None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    what = next((w for test, w in _KINDS_OF_ENTRY if test(mode)), "not a regular file")
    return f"{what}, not a message file"


def read_entry(path: str) -> bytes:
    """The bytes of a mailbox entry that is a regular file, opened without
    following a symlink and without blocking on a FIFO. Raises BadEntry for
    anything else (the entry is left untouched: not opened, not followed),
    FileNotFoundError when it is gone, OSError for an I/O failure."""
    reason = not_regular(os.lstat(path).st_mode)
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
        reason = not_regular(st.st_mode)
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


def link_over(src: str, dst: str) -> str:
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
