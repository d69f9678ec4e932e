"""The whole team from host A: the dashboard, `cmux events` and the
watchdogs see host B. Two "hosts" (two data roots, each with its own `cmux
node`) on a real nats-server, shared by the module (the nodes' starts cost
seconds; each test works on agents of its own): a real `cmux dashboard`
process on A asked over HTTP as a page and its script ask (the rows, the
live stream, the events, an agent's page, the actions); `cmux events` on A;
each host's watchdog as its monitor runs it (real registry, real mail),
ticked on the real clock."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cluster.conftest import require_nats
from tests.cluster.hosts import Host
from tests.cluster.natsd import NatsServer
from tests.cluster.test_team_view import clustered
from tests.helpers import kill_servers, private_env, wait_until

pytestmark = pytest.mark.timeout(60)

IDLE = 1.5  # s: [health] idle_nudge in the watchdog test


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Host, Host]]:
    """a: the supervisor, w1 placed on b; b: w1, w2, and the supervisor's
    record with host a (as `cmux spawn --host` leaves them)."""
    require_nats()
    tmp = tmp_path_factory.mktemp("team")
    home = tmp / "home"
    home.mkdir()
    sockdir = Path(tempfile.mkdtemp(prefix="cxw", dir="/tmp"))
    env = private_env(home, sockdir)
    natsd = NatsServer(tmp / "natsd")
    hosts: list[Host] = []
    with pytest.MonkeyPatch.context() as mp:
        for key in list(os.environ):
            if key.startswith("CMUX_") and not key.startswith("CMUX_TEST_"):
                mp.delenv(key)
        for key in ("HOME", "TMUX_TMPDIR", "LANG", "GIT_CONFIG_GLOBAL", "GIT_CONFIG_NOSYSTEM"):
            mp.setenv(key, env[key])
        natsd.start()
        try:
            a = Host.make("a", tmp, env, natsd)
            b = Host.make("b", tmp, env, natsd)
            hosts += [a, b]
            clustered(a)
            clustered(b)
            a.agent("supervisor", role="supervisor")
            a.agent("w1", host="b")
            b.agent("w1")
            b.agent("w2")
            b.agent("supervisor", role="supervisor", host="a")
            a.start_node()
            b.start_node()
            yield a, b
        finally:
            for h in hosts:
                h.kill_node()
            natsd.kill()
            kill_servers(sockdir)
            shutil.rmtree(sockdir, ignore_errors=True)


@dataclass
class Dashboard:
    proc: subprocess.Popen[str]
    base: str
    token: str
    got: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.base + path, headers={"X-Cmux-Token": self.token}, timeout=20)

    def post(self, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        headers = {"X-Cmux-Token": self.token}
        return httpx.post(self.base + path, json=body or {}, headers=headers, timeout=20)

    def listen(self) -> None:
        """GET /api/stream in a thread, as the page's script does: every (kind, data)."""

        def read() -> None:
            url, params = self.base + "/api/stream", {"token": self.token}
            try:
                with httpx.stream("GET", url, params=params, timeout=None) as r:
                    kind = None
                    for line in r.iter_lines():
                        if line.startswith("event: "):
                            kind = line[7:]
                        elif line.startswith("data: ") and kind:
                            self.got.append((kind, json.loads(line[6:])))
            except httpx.HTTPError:
                return  # the dashboard ended (the test's end)

        threading.Thread(target=read, daemon=True).start()

    def rows(self, name: str) -> list[dict[str, Any]]:
        return [d for k, d in list(self.got) if k == "agent" and d.get("name") == name]

    def events(self) -> list[dict[str, Any]]:
        return [d for k, d in list(self.got) if k == "event"]


