"""The ONLY module that talks to tmux.

Every call goes to the project's private server (``tmux -L <socket>``), never
the user's default one, and targets panes by ``%id``, never by window name.
Each command is logged at debug level, and tmux's complaints on stderr become
typed errors (TmuxNotRunning, TmuxTargetMissing, TmuxError).

We drive the tmux binary directly rather than through libtmux's object model:
importing libtmux costs ~140 ms, more than the whole budget of
``tools/mailbox send``. The tests use libtmux as an independent observer.

Each command is normally one ``tmux`` process (a fork and exec, ~2-3 ms of
CPU). A daemon that talks to tmux all day (the router) opens a ``Control``
channel instead: one persistent control-mode client (``tmux -C``) through
which a command costs a line written and a block read (~0.1 ms). If the
channel is lost, commands fall back to a process each.
"""

from __future__ import annotations

import logging
import os
import select
import shlex
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from cmux.errors import TmuxError, TmuxNotRunning, TmuxTargetMissing
from cmux.umask import user_umask

if TYPE_CHECKING:
    from cmux.config import Config

log = logging.getLogger(__name__)

_PANE_FIELDS = (
    "pane_id",
    "window_id",
    "window_name",
    "session_name",
    "pane_pid",
    "pane_dead",
    "pane_dead_status",
    "pane_in_mode",
    "pane_current_command",
    "pane_width",
    "pane_height",
    "pane_dead_signal",
    "pane_dead_time",
    "pid",  # the server's: with start_time, which server this pane lives on
    "start_time",
)
_SEP = "\x1f"
# A server's identity: its pid and start time. Pane ids (%0, %1 ...) restart
# on every new server, so a pane id means something only together with this.
SERVER_ID = "#{pid}:#{start_time}"


@dataclass(frozen=True)
class Pane:
    pane_id: str
    window_id: str
    window_name: str
    session: str
    pid: int | None
    dead: bool
    dead_status: int | None
    in_mode: bool
    current_command: str
    width: int
    height: int
    # Set instead of dead_status when the process was killed by a signal
    # (tmux leaves pane_dead_status empty then).
    dead_signal: int | None = None
    dead_time: int | None = None  # when it died (epoch seconds)
    server: str = ""  # the identity of the server it lives on (SERVER_ID)


class NewPane(NamedTuple):
    """A pane just made, and the identity of the server that made it."""

    pane_id: str
    server: str


def _parse_pane(line: str) -> Pane:
    f = line.split(_SEP)
    f += [""] * (len(_PANE_FIELDS) - len(f))

    def num(s: str) -> int | None:
        try:
            return int(s)
        except ValueError:
            return None

    return Pane(
        pane_id=f[0],
        window_id=f[1],
        window_name=f[2],
        session=f[3],
        pid=num(f[4]),
        dead=f[5] == "1",
        dead_status=num(f[6]),
        in_mode=f[7] == "1",
        current_command=f[8],
        width=num(f[9]) or 0,
        height=num(f[10]) or 0,
        dead_signal=num(f[11]),
        dead_time=num(f[12]),
        server=f"{f[13]}:{f[14]}" if f[13] else "",
    )


def _classify(args: Sequence[str], stderr: str) -> TmuxError:
    what = f"tmux {' '.join(args[:2])}: {stderr.strip()}"
    low = stderr.lower()
    if "no server running" in low or "error connecting to" in low or "server exited" in low:
        return TmuxNotRunning(what, "start the session with `cmux start`", stderr=stderr)
    if "can't find" in low or "not found" in low:
        return TmuxTargetMissing(what, stderr=stderr)
    return TmuxError(what, stderr=stderr)


def _client_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("TMUX", None)  # never let an outer tmux choose the server
    return env


def format_literal(text: str) -> str:
    """``text`` where tmux expands a format, read back as exactly ``text``.

    tmux runs ``#(command)`` and expands ``#{...}``, ``#S`` and the like in
    every argument it reads as a format: new-session's ``-s``, ``-n`` and
    ``-c``, new-window's ``-n`` and ``-c``, run-shell's command (so a hook's
    too), status-left/right. ``##`` is a literal ``#`` there, so doubling
    every ``#`` makes a path or a name inert. Every such argument cmux builds
    from a name or path goes through here; the formats cmux means
    (``#{pane_id}``) are added around it, never inside.
    """
    return text.replace("#", "##")


