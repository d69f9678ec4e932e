"""Dead letters: where an undeliverable entry goes, whole, with its reason.

Invariant: no dead letter ever replaces another. A name is reserved by
creating its ``<name>.reason`` file (O_EXCL) before the entry is written or
moved there; a taken name becomes ``<name>.1``, ``<name>.2``, ... Every dead
letter is private (0600, a directory 0700), whoever wrote it
(mailbox/README.md, Dead letters).
"""

from __future__ import annotations

import json
import os
import stat
import time

from cmux import events
from cmux.errors import StorageError
from cmux.mail.maildir import note, storage_error

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cmux.paths import DataRoot


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _reserve(data: DataRoot, name: str, reason: str, original_to: str | None) -> str:
    """Claim a dead-letter name nobody has used, by creating its ``.reason``
    file (O_EXCL); returns the path the entry itself goes to. Two entries of
    one name (from new/ and cur/, or from two boxes) get ``name``, ``name.1``,
    ... so none overwrites another."""
    dl = data.deadletter_path
    try:
        os.makedirs(dl, exist_ok=True)
    except OSError as exc:
        raise storage_error(dl, exc) from exc
    text = json.dumps({"reason": reason, "to": original_to, "ts": events.now_iso()}) + "\n"
    base = name.lstrip(".") or "entry"
    for i in range(10_000):
        cand = base if i == 0 else f"{base}.{i}"
        if i == 9_999:
            cand = f"{base}.{time.time_ns():x}{os.urandom(4).hex()}"
        rpath = os.path.join(dl, f"{cand}.reason")
        try:
            fd = os.open(rpath, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except FileExistsError:
            continue
        except OSError as exc:
            raise storage_error(rpath, exc) from exc
        try:
            taken = os.path.lexists(os.path.join(dl, cand))
            if not taken:
                os.write(fd, text.encode())
        except OSError as exc:
            os.close(fd)
            _unlink(rpath)
            raise storage_error(rpath, exc) from exc
        os.close(fd)
        if taken:
            _unlink(rpath)
            continue
        return os.path.join(dl, cand)
    raise StorageError(f"no free dead-letter name for {name!r} in {dl}")


def deadletter(
    data: DataRoot, name: str, raw: bytes, reason: str, *, original_to: str | None = None
) -> str:
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
        _unlink(dest)
        _unlink(dest + ".reason")
        raise storage_error(dest, exc) from exc
    note(data, "deadletter", original_to, file=os.path.basename(dest), reason=reason)
    return dest


def quarantine(data: DataRoot, agent: str, path: str, reason: str) -> str | None:
    """Move the entry at ``path`` itself (a file, a directory, a FIFO, a
    symlink: whatever it is, unopened) into deadletter/ under a unique name,
    with its reason beside it. Returns where it went, or None when it could
    not be moved (already gone, or the disk refused the reason file): then it
    stays where it is, is skipped, and is tried again on a later scan."""
    try:
        dest = _reserve(data, os.path.basename(path), reason, agent)
    except StorageError:
        return None
    try:
        os.rename(path, dest)
    except OSError:
        _unlink(dest + ".reason")
        return None
    _make_private(dest)
    note(data, "deadletter", agent, file=os.path.basename(dest), reason=reason)
    return dest


def _make_private(path: str) -> None:
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


def listing(data: DataRoot, *, limit: int = 200) -> list[dict[str, object]]:
    """The dead letters, newest first: ``id`` (the entry's name in deadletter/),
    ``reason``, ``to`` (the box it was meant for) and ``ts``, from each
    ``.reason`` file; the entries themselves are never opened here."""
    dl = data.deadletter_path
    try:
        names = [n for n in os.listdir(dl) if n.endswith(".reason") and not n.startswith(".")]
    except FileNotFoundError:
        return []
    out: list[dict[str, object]] = []
    for n in names:
        path = os.path.join(dl, n)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
            try:
                raw = os.read(fd, 64 * 1024)
            finally:
                os.close(fd)
            info = json.loads(raw)
        except (OSError, ValueError):
            info = {}
        if not isinstance(info, dict):
            info = {}
        out.append(
            {
                "id": n.removesuffix(".reason"),
                "reason": str(info.get("reason") or ""),
                "to": info.get("to"),
                "ts": str(info.get("ts") or ""),
            }
        )
    out.sort(key=lambda d: (str(d["ts"]), str(d["id"])), reverse=True)
    return out[:limit]
