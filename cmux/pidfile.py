"""Pid files that name one process, not a number the kernel hands out again.

A daemon writes ``<pid> <start time>`` (the start time from /proc/<pid>/stat,
in clock ticks since boot); a pid file is believed only while a process with
that pid AND that start time exists. A pid file left by a crashed daemon whose
pid now belongs to another program is therefore stale, and nothing here ever
signals that program. A file without a start time (an older cmux wrote it, or
there is no /proc) cannot be verified: it is never signalled either.

Invariants: ``alive`` never answers a pid whose identity it could not check;
``stop`` signals only what ``alive`` answered; ``remove`` deletes a file only
if it names the calling process (a daemon never removes its successor's file).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from cmux.fsutil import atomic_write


def start_time(pid: int) -> str | None:
    """When ``pid`` started (clock ticks since boot), or None if it is gone,
    a zombie, or cannot be read."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read().decode(errors="replace")
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold anything.
    rest = raw.rpartition(")")[2].split()
    if len(rest) < 20 or rest[0] in ("Z", "X"):
        return None
    return rest[19]  # field 22, starttime


def write(path: Path) -> None:
    """Record the calling process in ``path``."""
    pid = os.getpid()
    atomic_write(path, f"{pid} {start_time(pid) or '-'}\n")


def read(path: Path) -> tuple[int, str | None] | None:
    """(pid, start time) from the file, or None if it is missing or garbled."""
    try:
        parts = path.read_text().split()
        pid = int(parts[0])
    except (OSError, ValueError, IndexError):
        return None
    started = parts[1] if len(parts) > 1 and parts[1] != "-" else None
    return (pid, started) if pid > 0 else None


def alive(path: Path) -> int | None:
    """The pid of the very process that wrote ``path``, if it still runs."""
    rec = read(path)
    if rec is None or rec[1] is None:
        return None
    pid, started = rec
    return pid if start_time(pid) == started else None


def remove(path: Path) -> None:
    """Delete ``path`` if it names the calling process (on a daemon's exit)."""
    rec = read(path)
    if rec is not None and rec[0] == os.getpid():
        path.unlink(missing_ok=True)


def stop(path: Path, *, timeout: float = 3.0) -> bool:
    """End the process ``path`` names (SIGTERM, then SIGKILL after ``timeout``)
    if it is verifiably that process, and delete the file. True if signalled."""
    pid = alive(path)
    signalled = False
    if pid is not None:
        signalled = _signal(pid, path, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while alive(path) == pid and time.monotonic() < deadline:
            time.sleep(0.02)
        if alive(path) == pid:
            _signal(pid, path, signal.SIGKILL)
    if alive(path) is None:
        path.unlink(missing_ok=True)
    return signalled


def _signal(pid: int, path: Path, sig: int) -> bool:
    if alive(path) != pid:  # checked again right before the signal
        return False
    try:
        os.kill(pid, sig)
    except OSError:
        return False
    return True
