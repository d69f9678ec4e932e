"""The one door to SSH: other hosts (``[hosts.NAME]``) are reached only here.

Invariants:

- Every call is ``ssh -o BatchMode=yes`` (never a password or passphrase
  prompt: a host that wants one fails at once with HostAuthFailed) with a
  ``ConnectTimeout``, and every :meth:`Ssh.run` has a deadline of its own: a
  host that stops answering mid-command is HostUnreachable, never a hang.
- One ControlMaster connection per host, its socket under the data root
  (``run/ssh/``; a short path under /tmp when that one is too long for a
  socket), so a second call to a host is a round trip, not a handshake. Its
  keep-alives end it within ``ALIVE * ALIVE_COUNT`` s of a cut link.
- Host keys are trusted on first use into cmux's own known_hosts
  (``state/ssh/known_hosts``) and checked on every later call; a changed key
  is refused. ``CMUX_SSH_CONFIG`` names an ssh_config file to use instead of
  ~/.ssh/config.
- The output of ssh goes to files, not pipes: a ControlMaster that outlives
  the first call keeps its descriptors, and a pipe would never end.
- Failures are typed, each with a hint: HostUnreachable (no route, refused,
  timed out), HostAuthFailed (the key, the host key), RemoteCommandFailed
  (the command ran and failed: its words in ``stderr``).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass

from cmux.config import Host
from cmux.errors import HostAuthFailed, HostUnreachable, RemoteCommandFailed
from cmux.paths import DataRoot

CONNECT_TIMEOUT = 5.0  # seconds to set up a connection
RUN_TIMEOUT = 30.0  # seconds a command may take, by default
ALIVE = 3  # seconds between keep-alives on an idle connection
ALIVE_COUNT = 2  # unanswered keep-alives before the connection is given up
PERSIST = 60  # seconds a ControlMaster stays after its last use
SSH_EXIT = 255  # ssh's own failure (the remote command's status otherwise)
# A unix socket's path is at most 108 bytes: the folder, "/", %C (40) and the
# ".XXXXXXXXXXXXXXXX" ssh adds to the name while it makes the socket.
_SOCKET_MAX = 104 - 1 - 40 - 17


@dataclass(frozen=True)
class Result:
    """What a command on the host did: its exit status and its output."""

    code: int
    out: str
    err: str


def _control_dir(data: DataRoot) -> str:
    here = os.path.join(str(data.run_dir), "ssh")
    if len(here) <= _SOCKET_MAX:
        return here
    import hashlib

    digest = hashlib.sha1(here.encode()).hexdigest()[:12]
    return os.path.join(tempfile.gettempdir(), f"cmux-ssh-{os.getuid()}", digest)


def _what_it_said(text: str) -> str:
    """The words of a failed command worth showing: from cmux's own
    ``error:`` line on when there is one, else the last lines (at most 400
    characters)."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    if not lines:
        return "no output"
    start = next((i for i, ln in enumerate(lines) if "error:" in ln), max(0, len(lines) - 3))
    said = " ".join(lines[start:])
    return said if len(said) <= 400 else said[:399] + "…"


