"""The ONLY module that talks to tmux.

Every call goes to the project's private server (``tmux -L <socket>``), never
the user's default one, and targets panes by ``%id``, never by window name.
Each command is logged at debug level, and tmux's complaints on stderr become
typed errors (TmuxNotRunning, TmuxTargetMissing, TmuxError).

We drive the tmux binary directly rather than through libtmux's object model:
importing libtmux costs ~140 ms, more than the whole budget of
``tools/mailbox send``. The tests use libtmux as an independent observer.
"""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cmux.errors import TmuxError, TmuxNotRunning, TmuxTargetMissing

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
)
_SEP = "\x1f"


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
    )


def _classify(args: Sequence[str], stderr: str) -> TmuxError:
    what = f"tmux {' '.join(args[:2])}: {stderr.strip()}"
    low = stderr.lower()
    if "no server running" in low or "error connecting to" in low or "server exited" in low:
        return TmuxNotRunning(what, "start the session with `cmux start`", stderr=stderr)
    if "can't find" in low or "not found" in low:
        return TmuxTargetMissing(what, stderr=stderr)
    return TmuxError(what, stderr=stderr)


class Tmux:
    """A handle on one private tmux server."""

    def __init__(self, socket_name: str, *, binary: str = "tmux") -> None:
        self.socket_name = socket_name
        self.binary = binary

    @property
    def base(self) -> list[str]:
        return [self.binary, "-L", self.socket_name]

    def cmd(self, *args: str, input: bytes | None = None, check: bool = True) -> str:
        """Run one tmux command on this server and return its stdout."""
        log.debug("tmux %s", " ".join(args))
        env = dict(os.environ)
        env.pop("TMUX", None)  # never let an outer tmux choose the server
        try:
            proc = subprocess.run(
                [*self.base, *args],
                input=input,
                capture_output=True,
                env=env,
                check=False,
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
    ) -> str:
        """Create a detached session; returns the pane id of its first window.

        ``then``: commands run in the same tmux call, right after the session
        exists (server options must be set on a live server).
        """
        args = ["new-session", "-d", "-s", name, "-n", window, "-c", cwd]
        args += ["-x", str(width), "-y", str(height), "-P", "-F", "#{pane_id}"]
        args += _env_args(env)
        args.append(shlex.join(command))
        for extra in then:
            args += [";", *extra]
        return self.cmd(*args).strip().splitlines()[0]

    def new_window(
        self,
        session: str,
        name: str,
        command: Sequence[str],
        *,
        cwd: str,
        env: Mapping[str, str] | None = None,
    ) -> str:
        """Create a window at the end of the session; returns its pane id."""
        args = ["new-window", "-d", "-t", f"={session}:", "-n", name, "-c", cwd]
        args += ["-P", "-F", "#{pane_id}"]
        args += _env_args(env)
        args.append(shlex.join(command))
        return self.cmd(*args).strip()

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
        return _parse_pane(line) if line else None

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
        args = ["load-buffer", "-b", buffer, "-", ";"]
        args += ["paste-buffer", "-p", "-r", "-d", "-b", buffer, "-t", pane_id]
        if enter:
            args += [";", "send-keys", "-t", pane_id, "Enter"]
        self.cmd(*args, input=text.encode())

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
    ) -> None:
        args = ["respawn-pane", "-k", "-t", pane_id, *_env_args(env)]
        if command:
            args.append(shlex.join(command))
        self.cmd(*args)

    def select_window(self, pane_id: str) -> None:
        self.cmd("select-window", "-t", pane_id)


def _env_args(env: Mapping[str, str] | None) -> list[str]:
    out: list[str] = []
    for k, v in (env or {}).items():
        out += ["-e", f"{k}={v}"]
    return out


def attach_command(socket_name: str, session: str, *, binary: str = "tmux") -> list[str]:
    return [binary, "-L", socket_name, "attach-session", "-t", f"={session}"]
