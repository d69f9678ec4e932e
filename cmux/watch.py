"""The file watcher: the one door to the kernel's file events.

One interface, two implementations:

    w = watch.open_watcher()     Inotify where the kernel has it, else Watchfiles
    w.add(path, kind)            watch the directory ``path``; True if newly watched
    w.fileno()                   readable when events wait: poll(2) or select(2) it
    w.read() -> [Event, ...]     every event queued now (never blocks)
    w.close()

``kind`` says what to be told about in the directory: ``"files"`` a file that
lands in it (created, moved in, or written and closed), ``"dirs"`` an entry
made in it (created or moved in). Only events of directories added are
reported, each as the directory it happened in and the entry's name.
``Event.overflow`` means events were lost: the caller rescans everything.

Invariant: idle, a caller blocked on ``fileno()`` sleeps in the kernel. With
inotify nothing wakes it until a file lands (the router's measured idle cost,
docs/PERFORMANCE.md). The watchfiles fallback (where inotify is missing) runs
watchfiles' own loop in a thread, which polls its queue every few ms; its
caller still blocks on a pipe.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
from pathlib import Path
from typing import Any, Literal, NamedTuple, Protocol

log = logging.getLogger(__name__)

Kind = Literal["files", "dirs"]


class Event(NamedTuple):
    folder: str  # the watched directory it happened in ("" for an overflow)
    name: str  # the entry's name in it
    overflow: bool = False


class Watcher(Protocol):
    def add(self, path: Path | str, kind: Kind) -> bool: ...
    def fileno(self) -> int: ...
    def read(self) -> list[Event]: ...
    def close(self) -> None: ...


def open_watcher() -> Watcher:
    """Inotify where the kernel has it, else the watchfiles fallback."""
    try:
        return Inotify()
    except OSError as exc:
        log.info("no inotify (%s); watching with watchfiles", exc)
        return Watchfiles()


# -- inotify(7), through ctypes ----------------------------------------------------------

IN_CLOSE_WRITE = 0x008
IN_MOVED_TO = 0x080
IN_CREATE = 0x100
IN_Q_OVERFLOW = 0x4000
IN_IGNORED = 0x8000
MASKS: dict[Kind, int] = {
    "files": IN_CREATE | IN_MOVED_TO | IN_CLOSE_WRITE,
    "dirs": IN_CREATE | IN_MOVED_TO,
}
_EVENT = struct.Struct("iIII")


class Inotify:
    """An inotify instance: watched directories and the events in them."""

    def __init__(self) -> None:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if not hasattr(libc, "inotify_init1"):
            raise OSError("inotify is not available on this system")
        self._add = libc.inotify_add_watch
        self._get_errno = ctypes.get_errno
        fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        self.fd: int = fd
        self.paths: dict[int, str] = {}
        self.watched: dict[str, int] = {}

    def add(self, path: Path | str, kind: Kind) -> bool:
        path = str(path)
        if path in self.watched:
            return False
        wd = self._add(self.fd, os.fsencode(path), MASKS[kind])
        if wd < 0:
            log.debug("cannot watch %s: errno %s", path, self._get_errno())
            return False
        self.paths[wd] = path
        self.watched[path] = wd
        return True

    def fileno(self) -> int:
        return self.fd

    def read(self) -> list[Event]:
        out: list[Event] = []
        while True:
            try:
                buf = os.read(self.fd, 256 * 1024)
            except BlockingIOError:
                return out
            pos = 0
            while pos + _EVENT.size <= len(buf):
                wd, mask, _cookie, size = _EVENT.unpack_from(buf, pos)
                pos += _EVENT.size
                name = os.fsdecode(buf[pos : pos + size].rstrip(b"\0"))
                pos += size
                if mask & IN_Q_OVERFLOW:
                    out.append(Event("", "", overflow=True))
                    continue
                folder = self.paths.get(wd)
                if mask & IN_IGNORED:  # the directory went away
                    if folder is not None:
                        del self.paths[wd]
                        self.watched.pop(folder, None)
                    continue
                if folder is not None:
                    out.append(Event(folder, name))

    def close(self) -> None:
        os.close(self.fd)


# -- watchfiles, where there is no inotify -------------------------------------------------


class Watchfiles:
    """The same interface over watchfiles: a thread runs ``watchfiles.watch``
    over the directories added (recursively, from the topmost ones) and
    passes on, through a pipe, the events of directories added."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._kinds: dict[str, Kind] = {}
        self._queue: list[Event] = []
        self._stop = threading.Event()  # ends watchfiles' loop: to restart or close
        self._closed = False
        self._r, self._w = os.pipe()
        os.set_blocking(self._r, False)
        os.set_blocking(self._w, False)
        self._thread: threading.Thread | None = None
        self._roots: tuple[str, ...] = ()

    def add(self, path: Path | str, kind: Kind) -> bool:
        path = str(path)
        with self._lock:
            if path in self._kinds or not os.path.isdir(path):
                return False
            self._kinds[path] = kind
            roots = _topmost(self._kinds)
            if roots == self._roots:
                return True
            self._roots = roots
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="watchfiles", daemon=True)
            self._thread.start()
        else:
            self._stop.set()  # watch the new root set (the loop says: rescan)
        return True

    def fileno(self) -> int:
        return self._r

    def read(self) -> list[Event]:
        try:
            while os.read(self._r, 4096):
                pass
        except BlockingIOError:
            pass
        with self._lock:
            out, self._queue = self._queue, []
        return out

    def close(self) -> None:
        self._closed = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        os.close(self._r)
        os.close(self._w)

    def _loop(self) -> None:
        import watchfiles

        first = True
        while not self._closed:
            self._stop.clear()  # before reading the roots: an add() after it restarts us
            with self._lock:
                roots = self._roots
            if not first:
                self._push([Event("", "", overflow=True)])  # events may have been missed
            first = False
            for changes in watchfiles.watch(
                *roots,
                watch_filter=None,
                debounce=100,
                step=1,
                rust_timeout=500,
                yield_on_timeout=True,
                stop_event=self._stop,
                raise_interrupt=False,
            ):
                self._push(self._events(changes))
                if self._stop.is_set():
                    break

    def _events(self, changes: set[tuple[Any, str]]) -> list[Event]:
        import watchfiles

        out = []
        with self._lock:
            for change, path in changes:
                folder, name = os.path.split(path)
                kind = self._kinds.get(folder)
                if kind is None or change == watchfiles.Change.deleted:
                    continue
                if kind == "dirs" and change != watchfiles.Change.added:
                    continue
                out.append(Event(folder, name))
        return out

    def _push(self, events: list[Event]) -> None:
        if not events or self._closed:
            return
        with self._lock:
            self._queue.extend(events)
        try:
            os.write(self._w, b"x")
        except (BlockingIOError, OSError):
            pass  # the pipe is full (already readable) or closed


def _topmost(paths: dict[str, Kind]) -> tuple[str, ...]:
    """The directories among ``paths`` that are inside no other one."""
    out: list[str] = []
    for p in sorted(paths):
        if not any(p.startswith(r.rstrip(os.sep) + os.sep) for r in out):
            out.append(p)
    return tuple(out)
