"""A real nats-server with JetStream on loopback, for the cluster tier and
bench/bench_cluster.py: its own port, its own store directory, a token.
Standard library only (bench/ imports it)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

BINARY = shutil.which("nats-server") or "/usr/sbin/nats-server"


def available() -> bool:
    return os.access(BINARY, os.X_OK)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class NatsServer:
    """``nats-server -js`` on 127.0.0.1:<port>, store under ``root``.

    ``stop``/``kill`` and ``start`` again keep the port and the store: a
    restart as an operator would do it."""

    def __init__(self, root: Path, *, token: str = "cmux-test-token") -> None:
        self.root = root
        self.store = root / "jetstream"
        self.log = root / "nats-server.log"
        self.token = token
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.cluster: list[str] = []  # extra arguments: a member of a NatsCluster
        self.ready_line = "Server is ready"

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        argv = [
            BINARY,
            "-a", "127.0.0.1",
            "-p", str(self.port),
            "-js",
            "-sd", str(self.store),
            "--auth", self.token,
            "-l", str(self.log),
            *self.cluster,
        ]  # fmt: skip
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nats-server exited ({self.proc.returncode}): {self._tail()}")
            tail = self._tail()
            if "Server is ready" in tail and self.ready_line in tail and self._answers():
                return
            time.sleep(0.02)
        raise RuntimeError(f"nats-server did not come up in {timeout}s: {self._tail()}")

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                return s.recv(4).startswith(b"INFO")
        except OSError:
            return False

    def _tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
        # The next start appends to the log: forget the old "ready" line.
        try:
            self.log.unlink()
        except OSError:
            pass

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


class NatsCluster:
    """Three ``nats-server -js`` on loopback, clustered (each routes to the
    other two), each with its own port, store and log under ``root/sN``.
    A member is ready when its log names the JetStream meta leader; ``url``
    lists all three, the first first."""

    def __init__(self, root: Path, *, token: str = "cmux-test-token") -> None:
        self.servers = [NatsServer(root / f"s{i}", token=token) for i in range(1, 4)]
        routes = [free_port() for _ in self.servers]
        for i, srv in enumerate(self.servers):
            others = ",".join(f"nats://127.0.0.1:{p}" for j, p in enumerate(routes) if j != i)
            srv.cluster = [
                "--server_name", f"s{i + 1}", "--cluster_name", "cmuxloop",
                "--cluster", f"nats://127.0.0.1:{routes[i]}", "--routes", others,
            ]  # fmt: skip
            srv.ready_line = "metadata leader"

    @property
    def url(self) -> str:
        return ",".join(s.url for s in self.servers)

    @property
    def token(self) -> str:
        return self.servers[0].token

    def start(self, timeout: float = 45.0) -> None:
        """All three at once (each waits for the others to elect a leader;
        on a loaded machine that takes a while)."""
        for srv in self.servers:
            srv.root.mkdir(parents=True, exist_ok=True)
        import threading

        errors: list[BaseException] = []

        def up(srv: NatsServer) -> None:
            try:
                srv.start(timeout)
            except BaseException as exc:  # reported below, in this thread
                errors.append(exc)

        threads = [threading.Thread(target=up, args=(s,)) for s in self.servers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:  # with every member's log: an election that never ends shows there
            logs = "\n".join(f"--- s{i}:\n{s._tail()}" for i, s in enumerate(self.servers, 1))
            raise RuntimeError(f"{errors[0]}\n{logs}")

    def kill(self) -> None:
        for srv in self.servers:
            srv.kill()
