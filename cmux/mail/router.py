"""The router daemon: delivers each message into its recipient's pane.

Event-driven: inotify wakes it when a file lands in a mailbox's new/ or an
agent's registry record changes; every wake-up rescans the mailboxes
concerned, and start-up scans them all (and again every 30 s), so a missed
event costs nothing. Held mail is rechecked twice a second while anything is
held; otherwise the router sleeps in the kernel and costs no CPU. (Where
inotify is missing, watchfiles stands in; it polls its queue every few ms.)

It types through one persistent tmux control-mode client (``Tmux.open_control``),
not a tmux process per command: a delivery costs two tmux round trips of
~0.1 ms instead of three forks of ~3 ms.

One router per data root (an flock that dies with its holder, so a killed
router never leaves a stale lock). One pane at a time, each under its own
lock; different panes in parallel.
"""

from __future__ import annotations

import logging
import os
import select
import struct
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from cmux import events
from cmux.agents import registry
from cmux.agents.registry import Agent
from cmux.config import Config
from cmux.errors import CmuxError, SessionError, TmuxError, UnknownAgent
from cmux.fsutil import locked
from cmux.mail import store
from cmux.mail.deliver import render, type_into
from cmux.mail.message import Message
from cmux.paths import DEADLETTER, HUMAN
from cmux.tmux import Pane, Tmux

log = logging.getLogger(__name__)

DEFER = "defer"  # not held: the agent's Stop hook will take the mail
SETTLE = {"claude": 0.05}  # pause between text and Enter, per profile
FULL_SCAN = 30.0  # seconds between safety scans of every mailbox
HELD_RECHECK = 0.5  # seconds between looks at held mail while any is held
COALESCE = 0.001  # after a wake-up, gather what else lands within this time