def quote(arg: str) -> str:
    """``arg`` as one word of a tmux command line (what control mode reads).

    A bare ``;`` stays the command separator. Single quotes keep everything
    literal (``$``, ``~``, ``#{``, ``;``, ``\\``); a line break, tab or other
    control character cannot travel in a line, so such an argument goes in
    double quotes with escapes, and ``$`` and ``\\`` escaped.
    """
    if arg == ";":
        return arg
    if not any(c < " " or c == "\x7f" for c in arg):
        return "'" + arg.replace("'", "'\\''") + "'"
    out = ['"']
    for c in arg:
        if c in '\\"$':
            out.append("\\" + c)
        elif c == "\n":
            out.append("\\n")
        elif c == "\t":
            out.append("\\t")
        elif c < " " or c == "\x7f":
            out.append(f"\\{ord(c):03o}")
        else:
            out.append(c)
    out.append('"')
    return "".join(out)


class ControlLost(TmuxError):
    """The control-mode client is gone (the server or session ended)."""


class Control:
    """One persistent control-mode client (``tmux -C attach``) on a session.

    Attached with ``ignore-size`` (it never changes a window's size) and
    ``no-output`` (tmux does not stream the panes' output to it). A command
    line written to it is answered, in order, by one ``%begin``/``%end`` (or
    ``%error``) block per command; notifications between blocks are skipped.
    One command line at a time, under a lock: threads share the channel.
    """

    def __init__(self, base: Sequence[str], session: str, *, timeout: float = 10.0) -> None:
        self.timeout = timeout
        self.lock = threading.Lock()
        self.proc = subprocess.Popen(
            [*base, "-C", "attach-session", "-f", "ignore-size,no-output", "-t", f"={session}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=_client_env(),
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._in = self.proc.stdin
        self._fd = self.proc.stdout.fileno()
        self._buf = b""
        try:
            with self.lock:
                ok, text = self._block()  # the answer to the attach itself
        except ControlLost:
            self.close()
            raise
        if not ok:
            self.close()
            raise ControlLost(f"tmux control client: {text.strip()}")

    def _line(self, deadline: float) -> bytes:
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._fd], [], [], left)[0]:
                raise ControlLost("tmux did not answer the control client in time")
            chunk = os.read(self._fd, 65536)
            if not chunk:
                raise ControlLost("the tmux control client ended")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line

    def _block(self) -> tuple[bool, str]:
        """Read up to and including the next command block: (ok, its text)."""
        deadline = time.monotonic() + self.timeout
        while True:
            line = self._line(deadline)
            if line.startswith(b"%begin "):
                tag = line.split(b" ")[1:3]
                break
            if line.startswith(b"%exit"):
                raise ControlLost("the tmux control client was told to exit")
        body: list[bytes] = []
        while True:
            line = self._line(deadline)
            if line.startswith((b"%end ", b"%error ")) and line.split(b" ")[1:3] == tag:
                text = b"".join(x + b"\n" for x in body).decode(errors="replace")
                return line.startswith(b"%end"), text
            body.append(line)

    def run(self, args: Sequence[str]) -> tuple[bool, str]:
        """Run a command list; (False, error) at the first command that fails."""
        line = " ".join(quote(a) for a in args) + "\n"
        count = 1 + sum(1 for a in args if a == ";")
        with self.lock:
            try:
                self._in.write(line.encode())
                self._in.flush()
            except (BrokenPipeError, ValueError, OSError) as exc:
                raise ControlLost(f"the tmux control client is gone: {exc}") from exc
            out: list[str] = []
            for _ in range(count):
                ok, text = self._block()
                if not ok:
                    return False, text
                out.append(text)
            return True, "".join(out)

    def close(self) -> None:
        try:
            self._in.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