class Ssh:
    """SSH to one host of ``[hosts]`` for one data root."""

    def __init__(
        self, host: Host, data: DataRoot, *, connect_timeout: float = CONNECT_TIMEOUT
    ) -> None:
        self.host = host
        self.data = data
        self.connect_timeout = connect_timeout

    def options(self) -> list[str]:
        """``ssh`` and every option, without the destination."""
        control = _control_dir(self.data)
        known = os.path.join(self.data.state_path, "ssh", "known_hosts")
        for d in (control, os.path.dirname(known)):
            os.makedirs(d, mode=0o700, exist_ok=True)
        argv = ["ssh"]
        conf = os.environ.get("CMUX_SSH_CONFIG")
        if conf:
            argv += ["-F", conf]
        opts = {
            "BatchMode": "yes",
            "ConnectTimeout": str(max(1, round(self.connect_timeout))),
            "ServerAliveInterval": str(ALIVE),
            "ServerAliveCountMax": str(ALIVE_COUNT),
            "ControlMaster": "auto",
            "ControlPath": os.path.join(control, "%C"),
            "ControlPersist": str(PERSIST),
            "StrictHostKeyChecking": "accept-new",
            "UserKnownHostsFile": known,
            "LogLevel": "ERROR",
        }
        for key, value in opts.items():
            argv += ["-o", f"{key}={value}"]
        if self.host.port:
            argv += ["-p", str(self.host.port)]
        if self.host.identity:
            argv += ["-i", self.host.identity, "-o", "IdentitiesOnly=yes"]
        return argv

    def command_line(self) -> str:
        """The ssh command line as a shell word list, for ``GIT_SSH_COMMAND``
        (git adds the destination and the command)."""
        return shlex.join(self.options())

    def argv(self, command: Sequence[str] | str, *, tty: bool = False) -> list[str]:
        """The whole ``ssh`` argv running ``command`` (an argv, quoted for the
        remote shell, or a shell line as it is) on the host."""
        line = command if isinstance(command, str) else shlex.join(command)
        return [*self.options(), *(["-t"] if tty else ["-T"]), self.host.ssh, "--", line]

    def url(self, path: str) -> str:
        """A git URL for ``path`` on this host."""
        port = f":{self.host.port}" if self.host.port else ""
        return f"ssh://{self.host.ssh}{port}{path if path.startswith('/') else '/' + path}"

    def run(
        self,
        command: Sequence[str] | str,
        *,
        input: bytes | None = None,
        timeout: float = RUN_TIMEOUT,
        check: bool = True,
    ) -> Result:
        """Run ``command`` on the host and wait for it (at most ``timeout``
        s). HostUnreachable / HostAuthFailed when ssh itself failed;
        RemoteCommandFailed when the command did and ``check``."""
        argv = self.argv(command)
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            try:
                proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    start_new_session=True,
                )
            except OSError as exc:
                raise HostUnreachable(
                    f"cannot run ssh: {exc.strerror}",
                    "install the OpenSSH client: `sudo apt-get install openssh-client`",
                    self.host.name,
                ) from None
            try:
                proc.communicate(input, timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                self._drop_master()
                raise HostUnreachable(
                    f"host {self.host.name} ({self.host.ssh}) did not answer within {timeout:g} s",
                    "is it up and on the network? try `ssh " + self.host.ssh + "` by hand",
                    self.host.name,
                ) from None
            out.seek(0)
            err.seek(0)
            result = Result(
                proc.returncode,
                out.read().decode("utf-8", "replace"),
                err.read().decode("utf-8", "replace"),
            )
        if result.code == SSH_EXIT:
            raise self._ssh_failed(result.err)
        if check and result.code != 0:
            shown = command if isinstance(command, str) else shlex.join(command)
            raise RemoteCommandFailed(
                f"on {self.host.name}: `{shown[:80]}` failed (exit {result.code}): "
                + _what_it_said(result.err or result.out),
                f"run it there by hand to see why: ssh {self.host.ssh}",
                self.host.name,
                stderr=result.err,
            )
        return result

    def _drop_master(self) -> None:
        """Tell this host's ControlMaster to go (over its local socket): after
        a call that got no answer it may hang on a dead link, and every later
        call would wait on it until its keep-alives give up."""
        argv = [*self.options(), "-O", "exit", self.host.ssh]
        try:
            subprocess.run(argv, capture_output=True, timeout=5, check=False)
        except (OSError, subprocess.TimeoutExpired):
            pass

    def _ssh_failed(self, stderr: str) -> HostUnreachable | HostAuthFailed:
        words = stderr.strip().splitlines()[-1] if stderr.strip() else "ssh failed"
        name, dest = self.host.name, self.host.ssh
        if "Host key verification failed" in stderr or "HOST IDENTIFICATION HAS CHANGED" in stderr:
            known = os.path.join(self.data.state_path, "ssh", "known_hosts")
            return HostAuthFailed(
                f"host {name} ({dest}): its host key is not the one cmux trusted: {words}",
                f"if the host was reinstalled, remove its line from {known}",
                name,
            )
        if "Permission denied" in stderr or "Too many authentication failures" in stderr:
            key = self.host.identity or "your SSH key"
            return HostAuthFailed(
                f"host {name} ({dest}) refused cmux's SSH login: {words}",
                f"add the public half of {key} to ~/.ssh/authorized_keys there "
                f"(`ssh-copy-id {dest}`); cmux never types a password",
                name,
            )
        return HostUnreachable(
            f"host {name} ({dest}) is unreachable: {words}",
            f"is it up, and does `ssh {dest}` work from here? ([hosts.{name}] in cmux.toml)",
            name,
        )

    def exec_tty(self, command: Sequence[str] | str) -> None:
        """Replace this process with an interactive ssh running ``command``
        on a terminal there (`cmux attach` of an agent on another host)."""
        argv = self.argv(command, tty=True)
        os.execvp(argv[0], argv)
