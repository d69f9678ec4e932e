"""The web dashboard with 20 agents: page loads, event-to-stream latency at
100 messages a second, and its CPU, idle and under that load.

Starts a session (supervisor: ``sleep``) whose monitor runs the dashboard,
spawns 20 recorder agents, then:

- page load: GET /team, /mail, /events and /api/status, each ``--loads``
  times, wall time of the whole response;
- the dashboard's CPU (utime+stime of its process, from /proc) over
  ``--idle`` seconds with no page open, then with one live stream open;
- load: one live stream open, ``--rate`` messages a second for
  ``--seconds`` seconds, sent as the person to the agents in turn (in this
  process, through the mail store: what `cmux send` does); for each message
  the time from its send returning to its ``mail`` row arriving on the
  stream (the server's side of event-to-screen; the browser tier measures
  the page's). Every message must arrive on the stream (it fails otherwise).

    python bench/bench_dashboard.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import cpu_seconds, report, require, row, sandbox, spawn_recorders, summarize
from tests.helpers import wait_until


class Stream:
    """The SSE stream, read by a thread: mail id -> arrival time."""

    def __init__(self, base: str, token: str) -> None:
        import httpx

        self.arrived: dict[str, float] = {}
        self.batches = 0
        self.client = httpx.Client(base_url=base, timeout=httpx.Timeout(20, read=None))
        self.open = threading.Event()
        threading.Thread(target=self._read, args=(token,), daemon=True).start()
        require(self.open.wait(10), "dashboard", "the live stream did not open")

    def _read(self, token: str) -> None:
        import httpx

        try:
            with self.client.stream("GET", f"/api/stream?token={token}") as r:
                self.open.set()
                kind = ""
                for line in r.iter_lines():
                    if line.startswith("event: "):
                        kind = line[7:]
                    elif line.startswith("data: ") and kind == "mail":
                        mid = json.loads(line[6:])["id"]
                        self.arrived.setdefault(mid, time.monotonic())
                    elif not line:
                        self.batches += 1
        except httpx.HTTPError:
            pass

    def close(self) -> None:
        self.client.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="shorter spans")
    p.add_argument("--agents", type=int, default=20)
    p.add_argument("--rate", type=float, default=100.0, help="messages a second")
    p.add_argument("--seconds", type=float, default=0, help="of sending (default 10, quick 5)")
    p.add_argument("--idle", type=float, default=0, help="idle span (default 20 s, quick 10)")
    p.add_argument("--loads", type=int, default=20)
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    send_s = args.seconds or (5.0 if args.quick else 10.0)
    idle_s = args.idle or (10.0 if args.quick else 20.0)

    import httpx

    with sandbox() as box:
        proj = box.project()
        proj.ok("start", "--command", "sleep 900", "--no-attach")
        info = proj.ok("dashboard", "--url", "--json").json()
        base, token = info["url"].partition("/?token=")[0], info["token"]
        pid = int(info["pid"])
        names = [f"a{i:02d}" for i in range(args.agents)]
        spawn_recorders(proj, names)
        time.sleep(2)  # let the spawns' own work pass before measuring

        client = httpx.Client(base_url=base, headers={"X-Cmux-Token": token}, timeout=30)
        loads: dict[str, list[float]] = {}
        for path in ("/team", "/mail", "/events", "/api/status"):
            times = []
            for _ in range(args.loads):
                t = time.perf_counter()
                r = client.get(path)
                times.append((time.perf_counter() - t) * 1000)
                require(r.status_code == 200, "dashboard", f"GET {path}: {r.status_code}")
            loads[path] = times
        require(
            all(f'data-agent="{n}"' in client.get("/team").text for n in names),
            "dashboard",
            "the team page does not show every agent",
        )

        def cpu_over(seconds: float) -> float:
            c0, t0 = cpu_seconds(pid), time.monotonic()
            time.sleep(seconds)  # measuring idleness over a fixed span is the point here
            return (cpu_seconds(pid) - c0) / (time.monotonic() - t0) * 100

        idle_closed = cpu_over(idle_s)
        stream = Stream(base, token)
        idle_open = cpu_over(idle_s)

        from cmux.config import load_config
        from cmux.mail import store

        cfg = load_config(proj.root)
        sent: dict[str, float] = {}
        n = int(args.rate * send_s)
        c0, t0 = cpu_seconds(pid), time.monotonic()
        for i in range(n):
            due = t0 + i / args.rate
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)  # pacing the sender at --rate
            msg = store.send(cfg, to=names[i % len(names)], body=f"m{i}", sender="human")
            sent[msg.id] = time.monotonic()
        wait_until(
            lambda: sent.keys() <= stream.arrived.keys(),
            timeout=30,
            what="every message on the stream",
        )
        load_cpu = (cpu_seconds(pid) - c0) / (time.monotonic() - t0) * 100
        rate = n / (max(sent.values()) - t0)
        latency = [(stream.arrived[m] - t) * 1000 for m, t in sent.items()]
        batches = stream.batches
        stream.close()
        client.close()

    lat = summarize(latency)
    summary: list[dict[str, Any]] = []
    for path, times in loads.items():
        s = summarize(times)
        summary.append(
            row(
                f"page load {path}, {args.agents} agents",
                unit="ms",
                median=s["median"],
                p99=s["p99"],
                n=len(times),
            )
        )
    summary += [
        row(
            f"send to `mail` on the stream, {rate:.0f} msg/s",
            unit="ms",
            median=lat["median"],
            p99=lat["p99"],
            n=len(latency),
            goal="< 1000",
            met=lat["p99"] < 1000,
            note=f"{batches} SSE events in {send_s:.0f} s (coalesced)",
        ),
        row("dashboard CPU, idle, no page open", unit="% core", median=round(idle_closed, 2)),
        row("dashboard CPU, idle, one stream open", unit="% core", median=round(idle_open, 2)),
        row(
            f"dashboard CPU at {rate:.0f} msg/s, one stream",
            unit="% core",
            median=round(load_cpu, 1),
        ),
    ]
    report(
        "dashboard",
        summary,
        {"latency_ms": lat, "loads_ms": {k: summarize(v) for k, v in loads.items()}},
        quick=args.quick,
        out=args.out,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