class Tmux:
    """A handle on one private tmux server."""

    RETRY_CONTROL = 5.0  # seconds before a lost control channel is opened again

    def __init__(self, socket_name: str, *, binary: str = "tmux") -> None:
        self.socket_name = socket_name
        self.binary = binary
        self._control: Control | None = None
        self._control_session: str | None = None
        self._control_retry = 0.0
        self._control_lock = threading.Lock()

    @classmethod
    def for_config(cls, cfg: Config) -> Tmux:
        """The one way cmux builds its handle on a project's server: the
        config's private socket, and the tmux binary $CMUX_TMUX_BIN names
        (default ``tmux``)."""
        return cls(cfg.socket_name, binary=os.environ.get("CMUX_TMUX_BIN", "tmux"))

    @property
    def base(self) -> list[str]:
        return [self.binary, "-L", self.socket_name]

    # -- the control channel -------------------------------------------------

    def open_control(self, session: str) -> bool:
        """Send commands through one persistent control-mode client attached
        to ``session`` from now on (False: not possible now; tried again
        later, and commands run as processes meanwhile)."""
        self._control_session = session
        return self._get_control() is not None

    def close_control(self) -> None:
        with self._control_lock:
            ctl, self._control, self._control_session = self._control, None, None
        if ctl is not None:
            ctl.close()

    @property
    def control_open(self) -> bool:
        return self._control is not None

    def _get_control(self) -> Control | None:
        if self._control is not None or self._control_session is None:
            return self._control
        with self._control_lock:
            now = time.monotonic()
            if self._control is None and self._control_session and now >= self._control_retry:
                try:
                    self._control = Control(self.base, self._control_session)
                    log.info("tmux control client attached to %s", self._control_session)
                except (ControlLost, OSError) as exc:
                    log.info("no tmux control client (%s); one process per command", exc)
                    self._control_retry = now + self.RETRY_CONTROL
            return self._control

    def _lost(self, ctl: Control, exc: Exception) -> None:
        log.info("tmux control client lost (%s); one process per command", exc)
        with self._control_lock:
            if self._control is ctl:
                self._control = None
                self._control_retry = time.monotonic() + self.RETRY_CONTROL
        ctl.close()

    def _via_control(self, args: Sequence[str]) -> tuple[bool, str] | None:
        ctl = self._get_control()
        if ctl is None:
            return None
        try:
            return ctl.run(args)
        except ControlLost as exc:
            self._lost(ctl, exc)
            return None

    # -- commands ------------------------------------------------------------

    def cmd(self, *args: str, input: bytes | None = None, check: bool = True) -> str:
        """Run one tmux command on this server and return its stdout."""
        log.debug("tmux %s", " ".join(args))
        if input is None and self._control_session is not None:
            answer = self._via_control(args)
            if answer is not None:
                ok, text = answer
                if not ok and check:
                    raise _classify(args, text)
                return text if ok else ""
        env = _client_env()
        try:
            proc = subprocess.run(
                [*self.base, *args],
                input=input,
                capture_output=True,
                env=env,
                check=False,
                # The first call starts the server, and the agents inherit
                # its umask: the person's, not cmux's private one.
                umask=user_umask(),
            )
        except FileNotFoundError as exc:
            raise TmuxError(
                f"tmux is not installed ({self.binary} not found)",
                "install tmux >= 3.2, e.g. `sudo apt-get install tmux`, or run bin/cmux",
            ) from exc
        if proc.returncode != 0 and check:
            raise _classify(args, proc.stderr.decode(errors="replace"))
        return proc.stdout.decode(errors="replace")

    # -- server and sessions -------------------------------------------------

    def server_running(self) -> bool:
        try:
            self.cmd("list-sessions")
        except TmuxError:
            return False
        return True

    def server_id(self) -> str | None:
        """The identity of the running server (SERVER_ID), or None if none runs."""
        try:
            out = self.cmd("display-message", "-p", SERVER_ID).strip()
        except TmuxError:
            return None
        pid, _, started = out.partition(":")
        return out if pid.isdigit() and started.isdigit() else None

    def reap(self, server: str) -> None:
        """Make the server ``server`` collect its dead children now.

        tmux below 3.5 can miss a SIGCHLD (libutempter swaps the handler while a
        pane is spawned): the dead process stays a zombie, the pane shows dead
        without an exit status and the pane-died hook never fires. A SIGCHLD
        sent again is harmless (tmux reaps with WNOHANG) and brings both.
        """
        import signal

        try:
            pid = int(server.partition(":")[0])
        except ValueError:
            return
        live = self.server_id()
        if live != server:
            return  # not that server any more: never signal a reused pid
        try:
            os.kill(pid, signal.SIGCHLD)
        except OSError:
            pass

    def has_session(self, name: str) -> bool:
        try:
            self.cmd("has-session", "-t", f"={name}")
        except TmuxError:
            return False
        return True

    def new_session(
        self,
        name: str,
        window: str,
        command: Sequence[str],
        *,
        cwd: str,
        env: Mapping[str, str] | None = None,
        width: int = 200,
        height: int = 50,
        then: Sequence[Sequence[str]] = (),
    ) -> NewPane:
        """Create a detached session; returns the pane of its first window.

        ``then``: commands run in the same tmux call, right after the session
        exists (server options must be set on a live server).
        """
        args = ["new-session", "-d", "-s", format_literal(name), "-n", format_literal(window)]
        args += ["-c", format_literal(cwd)]
        args += ["-x", str(width), "-y", str(height), "-P", "-F", _NEW_PANE]
        args += _env_args(env)
        args.append(shlex.join(command))
        for extra in then:
            args += [";", *extra]
        return _new_pane(self.cmd(*args).strip().splitlines()[0])

    def new_window(
        self,
        session: str,
        name: str,
        command: Sequence[str],
        *,
        cwd: str,
        env: Mapping[str, str] | None = None,
    ) -> NewPane:
        """Create a window at the end of the session; returns its pane."""
        args = ["new-window", "-d", "-t", f"={session}:", "-n", format_literal(name)]
        args += ["-c", format_literal(cwd)]
        args += ["-P", "-F", _NEW_PANE]
        args += _env_args(env)
        args.append(shlex.join(command))
        return _new_pane(self.cmd(*args).strip())

    def kill_server(self) -> None:
        try:
            self.cmd("kill-server")
        except TmuxNotRunning:
            pass

    def kill_session(self, name: str) -> None:
        self.cmd("kill-session", "-t", f"={name}")

    # -- panes -----------------------------------------------------------------

    def list_panes(self) -> list[Pane]:
        """Every pane on this server (empty when the server is not running)."""
        fmt = _SEP.join(f"#{{{f}}}" for f in _PANE_FIELDS)
        try:
            out = self.cmd("list-panes", "-a", "-F", fmt)
        except TmuxNotRunning:
            return []
        return [_parse_pane(line) for line in out.splitlines() if line]

    def pane(self, pane_id: str) -> Pane | None:
        fmt = _SEP.join(f"#{{{f}}}" for f in _PANE_FIELDS)
        try:
            out = self.cmd("display-message", "-p", "-t", pane_id, "-F", fmt)
        except (TmuxTargetMissing, TmuxNotRunning):
            return None
        line = out.strip("\n")
        # tmux answers a pane it cannot find with empty fields, not an error.
        return _parse_pane(line) if line.split(_SEP, 1)[0] else None

    def capture(self, pane_id: str, *, history: bool = False, escapes: bool = False) -> str:
        args = ["capture-pane", "-p", "-J", "-t", pane_id]
        if history:
            args += ["-S", "-"]
        if escapes:
            args.append("-e")
        return self.cmd(*args)

    def send_literal(self, pane_id: str, text: str, *, enter: bool = False) -> None:
        """Type ``text`` as literal characters (no key-name lookup).

        tmux reads a trailing ``;`` of an argument as a command separator, so
        trailing semicolons are sent as hex key codes. With ``enter`` the
        Enter key follows in the same tmux call.
        """
        body = text.rstrip(";")
        semis = len(text) - len(body)
        args: list[str] = []
        if body:
            args += ["send-keys", "-t", pane_id, "-l", "--", body]
        if semis:
            args += [";"] if args else []
            args += ["send-keys", "-t", pane_id, "-H", *(["3b"] * semis)]
        if enter:
            args += [";"] if args else []
            args += ["send-keys", "-t", pane_id, "Enter"]
        if args:
            self.cmd(*args)

    def send_keys(self, pane_id: str, *keys: str) -> None:
        """Press named keys (``Enter``, ``Escape``, ``C-c`` ...)."""
        self.cmd("send-keys", "-t", pane_id, *keys)

    def paste(self, pane_id: str, text: str, *, buffer: str, enter: bool = False) -> None:
        """Paste ``text`` through a uniquely named buffer, bracketed if the
        program asked for it, and delete the buffer; one tmux call."""
        args = ["paste-buffer", "-p", "-r", "-d", "-b", buffer, "-t", pane_id]
        if enter:
            args += [";", "send-keys", "-t", pane_id, "Enter"]
        if self._control_session is not None:
            # Through the control channel the text travels in the command line.
            answer = self._via_control(["set-buffer", "-b", buffer, "--", text, ";", *args])
            if answer is not None:
                ok, err = answer
                if not ok:
                    raise _classify(["set-buffer", "-b", buffer], err)
                return
        self.cmd("load-buffer", "-b", buffer, "-", ";", *args, input=text.encode())

    def cursor_line(self, pane_id: str) -> str:
        """The text on the line where the pane's cursor is."""
        out = self.cmd(
            "display-message",
            "-p",
            "-t",
            pane_id,
            "#{cursor_y}",
            ";",
            "capture-pane",
            "-p",
            "-J",
            "-t",
            pane_id,
        )
        first, _, screen = out.partition("\n")
        try:
            y = int(first.strip())
        except ValueError:
            return ""
        lines = screen.split("\n")
        return lines[y] if 0 <= y < len(lines) else ""

    def kill_pane(self, pane_id: str) -> None:
        self.cmd("kill-pane", "-t", pane_id)

    def kill_window_of(self, pane_id: str) -> None:
        self.cmd("kill-window", "-t", pane_id)

    def respawn_pane(
        self,
        pane_id: str,
        command: Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
        *,
        kill: bool = True,
    ) -> None:
        """Start the pane's command again; with ``kill=False`` only if the pane
        is dead (tmux refuses a live one: of two menders, one wins)."""
        args = ["respawn-pane", *(["-k"] if kill else []), "-t", pane_id, *_env_args(env)]
        if command:
            args.append(shlex.join(command))
        self.cmd(*args)

    def select_window(self, pane_id: str) -> None:
        self.cmd("select-window", "-t", pane_id)

    def switch_client(self, session: str) -> None:
        """Show ``session`` in the client of this server the caller runs in."""
        self.cmd("switch-client", "-t", f"={session}")


