"""Running the dashboard: ``serve(cfg, host, port, on_ready)``.

Binds the socket first (port 0: the kernel picks a free one), then writes
state/dashboard.json ``{"url", "pid", "port", "token", "host"}`` (0600,
atomic) and state/run/dashboard.pid, calls ``on_ready(info)`` and serves
until SIGINT or SIGTERM; on the way out both files go (only if they still
name this process). ``running(cfg)`` reads the file back, believed only
while its verified pid file says the process lives.

One dashboard per data root: a second one is refused while the first runs.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import sys
from collections.abc import Callable
from typing import Any

from cmux import pidfile
from cmux.config import Config
from cmux.errors import CmuxError
from cmux.fsutil import atomic_write, read_json

INFO = "dashboard.json"
PID = "dashboard.pid"


class NoDashboard(CmuxError):
    """No dashboard runs for this project."""


class DashboardRunning(CmuxError):
    """A dashboard already runs for this project."""


TICK = 1.0  # seconds between the server's looks at a stop request


def _quiet_server(base: Any) -> Any:
    """uvicorn's Server, its main loop waking once a second instead of ten
    times (its idle cost; a stop is seen within TICK, the Date header kept
    to the second)."""
    import asyncio

    class Quiet(base):
        async def main_loop(self) -> None:
            counter = 0
            should_exit = await self.on_tick(counter)
            while not should_exit:
                counter = (counter + 10) % 864000  # on_tick updates the date every 10
                await asyncio.sleep(TICK)
                should_exit = await self.on_tick(counter)

    return Quiet


def _exit(signum: int, frame: object) -> None:
    sys.exit(128 + signum)


def info_path(cfg: Config) -> str:
    return os.path.join(cfg.data.state_path, INFO)


def running(cfg: Config) -> dict[str, Any] | None:
    """The running dashboard's info, or None."""
    pid = pidfile.alive(cfg.data.run_dir / PID)
    if pid is None:
        return None
    try:
        info = read_json(info_path(cfg))
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict) or info.get("pid") != pid:
        return None
    return info


def require_running(cfg: Config) -> dict[str, Any]:
    info = running(cfg)
    if info is None:
        raise NoDashboard(
            "no dashboard runs for this project",
            "start one with `cmux dashboard` (`cmux start` runs it when [dashboard] enabled)",
        )
    return info


def url_host(host: str) -> str:
    if host in ("0.0.0.0", "", "::"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise CmuxError(
            f"the dashboard cannot listen on {host}:{port}: {exc.strerror}",
            "choose another with --port (0: any free one) or [dashboard] port",
        ) from None
    sock.listen(128)
    sock.set_inheritable(False)
    return sock


def serve(
    cfg: Config,
    host: str | None = None,
    port: int | None = None,
    on_ready: Callable[[dict[str, Any]], None] | None = None,
) -> None:
    """Serve the dashboard until a stop signal (see the module's docstring)."""
    import uvicorn

    from cmux.dashboard.app import create_app

    section = cfg.section("dashboard")
    host = host if host is not None else str(section.get("host", "127.0.0.1"))
    port = port if port is not None else int(section.get("port", 0))
    other = running(cfg)
    if other is not None:
        raise DashboardRunning(
            f"a dashboard already runs for this project (pid {other['pid']}): {other['url']}",
            "`cmux dashboard --url` prints its address; stop it first to start another",
        )
    token = secrets.token_urlsafe(24)
    sock = bind(host, port)
    real_port = sock.getsockname()[1]
    info = {
        "url": f"http://{url_host(host)}:{real_port}/?token={token}",
        "pid": os.getpid(),
        "port": real_port,
        "host": host,
        "token": token,
    }
    config = uvicorn.Config(
        create_app(cfg, token),
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=1,
        log_config=None,
    )
    server = _quiet_server(uvicorn.Server)(config)
    pid_path = cfg.data.run_dir / PID
    try:
        import json

        cfg.data.run_dir.mkdir(parents=True, exist_ok=True)
        pidfile.write(pid_path)
        atomic_write(info_path(cfg), json.dumps(info, indent=1) + "\n")
        if on_ready is not None:
            on_ready(info)
        # uvicorn shuts down on SIGTERM, then raises the signal again with the
        # handler it found: this one, so the files below go rather than the
        # process dying at once.
        signal.signal(signal.SIGTERM, _exit)
        server.run(sockets=[sock])
    finally:
        with contextlib.suppress(OSError, ValueError):
            if read_json(info_path(cfg)).get("pid") == os.getpid():
                os.unlink(info_path(cfg))
        pidfile.remove(pid_path)
        sock.close()