@pytest.fixture
def dashboard(pair: tuple[Host, Host]) -> Iterator[Dashboard]:
    a, _ = pair
    proc = subprocess.Popen(
        [sys.executable, "-m", "cmux", "dashboard", "--port", "0", "--json"],
        cwd=a.project.root,
        env=a.project.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    path = Path(a.data.state_dir) / "dashboard.json"

    def listening() -> dict[str, Any] | None:
        assert proc.poll() is None, "the dashboard exited"
        info = json.loads(path.read_text()) if path.exists() else {}
        return info if info.get("pid") == proc.pid else None

    try:
        wait_until(listening, timeout=15, what="the dashboard listening")
        info = listening()
        assert info is not None
        yield Dashboard(proc, info["url"].partition("/?token=")[0], info["token"])
    finally:
        proc.terminate()
        proc.wait(10)


def test_the_dashboard_on_a_shows_bs_agent_and_its_live_changes_and_events(
    pair: tuple[Host, Host], dashboard: Dashboard
) -> None:
    from cmux import events
    from cmux.agents import registry

    a, b = pair
    d = dashboard

    def w2() -> dict[str, Any]:
        return {r["name"]: r for r in d.get("/api/status").json()}.get("w2", {})

    wait_until(lambda: w2().get("state") == "idle", timeout=10, what="b's w2 on a's dashboard")
    assert w2()["host"] == "b"
    page = d.get("/team").text
    assert 'data-agent="w2"' in page and "on host b: cmux attach w2" in page
    assert '<td data-field="host">b</td>' in page

    d.listen()
    # The stream follows the other hosts from when its feed is there: ping until one comes.
    pings = iter(range(1000))

    def pinged() -> bool:
        events.record(b.data, "ping", agent="w2", n=next(pings))
        return any(e.get("event") == "ping" and e.get("host") == "b" for e in d.events())

    wait_until(pinged, timeout=15, interval=0.3, what="b's events on a's live stream")
    t0 = time.monotonic()
    registry.transition(b.data, "w2", "busy", reason="on it")
    wait_until(
        lambda: any(r["state"] == "busy" for r in d.rows("w2")),
        timeout=5,
        interval=0.02,
        what="w2 busy on a's open page",
    )
    took = time.monotonic() - t0
    row = [r for r in d.rows("w2") if r["state"] == "busy"][-1]
    assert row["host"] == "b" and row["cells"]["state"] == "busy" and row["cells"]["host"] == "b"
    assert row["cells"]["preview"] == "on host b: cmux attach w2"
    wait_until(
        lambda: any(e.get("event") == "state" and e.get("host") == "b" for e in d.events()),
        timeout=5,
        what="b's state event on the stream",
    )
    print(f"\nb's state change on a's open page after {took * 1000:.0f} ms")

    # The events page's history has b's events beside a's, newest first.
    events.record(a.data, "here", agent="supervisor")
    past = d.get("/api/events").json()
    assert any(e.get("event") == "ping" and e.get("host") == "b" for e in past)
    assert any(e.get("event") == "here" and e.get("host") == "a" for e in past)
    stamps = [e["ts"] for e in past]
    assert stamps == sorted(stamps, reverse=True)

    # Its page says where it lives; nothing is done to a pane here.
    assert d.get("/agent/w2").status_code == 200
    assert "lives on host b" in d.get("/api/agent/w2/screen").json()["screen"]
    for action in ("approve", "deny", "kill"):
        r = d.post(f"/api/{action}/w2")
        assert r.status_code == 409, (action, r.text)
        assert "lives on host b" in r.json()["error"] and "on b" in r.json()["hint"]
    assert registry.get(b.data, "w2").state == "busy"
    # A message to it from the page goes as `cmux send` does: spooled here, stored there.
    r = d.post("/api/send", {"to": "w2", "body": "from a's dashboard"})
    assert r.status_code == 200, r.text
    sent = r.json()["id"]
    wait_until(lambda: sent in b.inbox_ids("w2"), timeout=10, what="the message in w2's box on b")


def test_cmux_events_on_a_shows_both_hosts_history_in_time_order(
    pair: tuple[Host, Host],
) -> None:
    from cmux import events

    a, b = pair

    def record(host: Host, event: str) -> None:
        """An event, a millisecond on from the last (the log's stamps' grain)."""
        e = events.record(host.data, event)
        wait_until(lambda: events.now_iso() > e["ts"], timeout=1, interval=0.001, what="a ms")

    record(b, "said-b1")
    record(a, "said-a1")
    record(b, "said-b2")

    size = Path(b.data.events_path).stat().st_size
    offset = Path(b.data.state_dir) / "cluster" / "events.offset"
    wait_until(
        lambda: offset.exists() and int(offset.read_text() or 0) >= size,
        timeout=10,
        what="b's node to publish its events",
    )
    lines = a.project.ok("events", "--json", "-n", "0").out.splitlines()
    got = [e for e in map(json.loads, lines) if e["event"].startswith("said-")]
    assert [(e["event"], e["host"]) for e in got] == [
        ("said-b1", "b"),
        ("said-a1", "a"),
        ("said-b2", "b"),
    ]
    # One host's, as text: each line says its host.
    text = a.project.ok("events", "-n", "0", "--host", "b").out.splitlines()
    assert text and all("host=b" in line for line in text)
    assert any("said-b2" in line for line in text)
    assert not any("said-a1" in line for line in text)


def did(host: Host) -> list[str]:
    """What the host's watchdogs did, by their event log."""
    return [str(e.get("kind")) for e in host.events() if e.get("event") == "watchdog"]


def notices(host: Host, subject: str) -> list[dict[str, Any]]:
    return [
        m
        for m in host.project.mail_to("supervisor")
        if m.get("kind") == "notice" and subject in str(m.get("subject"))
    ]


def test_the_supervisor_is_nudged_only_when_the_whole_team_is_quiet(
    pair: tuple[Host, Host],
) -> None:
    from cmux import events
    from cmux.agents import registry
    from cmux.cluster.feed import TeamFeed
    from cmux.health.config import HealthSettings
    from cmux.health.watchdog import CmuxActions, Watchdog

    a, b = pair
    s = replace(HealthSettings(), idle_nudge=IDLE)
    feeds = [TeamFeed(h.cfg).start() for h in (a, b)]
    try:
        dogs = [
            Watchdog(h.data, s, CmuxActions(h.cfg), now=time.time(), team=f)
            for h, f in zip((a, b), feeds, strict=True)
        ]

        def tick() -> None:
            for dog in dogs:
                dog.tick(time.time())

        registry.transition(b.data, "w1", "busy", reason="on it")

        def seen_busy() -> bool:
            tick()
            team = {x.name: x for x in feeds[0].agents(registry.list_agents(a.data))}
            return team["w1"].state == "busy"

        wait_until(seen_busy, timeout=10, what="a's watchdog sees w1 busy on b")
        # w1 works on b for three idle periods: things happen there, nothing on a.
        until = time.monotonic() + 3 * IDLE
        n = 0
        while time.monotonic() < until:
            events.record(b.data, "tool", agent="w1", n=n)
            n += 1
            time.sleep(0.3)  # the worker's pace (not a wait for anything)
            tick()
            assert notices(a, "all quiet") == [], "nudged while w1 works on b"
        # w1 is done with its turn; nobody does anything anywhere.
        registry.transition(b.data, "w1", "idle", reason="turn over")
        t0 = time.monotonic()

        def nudged() -> bool:
            tick()
            return bool(notices(a, "all quiet"))

        wait_until(nudged, timeout=IDLE + 6, interval=0.2, what="the supervisor nudged")
        assert time.monotonic() - t0 >= IDLE - 0.1
        (nudge,) = notices(a, "all quiet")
        assert "w1 (idle on b)" in nudge["body"]
        assert "idle-nudge" in did(a)
        assert "idle-nudge" not in did(b)  # b's watchdog leaves it to a's

        # w1 dies on b: b's watchdog tells its parent, whose box is on a.
        registry.transition(b.data, "w1", "exited", reason="its process ended")

        def reported() -> bool:
            tick()
            return bool(notices(a, "w1 died"))

        wait_until(reported, timeout=10, interval=0.2, what="w1's death reported to a")
        assert "died-without-done" in did(b)
        assert "died-without-done" not in did(a)  # not a's to report
    finally:
        for f in feeds:
            f.stop()


def test_the_feed_hears_the_other_host_again_after_nats_restarts(pair: tuple[Host, Host]) -> None:
    """(Last in the module: it restarts the server under the nodes.)"""
    from cmux import events
    from cmux.agents import registry
    from cmux.cluster.feed import TeamFeed

    a, b = pair
    feed = TeamFeed(a.cfg).start()
    heard: list[dict[str, Any]] = []

    def state_of(name: str) -> str | None:
        heard.extend(e for kind, e in feed.drain() if kind == "event")
        rec = feed.records.get(f"b.{name}")
        return json.loads(rec).get("state") if rec else None

    try:
        wait_until(lambda: state_of("w2") is not None, timeout=10, what="the feed has b's w2")
        a.natsd.kill()  # SIGKILL: every connection cut; the store stays
        a.natsd.start()
        registry.transition(b.data, "w2", "waiting", reason="asks", strict=False)
        wait_until(lambda: state_of("w2") == "waiting", timeout=20, what="w2 waiting, heard again")
        pings = iter(range(1000))

        def pinged() -> bool:
            events.record(b.data, "ping-again", n=next(pings))
            state_of("w2")
            return any(e.get("event") == "ping-again" and e.get("host") == "b" for e in heard)

        wait_until(pinged, timeout=10, interval=0.3, what="b's events heard again")
    finally:
        feed.stop()
