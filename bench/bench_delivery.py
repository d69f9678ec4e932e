"""Delivery latency and throughput: cmux's router against a 2-second poller.

Real tmux, a private server, 20 recorder panes (bench/recorder.py) that
timestamp each message the moment its Enter arrives. The sender records the
time just before it stores each message; latency is arrival minus that.

- idle: one message at a time, at random gaps, round robin over the agents;
- load: a steady stream (100 messages/s over 20 agents) and every message's
  latency;
- throughput: several sender processes store N messages as fast as they can;
  delivered/s from the first send to the last arrival, with zero loss and no
  duplicates checked.

The baseline (bench/baseline_router.py) runs in the same session against the
same panes after cmux's turn: it polls one JSONL file per recipient every 2 s
and types each message with one ``tmux send-keys`` call.

    python bench/bench_delivery.py [--quick] [--agents 20]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    BENCH,
    PY,
    Arrivals,
    BenchProject,
    report,
    require,
    row,
    sandbox,
    spawn_recorders,
    summarize,
)
from tests.helpers import wait_until

BODY = "please rebase on main and run the tests again; report back when green"
Sender = Callable[[str, str], str]


class Cmux:
    """Sends through cmux's mailbox, in process (store.send, as tools/mailbox does)."""

    def __init__(self, project: BenchProject) -> None:
        from cmux.mail import store

        self.store = store
        self.cfg = project.config()

    def __call__(self, to: str, body: str) -> str:
        return str(self.store.send(self.cfg, to=to, body=body, sender="bench").id)


