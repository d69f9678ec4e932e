"""Helpers shared by every test tier and by bench/: waiting with a deadline,
running cmux as a real process, a private tmux server and HOME per test.
Standard library only at import time (bench/ imports this module too)."""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parents[1]
T = TypeVar("T")

# What a private environment keeps of the caller's.
KEEP_ENV = (
    "PATH",
    "LANG",
    "LC_ALL",
    "TERM",
    "USER",
    "LOGNAME",
    "SHELL",
    "TZ",
    "CMUX_TEST_CLAUDE",
    "CMUX_TEST_CODEX",
    "CMUX_TEST_GEMINI",
)


def private_env(home: Path, sockdir: Path) -> dict[str, str]:
    """The environment of a process that reaches none of the user's own:
    HOME is ``home`` (with a .gitconfig that names a test author), tmux
    sockets go under ``sockdir`` (TMUX_TMPDIR), git reads no system config,
    and of the caller's variables only KEEP_ENV pass (no CMUX_*, no TMUX)."""
    (home / ".gitconfig").write_text("[user]\n\temail = test@example.invalid\n\tname = cmux test\n")
    env = {k: v for k, v in os.environ.items() if k in KEEP_ENV}
    env.update(
        HOME=str(home),
        TMUX_TMPDIR=str(sockdir),
        GIT_CONFIG_GLOBAL=str(home / ".gitconfig"),
        GIT_CONFIG_NOSYSTEM="1",
        LANG=os.environ.get("LANG") or "C.UTF-8",
    )
    return env


def kill_servers(sockdir: Path) -> None:
    """End every tmux server with a socket under ``sockdir``."""
    for sock in sockdir.glob("tmux-*/*"):
        subprocess.run(["tmux", "-S", str(sock), "kill-server"], capture_output=True, check=False)


