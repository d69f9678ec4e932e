"""Small, careful file operations: atomic writes, whole-line appends, locks.

Every write that a crash could leave half done goes through here: a file is
written beside its target and renamed over it, so a reader sees the old
content or the new, never a torn mix. A full disk becomes a StorageError that
says so, and leaves the old file as it was.

The data root is private to its owner: what is written here is 0600 (and a
directory 0700), whatever the umask (see cmux/umask.py for the rest).

Imported on ``tools/mailbox send`` (``append_line``, ``fsync_dir``): only
``os`` and ``errno`` at import (``fcntl`` when a lock is taken); paths may be
strings or Paths.
"""

from __future__ import annotations

import errno
import os

from cmux.errors import StorageError
from cmux.umask import user_umask

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from _typeshed import StrPath

PRIVATE_FILE = 0o600


def project_mode(path: StrPath) -> int:
    """The mode for a file of the project (cmux.toml, .gitignore), not of the
    data root: the one it has, or what the person's umask gives a new file."""
    try:
        return os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        mask = user_umask()
        return 0o666 & ~(0o022 if mask < 0 else mask)


def _storage_error(path: StrPath, exc: OSError) -> StorageError:
    if exc.errno == errno.ENOSPC:
        return StorageError(
            f"the disk is full: could not write {path}", "free some space; nothing was changed"
        )
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return StorageError(f"cannot write {path}: {exc.strerror}", "check the permissions")
    return StorageError(f"cannot write {path}: {exc.strerror or exc}")


def fsync_dir(path: StrPath) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(
    path: StrPath, data: str | bytes, *, durable: bool = False, mode: int = PRIVATE_FILE
) -> None:
    """Replace ``path`` with ``data`` so that readers never see a partial file
    (private to its owner unless ``mode`` says otherwise)."""
    raw = data.encode() if isinstance(data, str) else data
    folder, name = os.path.split(os.fspath(path))
    os.makedirs(folder or ".", exist_ok=True)
    # (not tempfile.mkstemp: importing tempfile costs every tools/ call ~4 ms)
    tmp = os.path.join(folder, f".{name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(raw)
                if durable:
                    fh.flush()
                    os.fsync(fh.fileno())
            os.chmod(tmp, mode)
            os.replace(tmp, path)
        except OSError as exc:
            raise _storage_error(path, exc) from exc
        if durable:
            fsync_dir(folder or ".")
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_json(path: StrPath, obj: Any, *, durable: bool = False) -> None:
    import json

    atomic_write(path, json.dumps(obj, indent=1, sort_keys=True) + "\n", durable=durable)


def read_json(path: StrPath) -> Any:
    import json

    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def append_line(path: StrPath, line: str) -> None:
    """Append one line with a single write(2) on an O_APPEND descriptor.

    On a local file system concurrent appenders never interleave inside such a
    write, and a lock makes that true for long lines as well.
    """
    raw = (line.rstrip("\n") + "\n").encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, PRIVATE_FILE)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(os.fspath(path)) or ".", exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, PRIVATE_FILE)
    try:
        if len(raw) > 4096:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX)
        n = os.write(fd, raw)
        if n != len(raw):
            raise OSError(errno.ENOSPC, "short write")
    except OSError as exc:
        raise _storage_error(path, exc) from exc
    finally:
        os.close(fd)


class locked:  # a class used as a function: `with locked(path) as got:`
    """Hold an exclusive flock on ``path`` (created if missing).

    ``with locked(path) as got:`` gives True when the lock is held; with
    ``blocking=False`` False instead of waiting when someone else holds it.
    The lock dies with the process, so a killed holder never leaves a stale
    lock behind. (A class, not contextlib.contextmanager: contextlib is not
    imported on the send path.)
    """

    __slots__ = ("blocking", "fd", "path")

    def __init__(self, path: StrPath, *, blocking: bool = True) -> None:
        self.path = path
        self.blocking = blocking
        self.fd = -1

    def __enter__(self) -> bool:
        import fcntl

        os.makedirs(os.path.dirname(os.fspath(self.path)) or ".", exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, PRIVATE_FILE)
        self.fd = fd
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if self.blocking else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        except BaseException:
            self.fd = -1
            os.close(fd)
            raise
        return True

    def __exit__(self, *exc: object) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)