class Baseline:
    """Appends one JSON line per message to the recipient's mailbox file."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.n = itertools.count()

    def __call__(self, to: str, body: str) -> str:
        mid = f"b{next(self.n):07d}"
        line = json.dumps({"id": mid, "from": "bench", "to": to, "body": body}) + "\n"
        fd = os.open(self.folder / f"{to}.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)
        return mid


def paced(send: Sender, names: list[str], times: list[float]) -> dict[str, float]:
    """Send one message at each offset in ``times`` (seconds from now), round
    robin over ``names``; returns id -> the time just before it was sent."""
    sent: dict[str, float] = {}
    start = time.monotonic()
    for i, offset in enumerate(times):
        delay = start + offset - time.monotonic()
        if delay > 0:
            time.sleep(delay)  # the schedule of the load, not a wait for something
        t = time.time()
        sent[send(names[i % len(names)], f"{BODY} #{i}")] = t
    return sent


def latencies(sent: dict[str, float], arrivals: Arrivals) -> list[float]:
    return [(arrivals.first[i] - t) * 1000 for i, t in sent.items() if i in arrivals.first]


def idle_schedule(n: int, rng: random.Random) -> list[float]:
    out, t = [], 0.0
    for _ in range(n):
        out.append(t)
        t += rng.uniform(0.06, 0.2)
    return out


def load_schedule(rate: float, seconds: float) -> list[float]:
    return [i / rate for i in range(int(rate * seconds))]


SENDER = textwrap.dedent(
    """
    import sys, time
    from cmux.config import load_config
    from cmux.mail import store
    cfg = load_config()
    me, targets, n, out = sys.argv[1], sys.argv[2].split(","), int(sys.argv[3]), sys.argv[4]
    lines = []
    sys.stdin.readline()  # go
    for i in range(n):
        t = time.time()
        m = store.send(cfg, to=targets[i % len(targets)], sender=me, body=f"{me} message {i}")
        lines.append(f"{t:.6f} {m.id}\\n")
    open(out, "w").write("".join(lines))
    """
)

BASELINE_SENDER = textwrap.dedent(
    """
    import json, os, sys, time
    me, targets, n, out = sys.argv[1], sys.argv[2].split(","), int(sys.argv[3]), sys.argv[4]
    folder = sys.argv[5]
    lines = []
    sys.stdin.readline()  # go
    for i in range(n):
        to = targets[i % len(targets)]
        mid = f"{me}-{i:06d}"
        t = time.time()
        fd = os.open(f"{folder}/{to}.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        msg = {"id": mid, "from": me, "to": to, "body": f"{me} message {i}"}
        os.write(fd, (json.dumps(msg) + "\\n").encode())
        os.close(fd)
        lines.append(f"{t:.6f} {mid}\\n")
    open(out, "w").write("".join(lines))
    """
)


def flood(
    project: BenchProject,
    names: list[str],
    total: int,
    senders: int,
    arrivals: Arrivals,
    recs: dict[str, Path],
    *,
    baseline: Path | None = None,
    paused: int | None = None,
) -> dict[str, Any]:
    """``senders`` processes store ``total`` messages as fast as they can.

    With ``paused`` (the router's pid), the router is stopped (SIGSTOP) while
    they send and continued after: the rate is then that of draining a
    backlog, from the moment the router runs again to the last arrival.
    """
    env = project.agent_env()
    procs = []
    outs = []
    for k in range(senders):
        out = project.scratch / f"flood-{'b' if baseline else 'c'}-{k}.txt"
        argv = [PY, "-c", BASELINE_SENDER if baseline else SENDER, f"s{k}", ",".join(names)]
        argv += [str(total // senders), str(out)]
        if baseline:
            argv.append(str(baseline))
        procs.append(subprocess.Popen(argv, env=env, cwd=project.root, stdin=subprocess.PIPE))
        outs.append(out)
    time.sleep(0.5)  # let every sender finish importing before the start
    if paused:
        os.kill(paused, signal.SIGSTOP)
    try:
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")
            proc.stdin.close()
        for proc in procs:
            if proc.wait(timeout=300) != 0:
                raise RuntimeError("a sender failed")
    finally:
        resumed = time.time()
        if paused:
            os.kill(paused, signal.SIGCONT)
    sent: dict[str, float] = {}
    for out in outs:
        for line in out.read_text().splitlines():
            t, mid = line.split()
            sent[mid] = float(t)
    dup_before = arrivals.duplicates
    lost = arrivals.wait_for(recs, sent, timeout=300)
    time.sleep(0.5)  # a late duplicate would show up now
    arrivals.read(recs)
    first, last_send = min(sent.values()), max(sent.values())
    start = resumed if paused else first
    last = max(arrivals.first[i] for i in sent if i in arrivals.first)
    return {
        "messages": len(sent),
        "senders": senders,
        "send_seconds": round(last_send - first, 3),
        "send_rate": round(len(sent) / (last_send - first), 1),
        "backlog": bool(paused),
        "seconds": round(last - start, 3),
        "delivered_per_s": round((len(sent) - len(lost)) / (last - start), 1),
        "lost": len(lost),
        "duplicates": arrivals.duplicates - dup_before,
        "latency_ms": summarize(latencies(sent, arrivals), digits=1),
    }


def phase(
    send: Sender, names: list[str], times: list[float], arrivals: Arrivals, recs: dict[str, Path]
) -> dict[str, Any]:
    """Send on a schedule, wait for every message; latency figures and losses."""
    sent = paced(send, names, times)
    lost = arrivals.wait_for(recs, sent, timeout=60 + times[-1])
    return {**summarize(latencies(sent, arrivals), digits=1), "lost": len(lost)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer messages (a smoke run)")
    p.add_argument("--agents", type=int, default=20)
    p.add_argument("--rate", type=float, default=100.0, help="messages/s of the steady load")
    p.add_argument("--only", choices=("latency", "throughput"), help="run one part")
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    q = args.quick
    n_idle = 40 if q else 200
    load_s = 4.0 if q else 10.0
    n_flood = 1000 if q else 4000
    rng = random.Random(1)
    details: dict[str, Any] = {"agents": args.agents, "rate": args.rate}
    lat: dict[str, dict[str, Any]] = {}
    thr: dict[str, dict[str, Any]] = {}
    with sandbox() as box:
        proj = box.project()
        proj.ok("start", "--command", "sleep 600", "--no-attach")
        router = wait_until(lambda: proj.daemon_pid("router"), timeout=30, what="the router")
        names = [f"r{i:02d}" for i in range(args.agents)]
        recs = spawn_recorders(proj, names)
        cfg = proj.config()
        from cmux.agents import registry

        panes = {n: str(registry.get(cfg.data, n).pane_id) for n in names}
        arrivals = Arrivals()
        cmux = Cmux(proj)
        folder = proj.scratch / "baseline"
        folder.mkdir()
        base = Baseline(folder)
        load = load_schedule(args.rate, load_s)
        # Warm up: one message to everyone.
        phase(cmux, names, [0.0] * len(names), arrivals, recs)
        if args.only in (None, "latency"):
            print(f"latency: idle, {n_idle} messages, cmux ...", flush=True)
            lat["idle cmux"] = phase(cmux, names, idle_schedule(n_idle, rng), arrivals, recs)
            print(f"latency: {args.rate:.0f} msg/s for {load_s:.0f} s, cmux ...", flush=True)
            lat["load cmux"] = phase(cmux, names, load, arrivals, recs)
        if args.only in (None, "throughput"):
            print(f"throughput: {n_flood} messages from 4 senders, cmux ...", flush=True)
            thr["cmux"] = flood(proj, names, n_flood, 4, arrivals, recs)
            print(f"throughput: a backlog of {n_flood} messages, cmux ...", flush=True)
            thr["cmux backlog"] = flood(proj, names, n_flood, 4, arrivals, recs, paused=router)
        poller = subprocess.Popen(
            [
                PY,
                str(BENCH / "baseline_router.py"),
                "--socket",
                cfg.socket_name,
                "--dir",
                str(folder),
                *(f"--pane={n}={pid}" for n, pid in panes.items()),
            ],
            env=proj.env,
        )
        try:
            time.sleep(0.3)
            phase(base, names, [0.0] * len(names), arrivals, recs)
            if args.only in (None, "latency"):
                print("latency: idle, baseline poller ...", flush=True)
                lat["idle baseline"] = phase(
                    base, names, idle_schedule(n_idle, rng), arrivals, recs
                )
                print("latency: under load, baseline poller ...", flush=True)
                lat["load baseline"] = phase(base, names, load, arrivals, recs)
            if args.only in (None, "throughput"):
                print(f"throughput: {n_flood} messages, baseline poller ...", flush=True)
                thr["baseline"] = flood(proj, names, n_flood, 4, arrivals, recs, baseline=folder)
        finally:
            poller.terminate()
            poller.wait()
        details.update(
            latency_ms=lat,
            throughput=thr,
            garbled=arrivals.garbled,
            empty_enters=arrivals.empty_enters,
            duplicates=arrivals.duplicates,
        )
    for k, v in lat.items():
        require(v["n"], "delivery", f"no message of the {k!r} phase arrived in any pane")
    for k, v in thr.items():
        require(v["delivered_per_s"] > 0, "delivery", f"nothing was delivered in the {k!r} flood")
    report("delivery", summarize_rows(args, lat, thr, arrivals), details, quick=q, out=args.out)
    return 0


def summarize_rows(
    args: argparse.Namespace,
    lat: dict[str, dict[str, Any]],
    thr: dict[str, dict[str, Any]],
    arrivals: Arrivals,
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    if lat:
        ic, ib, lc, lb = (
            lat[k] for k in ("idle cmux", "idle baseline", "load cmux", "load baseline")
        )
        rows.append(
            row(
                "delivery latency, idle",
                unit="ms",
                median=ic["median"],
                p99=ic["p99"],
                n=ic["n"],
                baseline=f"{ib['median']:.0f} / {ib['p99']:.0f}",
                goal="p50 < 20, p99 < 100",
                met=ic["median"] < 20 and ic["p99"] < 100 and ic["lost"] == 0,
            )
        )
        rows.append(
            row(
                f"delivery latency, {args.rate:.0f} msg/s to {args.agents} agents",
                unit="ms",
                median=lc["median"],
                p99=lc["p99"],
                n=lc["n"],
                baseline=f"{lb['median']:.0f} / {lb['p99']:.0f}",
                note=f"lost {lc['lost']}",
            )
        )
    if thr:
        clean = arrivals.duplicates == 0 and arrivals.garbled == 0
        for key, label in (("cmux", "4 senders at full speed"), ("cmux backlog", "a backlog")):
            t = thr[key]
            base = thr.get("baseline")
            rows.append(
                row(
                    f"throughput to {args.agents} agents, {label}",
                    unit="msg/s",
                    median=t["delivered_per_s"],
                    n=t["messages"],
                    baseline=f"{base['delivered_per_s']:.0f}" if base else "",
                    goal=">= 500, no loss",
                    met=clean and t["lost"] == 0 and t["delivered_per_s"] >= 500,
                    note=f"lost {t['lost']}, duplicates {t['duplicates']}; "
                    f"senders stored {t['send_rate']:.0f}/s",
                )
            )
    return rows


if __name__ == "__main__":
    sys.exit(main())
