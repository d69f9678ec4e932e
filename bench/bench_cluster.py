"""Mail across "hosts": two data roots on this machine, each with its own node
daemon (`cmux node`), on a real nats-server with JetStream on loopback,
beside the same measurement on one host in the same run.

What is timed is Maildir to Maildir: from just before the sender stores a
message (store.send, as `mailbox send` does) to the moment the file appears
in the recipient's new/ (inotify), on the recipient's host. On one host that
is the send itself; across hosts it adds the spool, the publish and its
PubAck, the pull, the fsync into new/ and the ack. The router's part (new/
to the pane) is the same on both and is bench_delivery's.

- latency: one message at a time at random gaps, round robin over 20 agents
  on host B, sent on host A (p50, p99); the same to 20 agents on A itself;
- throughput: 4 senders on A store N messages for B's 20 agents as fast as
  they can; delivered/s from the first send to the last arrival, with lost
  and doubled counted;
- idle CPU: each node daemon over 10 s with nothing to do.

    python bench/bench_cluster.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import random
import select
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import cpu_seconds, report, require, row, sandbox, summarize
from tests.helpers import wait_until

AGENTS = 20
BODY = "please rebase on main and run the tests again; report back when green"


class Landings:
    """When each message file appeared in a watched new/ (inotify, a thread)."""

    def __init__(self) -> None:
        from cmux import watch

        self.w = watch.open_watcher()
        self.at: dict[str, float] = {}
        self.names: list[str] = []
        self.stop = threading.Event()
        self._r, self._w = os.pipe()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def add(self, folder: Path) -> None:
        self.w.add(folder, "files")

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            ready, _, _ = select.select([self.w.fileno(), self._r], [], [], 0.5)
            if self.w.fileno() in ready:
                now = time.time()
                for e in self.w.read():
                    if e.name.endswith(".json"):
                        self.names.append(e.name)
                        self.at.setdefault(e.name[:-5], now)

    def close(self) -> None:
        self.stop.set()
        os.write(self._w, b"x")
        self.thread.join(2)
        self.w.close()


def latency(host: Any, to: list[str], landed: Landings, n: int) -> list[float]:
    out = []
    for i in range(n):
        time.sleep(random.uniform(0.005, 0.02))
        t0 = time.time()
        mid: str = host.send(to[i % len(to)], BODY, "a0")
        wait_until(lambda m=mid: m in landed.at, timeout=10, interval=0.001)  # type: ignore[misc]
        out.append((landed.at[mid] - t0) * 1000)
    return out


def throughput(host: Any, to: list[str], landed: Landings, n: int, senders: int = 4) -> dict:
    ids: list[list[str]] = [[] for _ in range(senders)]

    def run(k: int) -> None:
        for i in range(n // senders):
            ids[k].append(host.send(to[(i * senders + k) % len(to)], BODY, f"s{k}"))

    t0 = time.time()
    threads = [threading.Thread(target=run, args=(k,)) for k in range(senders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sent = [m for chunk in ids for m in chunk]
    sent_s = time.time() - t0
    try:
        wait_until(lambda: all(m in landed.at for m in sent), timeout=120, interval=0.01)
    except AssertionError:
        pass
    got = [m for m in sent if m in landed.at]
    end = max((landed.at[m] for m in got), default=t0)
    doubled = len(landed.names) - len(set(landed.names))
    return {
        "sent": len(sent),
        "delivered": len(got),
        "lost": len(sent) - len(got),
        "doubled": doubled,
        "per_s": round(len(got) / (end - t0), 1) if got else 0.0,
        "sent_per_s": round(len(sent) / sent_s, 1),
    }


def backlog(a: Any, b: Any, natsd: Any, to: list[str], landed: Landings, n: int) -> dict:
    """A's node stopped while n messages are spooled, then started: the rate
    from the first arrival on B to the last (the pipeline alone, not the
    senders), and the CPU each process spent on it per message (A's node,
    B's node, nats-server: what bounds the rate on a shared machine), also
    as user and system apart."""
    a.kill_node()
    sent = [a.send(to[i % len(to)], BODY, "s0") for i in range(n)]
    landed.names.clear()
    a.start_node()
    pids = {"a": a.proc.pid, "b": b.proc.pid, "nats": natsd.proc.pid}
    c0 = {k: cpu_seconds(p) for k, p in pids.items()}
    s0 = {k: user_system(p) for k, p in pids.items()}
    try:
        wait_until(lambda: all(m in landed.at for m in sent), timeout=120, interval=0.01)
    except AssertionError:
        pass
    cpu = {k: round(1000 * (cpu_seconds(p) - c0[k]) / n, 2) for k, p in pids.items()}
    split = {
        k: [round(1000 * (t - t0) / n, 2) for t, t0 in zip(user_system(p), s0[k], strict=True)]
        for k, p in pids.items()
    }
    times = sorted(landed.at[m] for m in sent if m in landed.at)
    span = times[-1] - times[0] if len(times) > 1 else 0.0
    return {
        "sent": n,
        "delivered": len(times),
        "lost": n - len(times),
        "doubled": len(landed.names) - len(set(landed.names)),
        "per_s": round((len(times) - 1) / span, 1) if span else 0.0,
        "cpu_ms_per_msg": cpu,
        "cpu_user_system_ms_per_msg": split,
    }


def user_system(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of ``pid``: a process spending its time in
    the kernel (file creation, fsyncs) shows it here, not in py-spy."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def caught_up(host: Any) -> bool:
    offset = Path(host.data.state_dir) / "cluster" / "events.offset"
    try:
        done = int(offset.read_text().strip())
    except (OSError, ValueError):
        return False
    return done >= os.path.getsize(host.data.events_path) - 4096  # its own last few lines


def idle_cpu(pid: int, seconds: float) -> float:
    c0, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return round(100 * (cpu_seconds(pid) - c0) / (time.monotonic() - t0), 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    from tests.cluster.hosts import Host
    from tests.cluster.natsd import NatsServer, available

    require(available(), "cluster", "nats-server is not installed (apt-get install nats-server)")
    try:
        import nats  # noqa: F401
    except ImportError:
        require(False, "cluster", "nats-py is missing (pip install -e '.[cluster]')")
    n_lat = 60 if args.quick else 300
    n_thr = 400 if args.quick else 2000
    idle_s = 3.0 if args.quick else 10.0

    with sandbox() as box:
        natsd = NatsServer(box.base / "natsd")
        natsd.start()
        a = Host.make("a", box.base, box.env, natsd)
        b = Host.make("b", box.base, box.env, natsd)
        a.agent("a0")
        local = [f"a{i}" for i in range(1, AGENTS + 1)]
        remote = [f"b{i}" for i in range(1, AGENTS + 1)]
        for name in local:
            a.agent(name)
        for name in remote:
            b.agent(name)
        try:
            a.start_node()
            b.start_node()
            wait_until(
                lambda: all(a.spooled_for(r) == "b" for r in remote),
                timeout=20,
                what="A's spools for B's agents",
            )
            landed = Landings()
            for name in local:
                landed.add(Path(a.data.mailbox_path(name)) / "new")
            for name in remote:
                landed.add(Path(b.data.mailbox_path(name)) / "new")
            landed.start()
            one_host = latency(a, local, landed, n_lat)
            cross = latency(a, remote, landed, n_lat)
            landed.names.clear()
            thr = throughput(a, remote, landed, n_thr)
            blg = backlog(a, b, natsd, remote, landed, n_thr)
            assert a.proc is not None and b.proc is not None
            for h in (a, b):  # idle: its events published too (CMUX_EVENTS), not a burst's tail
                wait_until(lambda h=h: caught_up(h), timeout=120, interval=0.2)  # type: ignore[misc]
            cpu = {h.name: idle_cpu(p.pid, idle_s) for h, p in ((a, a.proc), (b, b.proc))}
            landed.close()
        finally:
            a.kill_node()
            b.kill_node()
            natsd.kill()

    s1, s2 = summarize(one_host), summarize(cross)
    summary = [
        row(
            "send to Maildir, one host",
            unit="ms",
            median=s1["median"],
            p99=s1["p99"],
            n=s1["n"],
            note="store.send until the file is in new/",
        ),
        row(
            "send to Maildir, across hosts",
            unit="ms",
            median=s2["median"],
            p99=s2["p99"],
            n=s2["n"],
            baseline=f"{s1['median']} one host",
            goal="p50 < 20",
            met=s2["median"] is not None and s2["median"] < 20,
            note="spool, publish+PubAck, pull, fsync into B's new/",
        ),
        row(
            f"throughput to {AGENTS} agents across hosts",
            unit="msg/s",
            median=thr["per_s"],
            n=thr["sent"],
            goal="500, 0 lost",
            met=thr["per_s"] >= 500 and thr["lost"] == 0 and thr["doubled"] == 0,
            note=f"lost {thr['lost']}, doubled {thr['doubled']}; 4 senders on A stored "
            f"{thr['sent_per_s']}/s",
        ),
        row(
            f"throughput to {AGENTS} agents across hosts, a backlog",
            unit="msg/s",
            median=blg["per_s"],
            n=blg["sent"],
            goal="500, 0 lost",
            met=blg["per_s"] >= 500 and blg["lost"] == 0 and blg["doubled"] == 0,
            note=f"lost {blg['lost']}, doubled {blg['doubled']}; first to last arrival; CPU ms "
            f"per message: A {blg['cpu_ms_per_msg']['a']}, B {blg['cpu_ms_per_msg']['b']}, "
            f"nats-server {blg['cpu_ms_per_msg']['nats']} (user + system: "
            + ", ".join(f"{k} {u} + {y}" for k, (u, y) in blg["cpu_user_system_ms_per_msg"].items())
            + ")",
        ),
        row(
            "node daemon idle CPU",
            unit="% core",
            median=max(cpu.values()),
            n=2,
            note=f"A {cpu['a']}, B {cpu['b']} over {idle_s:.0f} s",
        ),
    ]
    report(
        "cluster",
        summary,
        {"one_host": s1, "cross": s2, "throughput": thr, "backlog": blg, "idle_cpu": cpu},
        quick=args.quick,
    )


if __name__ == "__main__":
    main()