def wait_until(
    fn: Callable[[], T], *, timeout: float = 10.0, interval: float = 0.05, what: str = ""
) -> T:
    """Poll ``fn`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = fn()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout}s waiting for {what or fn}: last={last!r}"
            )
        time.sleep(interval)


@contextmanager
def http_server(
    handler: type[http.server.BaseHTTPRequestHandler],
    server: type[http.server.ThreadingHTTPServer] = http.server.ThreadingHTTPServer,
) -> Iterator[str]:
    """Serve ``handler`` on a free port of 127.0.0.1 from a thread; yields the
    base URL (``http://127.0.0.1:PORT``) and stops the server on the way out."""
    httpd = server(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout


def make_repo(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.email", "test@example.invalid")
    git(path, "config", "user.name", "cmux test")
    (path / "README.md").write_text("# test project\n")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "initial")
    return path


@dataclass
class Run:
    code: int
    out: str
    err: str
    ms: float = 0.0  # wall time of the process (bench/ reads it)

    def json(self) -> Any:
        return json.loads(self.out)


@dataclass
class Project:
    """A real git repository made a cmux project, and ways to drive it."""

    root: Path
    env: dict[str, str]

    @property
    def data(self) -> Path:
        return self.root / ".cmux"

    def cmux(
        self,
        *args: str,
        input: str | None = None,
        timeout: float = 60,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> Run:
        t = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "cmux", *args],
            cwd=cwd or self.root,
            env={**self.env, **(env or {})},
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return Run(proc.returncode, proc.stdout, proc.stderr, (time.perf_counter() - t) * 1000)

    def ok(self, *args: str, **kw: Any) -> Run:
        r = self.cmux(*args, **kw)
        assert r.code == 0, f"cmux {' '.join(args)} failed ({r.code}):\n{r.out}\n{r.err}"
        return r

    def tool(
        self,
        tool: str,
        *args: str,
        agent: str | None = None,
        input: str | None = None,
        timeout: float = 30,
        extra_env: dict[str, str] | None = None,
    ) -> Run:
        """Run tools/TOOL as ``agent`` would: with its name and its real token."""
        env = dict(self.env)
        env.update(
            {
                "CMUX_HOME": str(self.data),
                "CMUX_PROJECT": str(self.root),
                "CMUX_PYTHON": sys.executable,
            }
        )
        if agent and agent != "human":  # the person is a process without CMUX_AGENT
            env["CMUX_AGENT"] = agent
            env["CMUX_AGENT_TOKEN"] = self.agent_token(agent)
        env.update(extra_env or {})
        proc = subprocess.run(
            [str(REPO / "tools" / tool), *args],
            cwd=self.root,
            env=env,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return Run(proc.returncode, proc.stdout, proc.stderr)

    def agent_token(self, name: str) -> str:
        """The token cmux gave ``name``, read the way its pane has it: from the
        environment of the pane's process. An agent with no live pane (made by
        hand in a test, or gone) gets a new token, as a spawn would give it."""
        try:
            rec = json.loads((self.data / "state" / "agents" / f"{name}.json").read_text())
            pid = self.tmux("display-message", "-p", "-t", rec["pane_id"], "#{pane_pid}").strip()
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except (OSError, ValueError, KeyError, TypeError, subprocess.CalledProcessError):
            environ = []
        for var in environ:
            if var.startswith(b"CMUX_AGENT_TOKEN="):
                return var.split(b"=", 1)[1].decode()
        from cmux.identity import issue
        from cmux.paths import DataRoot

        return issue(DataRoot(self.data), name)

    def status(self) -> dict[str, dict[str, Any]]:
        return {a["name"]: a for a in self.ok("status", "--json").json()}

    def events(self) -> list[dict[str, Any]]:
        path = self.data / "state" / "events.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def events_of(self, kind: str, agent: str | None = None) -> list[dict[str, Any]]:
        """The event log's ``kind`` events (of ``agent``, when given)."""
        return [
            e
            for e in self.events()
            if e.get("event") == kind and (agent is None or e.get("agent") == agent)
        ]

    def states_of(self, name: str) -> list[str]:
        """The states ``name`` went through, in order, from the event log."""
        out: list[str] = []
        for e in self.events():
            if e.get("agent") != name:
                continue
            if e.get("event") in ("register", "spawn") and e.get("state"):
                out.append(str(e["state"]))
            elif e.get("event") == "state":
                out.append(str(e["to"]))
        return out

    def mail_to(self, name: str) -> list[dict[str, Any]]:
        """Every message in ``name``'s mailbox, as JSON objects."""
        from cmux.mail import store

        return [json.loads(m.to_json()) for m in store.read_all(self.config().data, name)]

    def tmux(self, *args: str) -> str:
        """Ask this project's private tmux server directly (not through cmux)."""
        sock = self.socket()
        return subprocess.run(
            ["tmux", "-L", sock, *args], env=self.env, capture_output=True, text=True, check=True
        ).stdout

    def server(self) -> Any:
        """An independent view of our tmux server through libtmux."""
        import libtmux

        return libtmux.Server(socket_name=self.socket())

    def socket(self) -> str:
        import hashlib

        return "cmux-" + hashlib.sha1(str(self.data.resolve()).encode()).hexdigest()[:10]

    def config(self) -> Any:
        from cmux.config import load_config

        return load_config(self.root)


def crash_server(project: Project) -> None:
    """The project's tmux server dies (as with `tmux kill-server` or a reboot);
    returns once it no longer answers."""
    project.tmux("kill-server")
    wait_until(
        lambda: (
            subprocess.run(
                ["tmux", "-L", project.socket(), "list-sessions"],
                env=project.env,
                capture_output=True,
            ).returncode
            != 0
        ),
        what="the server gone",
    )


def record(project: Project, name: str) -> dict[str, Any]:
    """Agent ``name``'s registry record, as on disk."""
    rec: dict[str, Any] = json.loads(
        (project.data / "state" / "agents" / f"{name}.json").read_text()
    )
    return rec


# -- the dashboard (tests/browser, bench/bench_dashboard.py) ---------------------------

CHROMIUM = os.environ.get("CMUX_CHROMIUM", "/usr/bin/chromium")
# Without the background-networking flags Chromium dials out at start, and
# this machine's closed network refuses it (slow start, noise in the logs).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclass
class Dashboard:
    """A running `cmux dashboard`, as state/dashboard.json describes it."""

    url: str  # with ?token=
    token: str
    port: int
    pid: int
    proc: subprocess.Popen[bytes]

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def at(self, path: str) -> str:
        """``path`` with the token, the way a person's first click arrives."""
        sep = "&" if "?" in path else "?"
        return f"{self.base}{path}{sep}token={self.token}"


def start_dashboard(project: Project, log: Path) -> Dashboard:
    """`cmux dashboard --port 0` in the background; returns once
    state/dashboard.json names this process (the contract: written when it
    listens)."""
    info_path = project.data / "state" / "dashboard.json"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cmux", "dashboard", "--port", "0"],
            cwd=project.root,
            env=project.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def listening() -> dict[str, Any] | None:
        if proc.poll() is not None:
            raise AssertionError(f"cmux dashboard exited {proc.returncode}:\n{log.read_text()}")
        try:
            info: dict[str, Any] = json.loads(info_path.read_text())
        except (FileNotFoundError, ValueError):
            return None
        return info if info.get("pid") == proc.pid else None

    info = wait_until(listening, timeout=20, what="state/dashboard.json of the new dashboard")
    assert info is not None
    assert info_path.stat().st_mode & 0o777 == 0o600, "dashboard.json holds the token: 0600"
    assert info["url"] == f"http://127.0.0.1:{info['port']}/?token={info['token']}"
    return Dashboard(info["url"], info["token"], int(info["port"]), proc.pid, proc)


def stop_dashboard(project: Project, dash: Dashboard) -> None:
    """End it as a person would (Ctrl-C / SIGTERM); it removes its file."""
    if dash.proc.poll() is None:
        dash.proc.send_signal(signal.SIGINT)
        try:
            dash.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            dash.proc.kill()
            dash.proc.wait()
    wait_until(
        lambda: not (project.data / "state" / "dashboard.json").exists(),
        timeout=5,
        what="the dashboard to remove state/dashboard.json on exit",
    )
