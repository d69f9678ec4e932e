"""The web dashboard over HTTP, without a browser: the real `cmux start`
runs it in the monitor window (real tmux on a private socket, real uvicorn
on 127.0.0.1), and httpx asks it what a page and a script ask.

One session is shared by the module (a start costs seconds); each test
leaves it as it found it or works on agents of its own. The Chromium tests
of the pages are the browser tier's (issue 15).
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import Project, kill_servers, make_repo, private_env, wait_until

pytestmark = pytest.mark.timeout(60)

SLEEP = "sleep 600"
GETS = [
    "/",
    "/team",
    "/agent/w1",
    "/mail",
    "/journal",
    "/health",
    "/cost",
    "/events",
    "/api/status",
    "/api/mail",
    "/api/events",
    "/api/journal?q=x",
    "/api/health",
    "/api/cost",
    "/api/agent/w1/screen",
    "/api/agent/w1/context",
    "/static/dashboard.js",
    "/static/style.css",
]
POSTS = ["/api/send", "/api/approve/ask", "/api/deny/ask", "/api/kill/w1"]

# A pane that shows a permission dialog as Claude Code draws it, and says
# which key answered it.
DIALOG = r"""
import sys, termios, time, tty
print("● Bash(touch x)\n  ⎿  Waiting…\n\n" + "─" * 60)
print(" Bash command\n\n   touch x\n\n Do you want to proceed?\n ❯ 1. Yes")
print("   2. Yes, and always allow access to proj/ from this project\n   3. No\n")
print(" Esc to cancel · Tab to amend · ctrl+e to explain", flush=True)
tty.setcbreak(0)
key = sys.stdin.read(1)
print("\033[2J\033[H" + "answered with " + key, flush=True)
time.sleep(600)
"""


@dataclass
class Team:
    project: Project
    base: str
    token: str
    started: str  # what `cmux start` printed
    tmp: Path
    client: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.client = httpx.Client(base_url=self.base, timeout=20)

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.client.get(path, headers={"X-Cmux-Token": self.token}, **kw)

    def post(self, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        return self.client.post(path, json=body or {}, headers={"X-Cmux-Token": self.token})

    def screen(self, name: str) -> str:
        return str(self.get(f"/api/agent/{name}/screen").json().get("screen", ""))


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Team]:
    """A session with a `sleep` supervisor, a shell worker w1 and `ask`, a
    pane that shows a permission dialog; the dashboard the monitor runs."""
    tmp = tmp_path_factory.mktemp("dash")
    home = tmp / "home"
    home.mkdir()
    sockdir = Path(tempfile.mkdtemp(prefix="cxd", dir="/tmp"))
    env = private_env(home, sockdir)
    project = Project(root=make_repo(tmp / "proj"), env=env)
    try:
        project.ok("init")
        started = project.ok("start", "--command", SLEEP, "--no-attach").out
        url = project.ok("dashboard", "--url").out.strip()
        base, _, token = url.partition("/?token=")
        project.ok("spawn", "w1", "--agent", "shell", "--task", "a shell")
        script = tmp / "dialog.py"
        script.write_text(DIALOG)
        project.ok("spawn", "ask", "--command", f"{sys.executable} {script}", "--task", "ask")
        yield Team(project, base, token, started, tmp)
    finally:
        project.cmux("stop")
        kill_servers(sockdir)
        shutil.rmtree(sockdir, ignore_errors=True)


def in_mailbox(project: Project, name: str, text: str) -> bool:
    box = project.data / "mailbox" / name
    return any(text in p.read_text() for p in box.glob("*/*.json*") if p.is_file())


# -- where it runs, and who may ask -------------------------------------------------------


def test_start_runs_it_and_prints_its_url_which_dashboard_url_prints_again(team: Team) -> None:
    url = f"{team.base}/?token={team.token}"
    assert f"dashboard: {url}" in team.started
    assert team.base.startswith("http://127.0.0.1:")
    info = team.project.ok("dashboard", "--url", "--json").json()
    assert info["url"] == url and info["token"] == team.token
    assert info["port"] == int(team.base.rsplit(":", 1)[1])
    path = team.project.data / "state" / "dashboard.json"
    assert path.stat().st_mode & 0o777 == 0o600
    assert json.loads(path.read_text()) == info
    assert len(team.token) >= 32


def test_every_route_refuses_a_request_without_the_token(team: Team) -> None:
    c = team.client
    wrong = httpx.Client(base_url=team.base, cookies={"cmux_token": team.token[:-1]})
    right = httpx.Client(base_url=team.base, cookies={"cmux_token": team.token})
    for path in [*GETS, "/api/stream"]:
        assert c.get(path).status_code == 403, path
        assert c.get(path, headers={"X-Cmux-Token": "x" + team.token}).status_code == 403, path
        assert wrong.get(path).status_code == 403, path
    for path in [p for p in GETS if p != "/"]:
        assert team.get(path).status_code == 200, path
    with c.stream("GET", f"/api/stream?token={team.token}") as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
    body = {"to": "w1", "body": "echo refused-no-token"}
    for path in POSTS:
        assert c.post(path, json=body).status_code == 403, path
        # A cookie alone (what a forged cross-site form would carry) is no token for an action,
        assert right.post(path, json=body).status_code == 403, path
        # nor is the query (it sits in histories and logs).
        assert c.post(f"{path}?token={team.token}", json=body).status_code == 403, path
    assert right.get("/api/status").status_code == 200  # the cookie itself is good
    wrong.close()
    right.close()
    assert not in_mailbox(team.project, "w1", "refused-no-token")
    assert team.project.status()["w1"]["state"] != "killed"
    assert not [e for e in team.project.events() if e.get("event") == "action"]


def test_the_first_page_load_sets_a_strict_cookie_that_then_opens_the_pages(team: Team) -> None:
    r = team.client.get(f"/?token={team.token}", follow_redirects=True)  # the URL printed
    assert r.status_code == 200 and r.url.path == "/team"
    cookie = r.headers["set-cookie"].lower()
    assert f"cmux_token={team.token}".lower() in cookie
    assert "httponly" in cookie and "samesite=strict" in cookie
    with httpx.Client(base_url=team.base, cookies=r.cookies, timeout=20) as browser:
        assert browser.get("/mail").status_code == 200
    with httpx.Client(base_url=team.base, timeout=20) as stranger:
        assert stranger.get("/mail").status_code == 403


def test_the_team_page_shows_every_agent_with_its_state(team: Team) -> None:
    html = team.get("/team").text
    rows = team.project.status()
    for name in ("supervisor", "w1", "ask"):
        assert f'data-agent="{name}"' in html
    for f in ("role", "program", "state", "task", "age", "tokens", "unread", "held", "queue"):
        assert f'data-field="{f}"' in html
    assert f'data-agent="w1" data-state="{rows["w1"]["state"]}"' in html
    for nav in ("team", "mail", "journal", "health", "cost", "events"):
        assert f'data-nav="{nav}"' in html


def test_api_status_is_what_cmux_status_json_says(team: Team) -> None:
    def same() -> bool:
        cli = team.project.ok("status", "--json").json()
        web = team.get("/api/status").json()
        for rows in (cli, web):
            for r in rows:
                r.pop("age_seconds")
        return bool(cli == web)

    wait_until(same, timeout=10, what="the same rows from the CLI and the dashboard")
    web = team.get("/api/status").json()
    assert {r["name"] for r in web} == {"supervisor", "w1", "ask"}


# -- nothing outside the data root ----------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "../../etc",
        "%2e%2e",
        "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "..%2F..%2Fetc%2Fpasswd",
        "%2Fetc",
        "W1",
        "w1%00",
        "-w",
    ],
)
def test_a_screen_or_context_view_of_a_bad_name_is_refused(team: Team, name: str) -> None:
    for path in (f"/api/agent/{name}/screen", f"/api/agent/{name}/context", f"/agent/{name}"):
        r = team.get(path)
        assert r.status_code in (400, 404), (path, r.status_code)
        assert "root:" not in r.text


def test_a_symlink_in_the_data_root_that_points_out_is_not_followed(team: Team) -> None:
    secret = team.tmp / "secret.md"
    secret.write_text("## 10:00 · intruder · planted title\n\nplanted body\n")
    ctx = team.project.data / "contexts" / "w1.md"
    saved = team.tmp / "w1.md.saved"
    shutil.copy(ctx, saved)
    day = team.project.data / "journal" / "2001-01-01.md"
    try:
        ctx.unlink()
        ctx.symlink_to(secret)
        day.symlink_to(secret)
        r = team.get("/api/agent/w1/context")
        assert r.status_code == 404 and "planted" not in r.text
        assert "planted" not in team.get("/agent/w1").text
        for q in ("", "intruder"):
            r = team.get("/api/journal", params={"q": q})
            assert r.status_code == 200 and "planted" not in r.text, q
            assert r.json()["hits"] == []
        assert "planted" not in team.get("/journal", params={"q": "intruder"}).text
    finally:
        ctx.unlink()
        day.unlink()
        shutil.copy(saved, ctx)
    assert "a shell" in team.get("/api/agent/w1/context").json()["context"]


# -- actions --------------------------------------------------------------------------------


def test_send_from_the_dashboard_reaches_the_agents_mailbox_and_pane(team: Team) -> None:
    # (the first line shares the mail's header line; the shell runs the second)
    r = team.post("/api/send", {"to": "w1", "body": "from the web\necho dash-$((6*7))"})
    assert r.status_code == 200, r.text
    reply = r.json()
    assert reply["ok"] is True and reply["to"] == "w1"
    assert in_mailbox(team.project, "w1", "dash-$((6*7))")
    wait_until(lambda: "dash-42" in team.screen("w1"), timeout=15, what="the shell ran the mail")
    sent = [e for e in team.project.events() if e.get("id") == reply["id"]]
    assert any(e["event"] == "send" and e.get("sender") == "human" for e in sent)
    assert any(e["event"] == "action" and e.get("by") == "human" for e in sent)
    bad = team.post("/api/send", {"to": "nobody-here", "body": "x"})
    assert bad.status_code in (400, 404, 409) and bad.json()["hint"]
    assert team.post("/api/send", {"to": "w1"}).status_code == 400


def test_approve_from_the_dashboard_answers_the_waiting_dialog(team: Team) -> None:
    wait_until(lambda: "Do you want to proceed?" in team.screen("ask"), what="the dialog")
    r = team.post("/api/approve/ask")
    assert r.status_code == 200, r.text
    assert r.json()["dialog"] == "permission"
    wait_until(lambda: "answered with 1" in team.screen("ask"), what="the yes key")
    done = [e for e in team.project.events() if e.get("event") == "approve"]
    assert done and done[-1]["agent"] == "ask" and done[-1]["by"] == "human"
    # Nothing to answer now: refused with a hint, nothing typed.
    again = team.post("/api/deny/ask")
    assert again.status_code == 409 and again.json()["hint"]
    assert "answered with 1" in team.screen("ask")


def test_the_dashboard_does_not_kill_the_supervisor(team: Team) -> None:
    r = team.post("/api/kill/supervisor")
    assert r.status_code == 409 and "--force" in r.json()["hint"]
    assert team.project.status()["supervisor"]["state"] != "killed"


# -- live -----------------------------------------------------------------------------------


class Stream:
    """The SSE stream read by a thread: (event name, data, arrival time)."""

    def __init__(self, team: Team) -> None:
        self.got: list[tuple[str, dict[str, Any], float]] = []
        self.client = httpx.Client(base_url=team.base, timeout=httpx.Timeout(20, read=None))
        self.open = threading.Event()
        self.thread = threading.Thread(target=self._read, args=(team.token,), daemon=True)
        self.thread.start()
        assert self.open.wait(10), "the stream did not open"

    def _read(self, token: str) -> None:
        try:
            with self.client.stream("GET", f"/api/stream?token={token}") as r:
                self.open.set()
                kind = ""
                for line in r.iter_lines():
                    if line.startswith("event: "):
                        kind = line[7:]
                    elif line.startswith("data: "):
                        self.got.append((kind, json.loads(line[6:]), time.monotonic()))
        except httpx.HTTPError:
            pass

    def find(self, kind: str, **match: Any) -> tuple[dict[str, Any], float] | None:
        for k, data, at in list(self.got):
            if k == kind and all(data.get(f) == v for f, v in match.items()):
                return data, at
        return None

    def wait(self, kind: str, what: str, **match: Any) -> tuple[dict[str, Any], float]:
        found = wait_until(lambda: self.find(kind, **match), what=what)
        assert found is not None
        return found

    def close(self) -> None:
        self.client.close()


def test_the_stream_pushes_a_new_agent_its_state_change_mail_and_events(team: Team) -> None:
    stream = Stream(team)
    try:
        team.project.ok("spawn", "w2", "--agent", "shell", "--task", "short-lived")
        row, _ = stream.wait("agent", "w2's row", name="w2")
        assert row["role"] == "worker" and row["cells"]["program"] == "shell"
        assert "preview" in row["cells"]

        sent = team.post("/api/send", {"to": "w2", "body": "echo live-mail"}).json()
        mail, _ = stream.wait("mail", "the mail row", id=sent["id"])
        assert mail["from"] == "human" and mail["to"] == "w2" and mail["body"] == "echo live-mail"

        r = team.post("/api/kill/w2")
        assert r.status_code == 200 and r.json()["ok"] is True
        asked = time.monotonic()
        killed, at = stream.wait("agent", "w2 killed, live", name="w2", state="killed")
        assert at - asked < 2.0, f"the state change took {at - asked:.2f}s to arrive"
        assert killed["cells"]["state"] == "killed"
        stream.wait("event", "the action event", event="action", agent="w2")
        states = [e for e in team.project.events() if e.get("event") == "state"]
        assert any(
            e["agent"] == "w2" and e.get("to") == "killed" and "human" in str(e.get("reason"))
            for e in states
        )
    finally:
        stream.close()


# -- a dashboard of its own -----------------------------------------------------------------


def test_a_dashboard_alone_publishes_itself_privately_and_removes_that_on_exit(
    project: Project,
) -> None:
    none = project.cmux("dashboard", "--url")
    assert none.code != 0 and "no dashboard runs" in none.err and "cmux dashboard" in none.err
    proc = subprocess.Popen(
        [sys.executable, "-m", "cmux", "dashboard", "--port", "0", "--json"],
        cwd=project.root,
        env=project.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        while not lines or lines[-1] != "}":
            line = proc.stdout.readline()
            assert line, f"the dashboard ended: {proc.stderr.read() if proc.stderr else ''}"
            lines.append(line.rstrip("\n"))
        info = json.loads("\n".join(lines))
        path = project.data / "state" / "dashboard.json"
        assert json.loads(path.read_text()) == info and info["pid"] == proc.pid
        assert path.stat().st_mode & 0o777 == 0o600
        assert project.ok("dashboard", "--url").out.strip() == info["url"]
        base = info["url"].partition("/?token=")[0]
        assert httpx.get(f"{base}/api/status", timeout=10).status_code == 403
        r = httpx.get(f"{base}/api/status", headers={"X-Cmux-Token": info["token"]}, timeout=10)
        assert r.status_code == 200 and r.json() == []
        second = project.cmux("dashboard")
        assert second.code != 0 and "already runs" in second.err
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 128 + signal.SIGTERM
        assert not path.exists()
        assert not (project.data / "state" / "run" / "dashboard.pid").exists()
        assert project.cmux("dashboard", "--url").code != 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        for fh in (proc.stdout, proc.stderr):
            if fh:
                fh.close()


def test_a_disabled_dashboard_is_not_among_the_monitors_daemons(project: Project) -> None:
    from cmux.monitor import daemons_for

    assert "dashboard" in [d.name for d in daemons_for(project.config())]
    with open(project.root / "cmux.toml", "a") as fh:
        fh.write("\n[dashboard]\nenabled = false\nport = 0\n")
    assert "dashboard" not in [d.name for d in daemons_for(project.config())]
    bad = project.cmux("dashboard", "--url", env={})
    assert bad.code != 0 and "no dashboard runs" in bad.err
