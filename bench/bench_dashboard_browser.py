"""The web dashboard in a real browser: page load, event-to-screen latency under
mail load, idle CPU (bench/bench_dashboard.py measures the server's side: HTTP
responses and the stream, without a browser).

A session with 20 recorder agents (bench/recorder.py: they timestamp every
message typed into their pane) and a `cmux dashboard --port 0`, looked at by
Debian's headless chromium through Playwright (as tests/browser does).

- **Page load**: each page (team, mail, journal, health, cost, events) opened
  again and again in one tab; the browser's own Navigation Timing
  (``loadEventEnd``: the HTML, the style sheet and the script fetched and
  run). Baseline: `cmux status --json` as a new process, the way to the same
  answer without the dashboard.
- **Event to screen**: a sender process writes mail through the store API
  (``store.send``, as `cmux send` does) to the 20 agents at 100 messages a
  second; the /mail page is open and a MutationObserver notes the moment each
  message's row enters the DOM (epoch ms: the same clock as the sender's
  ``time.time()`` after the write returned). Baseline: the router's own
  delivery of the same messages, write to the recorder's read(2) in the pane.
  Also: how many of the messages the page showed, and the dashboard's CPU
  during the load.
- **Idle CPU**: the dashboard process's utime+stime (/proc) over 10 s with no
  page open, and again with the team page open on its live stream.

The run FAILS (exit 1) when chromium or playwright is missing, or when the
page showed none of the messages.

    python bench/bench_dashboard_browser.py [--quick] [--rate 100] [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    PY,
    Arrivals,
    cpu_seconds,
    report,
    require,
    row,
    sandbox,
    spawn_recorders,
    summarize,
    timed,
)
from tests.helpers import CHROMIUM, CHROMIUM_ARGS, start_dashboard, stop_dashboard, wait_until

PAGES = ("team", "mail", "journal", "health", "cost", "events")
IDLE_S = 10.0

# The sender: messages at a fixed pace (no catching up in bursts: a late send
# goes out at once, the next keeps the schedule), one line of JSON at the end.
SENDER = textwrap.dedent(
    """
    import json, sys, time
    from cmux.config import load_config
    from cmux.mail import store
    rate, seconds, agents = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3].split(",")
    cfg = load_config()
    sent = []
    start = time.monotonic()
    for i in range(int(rate * seconds)):
        due = start + i / rate
        pause = due - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        m = store.send(cfg, to=agents[i % len(agents)], body=f"bench-{i:06d}", sender="human")
        sent.append([i, m.id, time.time()])
    print(json.dumps({"sent": sent, "seconds": time.monotonic() - start}))
    """
)

# Notes when each bench message's row enters the mail table (epoch ms).
OBSERVER = """() => {
    window.__seen = {};
    new MutationObserver(muts => {
        const t = performance.timeOrigin + performance.now();
        for (const m of muts) for (const n of m.addedNodes) {
            if (n.nodeType !== 1 || !n.matches('[data-mail-id]')) continue;
            const k = (n.textContent.match(/bench-(\\d+)/) || [])[1];
            if (k !== undefined && !(k in window.__seen)) window.__seen[k] = t;
        }
    }).observe(document.body, {childList: true, subtree: true});
}"""


def load_times(page: Any, dash: Any, name: str, runs: int) -> list[float]:
    """``runs`` loads of /name, each its loadEventEnd (ms) by Navigation Timing."""
    out = []
    for _ in range(runs):
        page.goto(dash.at(f"/{name}"), wait_until="load")
        nav = page.wait_for_function(
            """() => { const e = performance.getEntriesByType('navigation')[0];
                       return e && e.loadEventEnd > 0 ? e.loadEventEnd - e.startTime : 0; }"""
        )
        out.append(float(nav.json_value()))
    return out


def cpu_percent(pid: int, seconds: float) -> float:
    c0, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)  # idleness over a fixed span is what is measured
    return (cpu_seconds(pid) - c0) / (time.monotonic() - t0) * 100


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer loads, a 5 s load phase")
    p.add_argument("--rate", type=float, default=100.0, help="messages a second (100)")
    p.add_argument("--seconds", type=float, default=0, help="the load phase (10 s; quick 5)")
    p.add_argument("--agents", type=int, default=20)
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    seconds = args.seconds or (5.0 if args.quick else 10.0)
    loads = 5 if args.quick else 20
    require(os.access(CHROMIUM, os.X_OK), "dashboard_browser", f"no chromium at {CHROMIUM}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require(False, "dashboard_browser", "the playwright package is missing (the dev extra)")
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")

    with sandbox() as box:
        proj = box.project()
        with open(proj.root / "cmux.toml", "a") as fh:
            fh.write("\n[dashboard]\nenabled = false\n")  # the bench runs its own
        proj.ok("start", "--command", "sleep 900", "--no-attach")
        names = [f"a{i:02d}" for i in range(args.agents)]
        recs = spawn_recorders(proj, names)
        dash = start_dashboard(proj, proj.scratch / "dashboard.log")
        try:
            time.sleep(2)  # its start-up work done
            idle_alone = cpu_percent(dash.pid, IDLE_S)
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
                page.goto(dash.url)  # the printed URL: the cookie for the loads after
                page_ms = {name: load_times(page, dash, name, loads) for name in PAGES}
                status_ms = [timed(lambda: proj.ok("status", "--json")) for _ in range(loads)]

                page.goto(dash.at("/team"))
                page.wait_for_function("() => document.getElementById('live').className === 'on'")
                time.sleep(1)
                idle_open = cpu_percent(dash.pid, IDLE_S)

                page.goto(dash.at("/mail"))
                page.wait_for_function("() => document.getElementById('live').className === 'on'")
                page.evaluate(OBSERVER)
                env = {**proj.agent_env(), "CMUX_HOME": str(proj.data)}
                c0, t0 = cpu_seconds(dash.pid), time.monotonic()
                sender = subprocess.run(
                    [PY, "-c", SENDER, str(args.rate), str(seconds), ",".join(names)],
                    env=env,
                    cwd=proj.root,
                    capture_output=True,
                    text=True,
                    timeout=seconds * 10 + 60,
                )
                require(
                    sender.returncode == 0,
                    "dashboard_browser",
                    f"the sender failed: {sender.stderr}",
                )
                sent = json.loads(sender.stdout)
                total = len(sent["sent"])
                _settle(page, total)  # what is still on its way: a few seconds more at most
                load_cpu = (cpu_seconds(dash.pid) - c0) / (time.monotonic() - t0) * 100
                seen: dict[str, float] = page.evaluate("() => window.__seen")
                browser.close()
            arrivals = Arrivals()
            missing = arrivals.wait_for(recs, [m[1] for m in sent["sent"]], timeout=30)
        finally:
            stop_dashboard(proj, dash)

    screen = [seen[f"{i:06d}"] - t * 1000 for i, _mid, t in sent["sent"] if f"{i:06d}" in seen]
    first = arrivals.first
    pane = [(first[mid] - t) * 1000 for _i, mid, t in sent["sent"] if mid in first]
    unseen = [i for i, _mid, _t in sent["sent"] if f"{i:06d}" not in seen]
    require(screen, "dashboard_browser", "the mail page showed none of the messages")
    s, d = summarize(screen), summarize(pane)
    shown = len(screen) / total * 100
    summary: list[dict[str, Any]] = []
    for name in PAGES:
        st = summarize(page_ms[name])
        summary.append(
            row(
                f"chromium: dashboard page load /{name}",
                unit="ms",
                median=st["median"],
                p99=st["p99"],
                n=st["n"],
                baseline=f"{summarize(status_ms)['median']:.0f} (cmux status --json)",
                goal="median < 500",
                met=st["median"] < 500,
                note="Navigation Timing loadEventEnd, 20 agents",
            )
        )
    summary.append(
        row(
            f"chromium: dashboard event to screen, {args.agents} agents at {args.rate:.0f} msg/s",
            unit="ms",
            median=s["median"],
            p99=s["p99"],
            n=s["n"],
            baseline=f"{d['median']:.0f} / {d['p99']:.0f} (router: write to pane)",
            goal="< 1000",
            met=s["p99"] < 1000 and shown == 100,
            note=f"/mail page showed {shown:.1f}% of {total}; the dashboard used "
            f"{load_cpu:.1f}% of a core meanwhile; {len(missing)} not delivered to panes",
        )
    )
    summary.append(
        row(
            f"chromium: dashboard idle CPU, {args.agents} agents, {IDLE_S:.0f} s",
            unit="% core",
            median=round(idle_alone, 3),
            goal="< 0.5",
            met=idle_alone < 0.5,
            note="no page open",
        )
    )
    summary.append(
        row(
            "  with the team page open (live stream)",
            unit="% core",
            median=round(idle_open, 3),
            goal="< 1",
            met=idle_open < 1,
        )
    )
    report(
        "dashboard_browser",
        summary,
        {
            "page_load_ms": {k: summarize(v) for k, v in page_ms.items()},
            "status_ms": summarize(status_ms),
            "event_to_screen_ms": s,
            "router_delivery_ms": d,
            "shown_percent": round(shown, 2),
            "not_shown": unseen[:50],
            "sent": total,
            "sender_seconds": round(sent["seconds"], 2),
            "load_cpu_percent": round(load_cpu, 2),
            "idle_cpu_percent": {"alone": round(idle_alone, 3), "page_open": round(idle_open, 3)},
        },
        quick=args.quick,
        out=args.out,
    )
    return 0


def _settle(page: Any, total: int, timeout: float = 5.0) -> None:
    """Until the page saw every message, or ``timeout`` (what it never shows
    counts as not shown)."""
    try:
        wait_until(
            lambda: page.evaluate("() => Object.keys(window.__seen).length") >= total,
            timeout=timeout,
            what="the page to show every message",
        )
    except AssertionError:
        pass


if __name__ == "__main__":
    sys.exit(main())