class Router:
    def __init__(self, cfg: Config, tmux: Tmux, *, workers: int = 8) -> None:
        self.cfg = cfg
        self.data = cfg.data
        self.tmux = tmux
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="deliver")
        self._lock = threading.Lock()
        self._running: set[str] = set()
        self._dirty: set[str] = set()
        self._requeue: set[str] = set()  # boxes whose stale claims to put back
        self.held: set[str] = set()
        self.stopping = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)

    def stop(self) -> None:
        """Ask the loop to end (safe from a signal handler)."""
        self.stopping.set()
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass

    # -- scheduling ------------------------------------------------------------

    def boxes(self) -> list[str]:
        return [n for n in store.recipients(self.data) if n not in (HUMAN, DEADLETTER)]

    def schedule(self, names: Iterable[str]) -> None:
        for name in names:
            with self._lock:
                if name in self._running:
                    self._dirty.add(name)
                    continue
                self._running.add(name)
            self.pool.submit(self._work, name)

    def _work(self, name: str) -> None:
        while True:
            try:
                with self._lock:
                    stale = name in self._requeue
                    self._requeue.discard(name)
                if stale:
                    # In this box's own worker, so never one of our claims in flight.
                    store.unclaim_all(self.data, name, older_than=store.STALE_CLAIM)
                self.deliver_agent(name)
            except Exception:
                log.exception("delivering to %s failed", name)
            with self._lock:
                if name in self._dirty and not self.stopping.is_set():
                    self._dirty.discard(name)
                    continue
                self._running.discard(name)
                return

    def _hold(self, name: str, reason: str) -> None:
        with self._lock:
            self.held.add(name)
        store.set_hold(self.data, name, reason)

    def _release(self, name: str) -> None:
        with self._lock:
            was = name in self.held
            self.held.discard(name)
        if was or store.hold_reason(self.data, name):
            store.set_hold(self.data, name, None)

    def held_names(self) -> set[str]:
        with self._lock:
            return set(self.held)

    def idle(self) -> bool:
        with self._lock:
            return not self._running

    # -- one recipient ---------------------------------------------------------

    def hold_reason(self, name: str, agent: Agent | None, pane: Pane | None) -> str | None:
        if agent is None:
            return "no such agent"
        if agent.state in ("exited", "killed"):
            return f"{name} has {agent.state}"
        if agent.state == "starting":
            return f"{name} is starting"
        if pane is None or pane.dead or not registry.on_server(agent, pane.server):
            return f"{name}'s pane is not there"  # (that pane id, on another server)
        if pane.in_mode:
            return f"{name}'s pane is in copy mode"
        if agent.state == "waiting":
            return f"{name} is waiting for a permission answer"
        dialog = self.dialog_on_screen(agent, pane)
        if dialog:
            return f"{name}'s pane shows {dialog}"
        if agent.profile == "claude" and agent.state == "busy":
            return DEFER
        return None

    def dialog_on_screen(self, agent: Agent, pane: Pane) -> str | None:
        try:
            from cmux.agents import screen
        except ImportError:
            return None
        if agent.profile not in ("claude",) and not getattr(screen, "CHECK_ALL", False):
            return None
        try:
            text = self.tmux.capture(pane.pane_id)
        except TmuxError:
            return None
        return screen.dialog(text)

    def deliver_agent(self, name: str) -> None:
        if not store.pending(self.data, name):
            self._release(name)
            return
        try:
            agent: Agent | None = registry.get(self.data, name)
        except UnknownAgent:
            agent = None
        if agent is None:
            self.deadletter_box(name, f"unknown recipient {name!r}: no agent of that name")
            return
        pane = self.tmux.pane(agent.pane_id) if agent.pane_id else None
        reason = self.hold_reason(name, agent, pane)
        if reason == DEFER:
            return
        if reason:
            self._hold(name, reason)
            return
        self._release(name)
        assert pane is not None
        for loaded in store.claim_each(self.data, name):
            if not self.type_message(agent, pane, loaded.path, loaded.msg):
                return

    def type_message(self, agent: Agent, pane: Pane, path: Path, msg: Message) -> bool:
        """Type one claimed message; True when delivered. On any failure the
        message leaves cur/ at once: back to new/ (to retry) or, if it is
        the message itself that cannot be rendered, to deadletter."""
        try:
            text = render(msg, self.data, agent.profile)
        except (ValueError, UnicodeError) as exc:
            store.quarantine(self.data, agent.name, path, f"cannot be rendered: {exc}")
            return True
        except (CmuxError, OSError) as exc:
            # e.g. a full disk while writing a large body's file: retry later.
            store.requeue(self.data, agent.name, path)
            self._hold(agent.name, f"delivery failed: {getattr(exc, 'message', exc)}")
            return False
        t0 = time.monotonic()
        try:
            typed = type_into(
                self.tmux,
                pane.pane_id,
                text,
                buffer=f"cmux-{msg.id}",
                settle=SETTLE.get(agent.profile, 0.0),
            )
        except TmuxError as exc:
            # The pane went away under us: put the message back, hold the rest.
            store.requeue(self.data, agent.name, path)
            self._hold(agent.name, f"typing failed: {exc.message}")
            return False
        except (ValueError, UnicodeError) as exc:
            store.quarantine(self.data, agent.name, path, f"cannot be typed: {exc}")
            return True
        except BaseException:
            store.requeue(self.data, agent.name, path)
            raise
        try:
            store.mark_delivered(path)
        except OSError:
            pass  # still in cur/ unmarked: delivered again later (at least once)
        store.note(
            self.data,
            "deliver",
            agent.name,
            id=msg.id,
            sender=msg.sender,
            kind=msg.kind,
            via=typed.via,
            retries=typed.enter_retries or None,
            ms=round((time.monotonic() - t0) * 1000, 1),
        )
        return True

    def deadletter_box(self, name: str, reason: str) -> None:
        for fname in store.pending(self.data, name):
            path = store.claim(self.data, name, fname)
            if path is None or store.quarantine(self.data, name, path, reason) is None:
                continue
            notify(
                self.cfg,
                f"Message {fname} could not be delivered: {reason}. "
                f"It is in mailbox/deadletter/ with the reason beside it.",
            )

    # -- the loop ---------------------------------------------------------------

    def recover(self) -> None:
        """At start: claimed but never delivered goes back to new/."""
        for name in self.boxes():
            store.unclaim_all(self.data, name)

    def scan_all(self) -> None:
        """Every box, and in each put back claims that nobody finished."""
        names = self.boxes()
        with self._lock:
            self._requeue.update(names)
        self.schedule(names)
        store.unclaim_all(self.data, HUMAN, older_than=store.STALE_CLAIM)

    def names_from_changes(self, changes: Iterable[tuple[object, str]]) -> set[str]:
        names: set[str] = set()
        mroot = str(self.data.mailbox_dir) + os.sep
        aroot = str(self.data.agents_dir) + os.sep
        for _, path in changes:
            if path.startswith(mroot):
                parts = path[len(mroot) :].split(os.sep)
                if len(parts) >= 2 and parts[1] == "new":
                    names.add(parts[0])
            elif path.startswith(aroot):
                base = os.path.basename(path)
                if base.endswith(".json") and not base.startswith("."):
                    names.add(base[:-5])
        return {n for n in names if n not in (HUMAN, DEADLETTER)}

    def run(self) -> None:
        self.data.agents_dir.mkdir(parents=True, exist_ok=True)
        self.data.mailbox_dir.mkdir(parents=True, exist_ok=True)
        self.recover()
        try:
            watch: Inotify | None = Inotify()
        except OSError as exc:
            log.info("no inotify (%s); watching with watchfiles", exc)
            watch = None
        self.tmux.open_control(self.cfg.session_name)
        try:
            if watch is None:
                self._run_watchfiles()
            else:
                self._run_inotify(watch)
        finally:
            self.pool.shutdown(wait=True)
            self.tmux.close_control()
            if watch is not None:
                watch.close()

    # -- inotify ---------------------------------------------------------------

    def _watch_boxes(self, watch: Inotify) -> set[str]:
        """Watch every mailbox's new/ (and the box, for a new/ made later);
        returns the boxes that were not watched before."""
        added = set()
        for name in self.boxes_present():
            box = self.data.mailbox(name)
            watch.add(str(box), DIR_EVENTS)
            if watch.add(str(box / "new"), FILE_EVENTS):
                added.add(name)
        return added

    def boxes_present(self) -> list[str]:
        try:
            return [
                e.name
                for e in os.scandir(self.data.mailbox_dir)
                if e.is_dir() and e.name not in (HUMAN, DEADLETTER)
            ]
        except FileNotFoundError:
            return []

    def _run_inotify(self, watch: Inotify) -> None:
        mroot = str(self.data.mailbox_dir)
        aroot = str(self.data.agents_dir)
        watch.add(mroot, DIR_EVENTS)
        watch.add(aroot, FILE_EVENTS)
        self._watch_boxes(watch)
        self.scan_all()
        last_full = time.monotonic()
        poller = select.poll()
        poller.register(watch.fd, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        while not self.stopping.is_set():
            now = time.monotonic()
            wait = max(0.0, last_full + FULL_SCAN - now)
            if self.held_names():
                wait = min(wait, HELD_RECHECK)
            ready = poller.poll(wait * 1000)
            if self.stopping.is_set():
                break
            names: set[str] = set()
            rescan = False
            if ready:
                time.sleep(COALESCE)  # a burst of sends wakes us once, not per file
                for folder, mask, fname in watch.read():
                    if mask & IN_Q_OVERFLOW:
                        rescan = True
                    elif folder == aroot:
                        if fname.endswith(".json") and not fname.startswith("."):
                            names.add(fname[:-5])
                    elif folder == mroot:
                        rescan = True  # a new mailbox
                    elif os.path.dirname(folder) == mroot:
                        rescan = True  # a new/ inside a mailbox
                    else:
                        names.add(os.path.basename(os.path.dirname(folder)))
                if rescan:
                    names |= self._watch_boxes(watch)
            now = time.monotonic()
            if now - last_full >= FULL_SCAN:
                watch.add(mroot, DIR_EVENTS)  # (again, if the folders were replaced)
                watch.add(aroot, FILE_EVENTS)
                self._watch_boxes(watch)
                self.scan_all()
                last_full = now
                continue
            # A registry change may release held mail, so held boxes too.
            self.schedule((names - {HUMAN, DEADLETTER}) | self.held_names())

    # -- watchfiles, where there is no inotify -----------------------------------

    def _run_watchfiles(self) -> None:
        import watchfiles

        self.scan_all()
        last_full = time.monotonic()
        for changes in watchfiles.watch(
            self.data.mailbox_dir,
            self.data.agents_dir,
            watch_filter=None,
            debounce=100,
            step=1,
            rust_timeout=500,
            yield_on_timeout=True,
            stop_event=self.stopping,
            raise_interrupt=False,
        ):
            if self.stopping.is_set():
                break
            now = time.monotonic()
            if now - last_full >= FULL_SCAN:
                self.scan_all()
                last_full = now
            elif changes:
                # A registry change may release held mail, so held boxes too.
                self.schedule(self.names_from_changes(changes) | self.held_names())
            else:
                self.schedule(self.held_names())


# inotify(7), through ctypes: the router blocks in the kernel until a file
# lands, instead of waking every few milliseconds to look.
IN_CLOSE_WRITE = 0x008
IN_MOVED_TO = 0x080
IN_CREATE = 0x100
IN_Q_OVERFLOW = 0x4000
IN_IGNORED = 0x8000
FILE_EVENTS = IN_CREATE | IN_MOVED_TO | IN_CLOSE_WRITE
DIR_EVENTS = IN_CREATE | IN_MOVED_TO
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

    def add(self, path: str, mask: int) -> bool:
        """Watch ``path`` (a directory); True if it is newly watched."""
        if path in self.watched:
            return False
        wd = self._add(self.fd, os.fsencode(path), mask)
        if wd < 0:
            log.debug("cannot watch %s: errno %s", path, self._get_errno())
            return False
        self.paths[wd] = path
        self.watched[path] = wd
        return True

    def read(self) -> list[tuple[str, int, str]]:
        """Every event queued now: (directory, mask, file name)."""
        out: list[tuple[str, int, str]] = []
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
                    out.append(("", mask, ""))
                    continue
                folder = self.paths.get(wd)
                if mask & IN_IGNORED:
                    if folder is not None:
                        del self.paths[wd]
                        self.watched.pop(folder, None)
                    continue
                if folder is not None:
                    out.append((folder, mask, name))

    def close(self) -> None:
        os.close(self.fd)


def notify(cfg: Config, text: str) -> None:
    """Tell the person (and the supervisor's mailbox when it exists)."""
    try:
        store.send(cfg, to=HUMAN, body=text, sender="cmux", kind="notice")
    except CmuxError:
        log.exception("could not notify the human")


def run(cfg: Config) -> None:
    """Entry point of `cmux router`: one instance per data root."""
    import signal

    from cmux import pidfile

    cfg.data.run_dir.mkdir(parents=True, exist_ok=True)
    with locked(cfg.data.run_dir / "router.lock", blocking=False) as got:
        if not got:
            pid = (
                (cfg.data.run_dir / "router.pid").read_text().strip()
                if (cfg.data.run_dir / "router.pid").exists()
                else "?"
            )
            raise SessionError(f"a router is already running for {cfg.data.root} (pid {pid})")
        pidfile.write(cfg.data.run_dir / "router.pid")
        router = Router(cfg, Tmux.for_config(cfg))
        signal.signal(signal.SIGTERM, lambda *_: router.stop())
        signal.signal(signal.SIGHUP, lambda *_: router.stop())
        events.record(cfg.data, "router-start", pid=os.getpid())
        try:
            router.run()
        finally:
            pidfile.remove(cfg.data.run_dir / "router.pid")
            events.record(cfg.data, "router-stop", pid=os.getpid())
