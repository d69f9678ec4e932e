"""Every health check ends at its timeout, whatever the other side does:
`cmux health --now` against a real loopback server that trickles a byte
every 0.2 s for ever, and a command that ignores SIGTERM."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from tests.helpers import Project

TIMEOUT = 1.0
MARGIN = 2.0  # the cut, the kill grace, and starting cmux (python, imports)

HEAD_THEN_BODY = b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n"


class Trickler:
    """A loopback HTTP server that answers every request one byte per 0.2 s,
    for ever: with ``head`` False the status line itself trickles; with it,
    the head arrives at once and the body trickles."""

    def __init__(self, head: bool) -> None:
        self.head = head
        self.stop = threading.Event()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.served = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.served += 1
            threading.Thread(target=self._trickle, args=(conn,), daemon=True).start()

    def _trickle(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(2)
            try:
                conn.recv(65536)  # the request
                if self.head:
                    conn.sendall(HEAD_THEN_BODY)
                text = b"HTTP/1.1 200 OK\r\nX-Slow: " if not self.head else b""
                i = 0
                while not self.stop.is_set():
                    conn.sendall(text[i : i + 1] if i < len(text) else b"x")
                    i += 1
                    self.stop.wait(0.2)
            except OSError:
                return  # the check hung up: what it should do

    def close(self) -> None:
        self.stop.set()
        self.thread.join(2)
        self.sock.close()


@pytest.fixture(params=[False, True], ids=["head-trickles", "body-trickles"])
def trickler(request: pytest.FixtureRequest) -> Iterator[Trickler]:
    t = Trickler(head=request.param)
    yield t
    t.close()


def test_a_url_that_trickles_bytes_fails_at_its_timeout(
    project: Project, trickler: Trickler
) -> None:
    with open(project.root / "cmux.toml", "a") as fh:
        fh.write(
            f'\n[health]\n[[health.checks]]\nname = "web"\n'
            f'url = "http://127.0.0.1:{trickler.port}/health"\ntimeout = {TIMEOUT}\n'
        )
    t0 = time.monotonic()
    r = project.cmux("health", "--now", "--json", timeout=30)
    took = time.monotonic() - t0
    assert r.code == 1, (r.out, r.err)
    [result] = r.json()["results"]
    assert not result["ok"] and result["timed_out"], result
    assert "timed out after 1s" in result["detail"]
    assert trickler.served == 1
    assert took < TIMEOUT + MARGIN, f"the check took {took:.1f}s with a timeout of {TIMEOUT}s"
    assert result["seconds"] < TIMEOUT + 0.7


def test_a_command_that_ignores_sigterm_fails_at_its_timeout(project: Project) -> None:
    with open(project.root / "cmux.toml", "a") as fh:
        fh.write(
            '\n[health]\n[[health.checks]]\nname = "stubborn"\n'
            "command = \"trap '' TERM; while :; do sleep 0.1; done\"\n"
            f"timeout = {TIMEOUT}\n"
        )
    t0 = time.monotonic()
    r = project.cmux("health", "--now", "--json", timeout=30)
    took = time.monotonic() - t0
    [result] = r.json()["results"]
    assert r.code == 1 and not result["ok"] and result["timed_out"], result
    assert took < TIMEOUT + 1.0 + MARGIN, f"took {took:.1f}s"  # + the kill grace
