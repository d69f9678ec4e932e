"""Running checks: exit codes, timeouts that end the whole process group, URLs."""

from __future__ import annotations

import http.server
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cmux.health.checks import run_all, run_check, run_command
from cmux.health.config import Check
from tests.helpers import http_server, wait_until


def test_a_passing_and_a_failing_command(tmp_path: Path) -> None:
    ok = run_check(Check("ok", command="echo fine"), tmp_path)
    assert ok.ok and ok.code == 0 and ok.detail == "exit 0: fine"
    bad = run_check(Check("bad", command="echo broken >&2; exit 3"), tmp_path)
    assert not bad.ok and bad.code == 3 and bad.detail == "exit 3: broken"
    assert "broken" in bad.output


def test_the_command_runs_in_the_project_with_its_name(tmp_path: Path) -> None:
    (tmp_path / "flag").write_text("x")
    r = run_check(
        Check("mine", command='test -f flag && test "$CMUX_HEALTH_CHECK" = mine'), tmp_path
    )
    assert r.ok


def test_an_argv_command(tmp_path: Path) -> None:
    assert run_check(Check("argv", command=("sh", "-c", "exit 0")), tmp_path).ok
    missing = run_check(Check("gone", command=("/no/such/binary",)), tmp_path)
    assert not missing.ok and "cannot run" in missing.detail


@pytest.mark.timeout(20)
def test_a_timeout_fails_and_ends_the_whole_group(tmp_path: Path) -> None:
    # The check starts a grandchild that would outlive a naive kill of the shell.
    pidfile = tmp_path / "child.pid"
    cmd = f"sleep 300 & echo $! > {pidfile}; sleep 300"
    t0 = time.monotonic()
    r = run_check(Check("slow", command=cmd, timeout=0.5), tmp_path)
    assert time.monotonic() - t0 < 5
    assert not r.ok and r.timed_out and r.code is None
    assert "timed out after 0.5s" in r.detail
    child = int(pidfile.read_text())

    def gone() -> bool:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return True
        # A zombie waiting for init counts as gone.
        stat = Path(f"/proc/{child}/stat")
        return stat.exists() and stat.read_text().split(") ")[1].startswith("Z")

    wait_until(gone, timeout=5, what="the grandchild to be ended")


def test_a_restart_may_leave_a_server_running(tmp_path: Path) -> None:
    pidfile = tmp_path / "server.pid"
    log = tmp_path / "logs" / "restart.log"
    r = run_command(
        f"sleep 300 & echo $! > {pidfile}; echo started",
        cwd=tmp_path,
        timeout=5,
        reap=False,
        log=log,
    )
    assert r.code == 0 and "started" in log.read_text()
    pid = int(pidfile.read_text())
    try:
        os.kill(pid, 0)  # still alive
    finally:
        os.kill(pid, 9)


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/slow":
            time.sleep(1.5)
        code = {"/ok": 200, "/created": 201, "/broken": 500, "/moved": 404}.get(self.path, 200)
        self.send_response(code)
        self.end_headers()
        self.wfile.write(b"hello")

    def log_message(self, *args: object) -> None:
        pass


class _Server(http.server.ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that gave up (the timeout test) is expected


@pytest.fixture
def server() -> Iterator[str]:
    with http_server(_Handler, _Server) as url:
        yield url


def test_urls_must_answer_2xx(server: str, tmp_path: Path) -> None:
    assert run_check(Check("ok", url=f"{server}/ok"), tmp_path).ok
    assert run_check(Check("created", url=f"{server}/created"), tmp_path).ok
    bad = run_check(Check("broken", url=f"{server}/broken"), tmp_path)
    assert not bad.ok and bad.code == 500 and "HTTP 500" in bad.detail
    assert not run_check(Check("missing", url=f"{server}/moved"), tmp_path).ok


@pytest.mark.timeout(20)
def test_a_slow_url_times_out(server: str, tmp_path: Path) -> None:
    r = run_check(Check("slow", url=f"{server}/slow", timeout=0.3), tmp_path)
    assert not r.ok and r.timed_out and "timed out" in r.detail
    assert r.seconds < 2.5


def test_nothing_listening_is_a_failure(tmp_path: Path) -> None:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    r = run_check(Check("down", url=f"http://127.0.0.1:{port}/", timeout=2), tmp_path)
    assert not r.ok and "cannot connect" in r.detail


def test_run_all_runs_each_check(tmp_path: Path, server: str) -> None:
    results = run_all([Check("a", command="true"), Check("b", url=f"{server}/broken")], tmp_path)
    assert [(r.name, r.ok) for r in results] == [("a", True), ("b", False)]
