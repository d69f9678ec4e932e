"""Mail that arrives from another host (the cluster's node daemon,
docs/CLUSTER.md): stored once, durably, before the node acks it.

The same Maildir write as a send (cmux/mail/store.py, deliver_to_new),
plus the dedupe a stream that delivers at least once needs: an id already
in the box (new/, claimed in cur/, delivered in cur/) is a duplicate and is
dropped. Invariant: True from :func:`receive` or :func:`receive_many` means
the file and its new/ are fsynced; anything else left new/ as it was.
"""

from __future__ import annotations

import os

from cmux.errors import StorageError
from cmux.fsutil import fsync_dir
from cmux.mail import maildir
from cmux.mail.maildir import SEEN, SUFFIX
from cmux.mail.message import Message, check_paths
from cmux.mail.store import _unlink, deliver_to_new, ensure

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from concurrent.futures import ThreadPoolExecutor

    from cmux.paths import DataRoot


def arrival(present: Iterable[bool]) -> bool:
    """Whether a message that arrives from another host is written: only when
    its id is at none of the places a message of its box can be (new/,
    claimed in cur/, delivered in cur/). The same id again (NATS delivers at
    least once) is a duplicate and is dropped."""
    return not any(present)


def _places(data: DataRoot, msg: Message) -> Iterator[bool]:
    """Where ``msg.id`` is, looked at lazily in the order a message moves
    (new/ -> cur/ -> cur/ delivered), so one the router moves meanwhile is
    seen at its next place."""
    name = msg.id + SUFFIX
    new, cur = maildir.new_dir(data, msg.to), maildir.cur_dir(data, msg.to)
    for path in (os.path.join(new, name), os.path.join(cur, name), os.path.join(cur, name + SEEN)):
        yield os.path.lexists(path)


def receive(data: DataRoot, msg: Message, *, sync: bool = True) -> bool:
    """Store a message from another host once: True when written, False for a
    duplicate. Returning True means the file and new/ are both fsynced (the
    node acks the stream only then; with ``sync=False`` new/ is left for the
    caller to fsync, once for a batch, before it acks); any failure raises
    StorageError and nothing is in new/."""
    check_paths(msg)
    ensure(data, msg.to)
    if not arrival(_places(data, msg)):
        return False
    _unlink(os.path.join(maildir.tmp_dir(data, msg.to), f"{msg.id}{SUFFIX}"))  # a crashed try
    try:
        deliver_to_new(data, msg, sync_dir=False)
    except StorageError:
        # The router put it back into new/ between the looks (a requeue): there already.
        if os.path.lexists(os.path.join(maildir.new_dir(data, msg.to), msg.id + SUFFIX)):
            return False
        raise
    if sync:
        sync_new(data, msg.to)
    return True


def receive_many(data: DataRoot, msgs: list[Message]) -> list[bool | StorageError]:
    """:func:`receive` for a batch, in order, with the file fsyncs run side by
    side (the filesystem commits them together) and each new/ fsynced once:
    per message True (written), False (a duplicate) or the StorageError that
    kept it out. Every True is durable when this returns; the links into
    new/ are made in the order of ``msgs``, each only after its file's fsync."""
    pool = _pool()
    out: list[bool | StorageError] = [False] * len(msgs)
    fds: dict[int, tuple[int, str]] = {}  # index -> (fd, tmp path)
    seen: set[tuple[str, str]] = set()
    boxes_made: set[str] = set()
    for i, msg in enumerate(msgs):
        check_paths(msg)
        if (msg.to, msg.id) in seen:
            continue  # twice in one batch: a duplicate
        seen.add((msg.to, msg.id))
        if msg.to not in boxes_made:  # once a batch per box, not per message
            ensure(data, msg.to)
            boxes_made.add(msg.to)
        if not arrival(_places(data, msg)):
            continue
        tmp = os.path.join(maildir.tmp_dir(data, msg.to), f"{msg.id}{SUFFIX}")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        try:
            try:
                fd = os.open(tmp, flags, 0o600)
            except FileExistsError:  # a crashed try (removed only then: one call less)
                _unlink(tmp)
                fd = os.open(tmp, flags, 0o600)
            view = memoryview(msg.to_json().encode())
            while view:
                view = view[os.write(fd, view) :]
        except OSError as exc:
            out[i] = maildir.storage_error(tmp, exc)
            _unlink(tmp)
            continue
        fds[i] = (fd, tmp)

    def sync(i: int) -> OSError | None:
        try:
            os.fsync(fds[i][0])
            return None
        except OSError as exc:
            return exc
        finally:
            os.close(fds[i][0])

    synced = dict(zip(fds, pool.map(sync, fds), strict=True))
    boxes: set[str] = set()
    for i, (_, tmp) in fds.items():
        msg = msgs[i]
        err = synced[i]
        dest = os.path.join(maildir.new_dir(data, msg.to), f"{msg.id}{SUFFIX}")
        try:
            if err is not None:
                raise err
            os.link(tmp, dest)
            out[i] = True
            boxes.add(msg.to)
        except FileExistsError:
            out[i] = False  # the router put it back into new/ meanwhile: there already
        except OSError as exc:
            out[i] = maildir.storage_error(tmp, exc)
        _unlink(tmp)

    def sync_box(agent: str) -> StorageError | None:
        try:
            sync_new(data, agent)
            return None
        except StorageError as exc:
            return exc

    failed = dict(zip(boxes, pool.map(sync_box, boxes), strict=True))
    for agent, bad in failed.items():
        if bad is not None:
            out = [
                bad if r is True and m.to == agent else r for r, m in zip(out, msgs, strict=True)
            ]
    return out


_POOL: list[ThreadPoolExecutor] = []


def _pool() -> ThreadPoolExecutor:
    """The fsync threads, made once and kept: a pool started per batch cost
    the receiving node a tenth of its time in thread starts."""
    if not _POOL:
        from concurrent.futures import ThreadPoolExecutor  # not on the send path

        _POOL.append(ThreadPoolExecutor(max_workers=8, thread_name_prefix="fsync"))
    return _POOL[0]


def sync_new(data: DataRoot, agent: str) -> None:
    """fsync ``agent``'s new/: what was linked into it survives a power cut."""
    try:
        fsync_dir(maildir.new_dir(data, agent))
    except OSError as exc:
        raise maildir.storage_error(maildir.new_dir(data, agent), exc) from exc
