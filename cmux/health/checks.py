"""Running one check: a command with a timeout, or a URL that must answer 2xx.

Every check has one deadline, its timeout, for the whole of it: whatever
the command or the server does, the check returns within the timeout plus
a grace of a second or two (KILL_GRACE, CUT_GRACE).

A command runs in its own process group with its output in a temporary file
(never a pipe a stray grandchild could hold open), so on timeout the whole
group is ended, first politely and then with SIGKILL, and the check returns
promptly. A URL is fetched directly (no proxy) in a thread of its own; at the
deadline its connections are cut, so a server that trickles a byte at a time
cannot stretch it. Anything but a complete 2xx answer in time is a failure.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cmux.health.config import Check
from cmux.umask import user_umask

OUTPUT_TAIL = 2000  # characters of a command's output kept with its result
KILL_GRACE = 1.0  # seconds between SIGTERM and SIGKILL of a timed-out group
CUT_GRACE = 0.5  # seconds a URL fetch is given to end after its connections are cut


@dataclass
class CheckResult:
    name: str
    ok: bool
    detail: str
    seconds: float
    ts: float
    timed_out: bool = False
    code: int | None = None
    output: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CheckResult:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass
class CommandResult:
    code: int | None
    output: str
    seconds: float
    timed_out: bool


def _kill_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def run_command(
    command: str | Sequence[str],
    *,
    cwd: Path,
    timeout: float,
    env: Mapping[str, str] | None = None,
    reap: bool = True,
    log: Path | None = None,
) -> CommandResult:
    """Run ``command`` (a shell line or an argv) and end its whole group on timeout.

    With ``reap`` (checks), whatever the command left running in its group is
    ended when it exits; without (a restart that starts a server in the
    background), it is left alone. ``log`` also keeps the output in that file.
    """
    argv = ["/bin/sh", "-c", command] if isinstance(command, str) else list(command)
    t0 = time.monotonic()
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
    opened = open(log, "w+b") if log is not None else tempfile.TemporaryFile()  # noqa: SIM115
    with opened as out:
        try:
            proc = subprocess.Popen(
                argv,
                cwd=cwd,
                env={**os.environ, **(env or {})},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                umask=user_umask(),  # the person's command, the person's umask
            )
        except OSError as exc:
            return CommandResult(None, f"cannot run: {exc}", time.monotonic() - t0, False)
        timed_out = False
        try:
            code: int | None = proc.wait(timeout=timeout)
        except BaseException as exc:
            if not isinstance(exc, subprocess.TimeoutExpired):
                _kill_group(proc.pid, signal.SIGKILL)  # we are going away: take it along
                raise
            timed_out = True
            _kill_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=KILL_GRACE)
            except subprocess.TimeoutExpired:
                pass
            _kill_group(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=KILL_GRACE)  # bounded too: the check has a deadline
            code = None
        else:
            if reap:  # the leader is gone; end anything it left in its group
                _kill_group(proc.pid, signal.SIGKILL)
        seconds = time.monotonic() - t0
        out.seek(0, os.SEEK_END)
        size = out.tell()
        out.seek(max(0, size - 4 * OUTPUT_TAIL))
        text = out.read().decode("utf-8", "replace")[-OUTPUT_TAIL:]
    return CommandResult(code, text, seconds, timed_out)


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1][:200] if lines else ""


def run_command_check(
    check: Check, cwd: Path, env: Mapping[str, str] | None = None, log: Path | None = None
) -> CheckResult:
    """Run a command check; ``log`` keeps its whole output in that file (the
    result holds the tail)."""
    assert check.command is not None
    ts = time.time()
    r = run_command(
        check.command,
        cwd=cwd,
        timeout=check.timeout,
        env={**(env or {}), "CMUX_HEALTH_CHECK": check.name},
        log=log,
    )
    if r.timed_out:
        detail = f"timed out after {check.timeout:g}s (its process group was ended)"
    elif r.code is None:
        detail = r.output.strip() or "could not run"
    else:
        last = _last_line(r.output)
        detail = f"exit {r.code}" + (f": {last}" if last else "")
    return CheckResult(
        name=check.name,
        ok=r.code == 0 and not r.timed_out,
        detail=detail,
        seconds=round(r.seconds, 3),
        ts=ts,
        timed_out=r.timed_out,
        code=r.code,
        output=r.output,
    )


class _Cutter:
    """The connections of one URL fetch, so that they can be cut at its deadline.

    urllib's timeout bounds each socket read, not the fetch: a server that
    sends a byte every second keeps it going for ever. Every connection the
    fetch opens (redirects open more) is noted here, and :meth:`cut` shuts
    their sockets down, which ends any read in progress at once."""

    def __init__(self) -> None:
        self.conns: list[http.client.HTTPConnection] = []
        self.cut_off = False

    def factory(self, base: type[http.client.HTTPConnection]) -> Any:
        def make(host: str, **kw: Any) -> http.client.HTTPConnection:
            conn = base(host, **kw)
            self.conns.append(conn)
            if self.cut_off:
                self.cut()
            return conn

        return make

    def cut(self) -> None:
        self.cut_off = True
        for conn in list(self.conns):
            sock = conn.sock
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


def _opener(cutter: _Cutter) -> urllib.request.OpenerDirector:
    class Http(urllib.request.HTTPHandler):
        def http_open(self, req: Any) -> Any:
            return self.do_open(cutter.factory(http.client.HTTPConnection), req)

    class Https(urllib.request.HTTPSHandler):
        def https_open(self, req: Any) -> Any:
            return self.do_open(
                cutter.factory(http.client.HTTPSConnection),
                req,
                context=getattr(self, "_context", None),
            )

    # No proxy: a check asks the address it names.
    return urllib.request.build_opener(urllib.request.ProxyHandler({}), Http, Https)


def _fetch(url: str, timeout: float, cutter: _Cutter) -> tuple[bool, int | None, bool, str]:
    """(ok, HTTP code, timed out, detail) of one GET."""
    ok, code, timed_out = False, None, False
    try:
        with _opener(cutter).open(url, timeout=timeout) as resp:
            code = resp.status
            resp.read(65536)
        ok = 200 <= (code or 0) < 300
        detail = f"HTTP {code}"
    except urllib.error.HTTPError as exc:
        code = exc.code
        detail = f"HTTP {exc.code} {exc.reason}"
    except urllib.error.URLError as exc:
        timed_out = isinstance(exc.reason, (socket.timeout, TimeoutError))
        detail = f"timed out after {timeout:g}s" if timed_out else f"cannot connect: {exc.reason}"
    except TimeoutError:
        timed_out = True
        detail = f"timed out after {timeout:g}s"
    except (OSError, ValueError, http.client.HTTPException) as exc:
        detail = f"failed: {exc}"
    return ok, code, timed_out, detail


def run_url_check(check: Check) -> CheckResult:
    """GET the URL; whatever the server does, the answer comes within the
    check's timeout (plus a moment): the whole fetch runs against one
    deadline, and at the deadline its connections are cut."""
    assert check.url is not None
    ts = time.time()
    t0 = time.monotonic()
    cutter = _Cutter()
    box: list[tuple[bool, int | None, bool, str]] = []
    worker = threading.Thread(
        target=lambda: box.append(_fetch(check.url or "", check.timeout, cutter)),
        name=f"check-{check.name}",
        daemon=True,  # a fetch stuck where no cut reaches (a name lookup) never blocks exit
    )
    worker.start()
    worker.join(check.timeout)
    if worker.is_alive():
        cutter.cut()
        worker.join(CUT_GRACE)
    if cutter.cut_off or not box:  # a fetch that had to be cut failed, whatever it read
        ok, code, timed_out = False, None, True
        detail = f"timed out after {check.timeout:g}s (no complete answer in time)"
    else:
        ok, code, timed_out, detail = box[0]
    return CheckResult(
        name=check.name,
        ok=ok,
        detail=detail,
        seconds=round(time.monotonic() - t0, 3),
        ts=ts,
        timed_out=timed_out,
        code=code,
    )


def run_check(
    check: Check, cwd: Path, env: Mapping[str, str] | None = None, log: Path | None = None
) -> CheckResult:
    if check.url:
        return run_url_check(check)
    return run_command_check(check, cwd, env, log)


def run_all(
    checks: Sequence[Check], cwd: Path, env: Mapping[str, str] | None = None
) -> list[CheckResult]:
    """Run every check, one after another (a check may load the machine)."""
    return [run_check(c, cwd, env) for c in checks]