_NEW_PANE = "#{pane_id} " + SERVER_ID


def _new_pane(line: str) -> NewPane:
    pane_id, _, server = line.partition(" ")
    return NewPane(pane_id, server)


def _env_args(env: Mapping[str, str] | None) -> list[str]:
    out: list[str] = []
    for k, v in (env or {}).items():
        out += ["-e", f"{k}={v}"]
    return out


def attach_command(socket_name: str, session: str, *, binary: str = "tmux") -> list[str]:
    return [binary, "-L", socket_name, "attach-session", "-t", f"={session}"]


# -- the person's own tmux ------------------------------------------------------
# When `cmux attach` runs inside another tmux server (the person's), that
# server is reached through $TMUX, as any program in one of its panes would.


def enclosing_socket() -> str | None:
    """The socket name of the tmux server this process runs inside ($TMUX),
    None outside tmux."""
    inside = os.environ.get("TMUX", "")
    if not inside:
        return None
    return Path(inside.split(",")[0]).name


def open_in_enclosing(window: str, command: Sequence[str]) -> None:
    """Open a window named ``window`` on the tmux server this process runs
    inside (the person's, through $TMUX), running ``command`` without $TMUX.
    Best effort: a failure is tmux's to show."""
    subprocess.run(
        ["tmux", "new-window", "-n", format_literal(window), "env -u TMUX " + shlex.join(command)],
        check=False,
    )


def version(binary: str = "tmux") -> str | None:
    """What ``tmux -V`` says (e.g. ``tmux 3.4``), None if it cannot be run."""
    try:
        proc = subprocess.run(
            [binary, "-V"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (proc.stdout or proc.stderr).strip() if proc.returncode == 0 else None
