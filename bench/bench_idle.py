"""CPU used by cmux's daemons while 20 agents sit idle.

Starts a session (supervisor: ``sleep``), spawns 20 recorder agents, lets it
settle, then reads utime+stime (and that of reaped children: the tmux
clients a daemon forks) from /proc/<pid>/stat for every daemon with a pid
file under state/run/ (the monitor, the router, the health monitor when
configured) and every process they started that still runs (the router's
tmux control client) at the start and the end of the span. Reports each as % of one
core, and the tmux server's share for reference (it is not cmux's daemon,
but cmux's polling would show there). Wake-ups: voluntary context switches
per second.

    python bench/bench_idle.py [--quick] [--seconds 60]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    command_name,
    context_switches,
    cpu_seconds,
    descendants,
    report,
    row,
    sandbox,
    spawn_recorders,
    wait_until,
)


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def label(pid: int) -> str:
    argv = command_name(pid).split()
    if argv and argv[0].endswith("tmux") and "-C" in argv:
        return "its tmux control client"
    return " ".join([os.path.basename(argv[0]), *argv[1:3]]) if argv else "?"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="15 s instead of 60")
    p.add_argument("--seconds", type=float, default=0)
    p.add_argument("--agents", type=int, default=20)
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    span = args.seconds or (15.0 if args.quick else 60.0)
    with sandbox() as box:
        proj = box.project()
        proj.ok("start", "--command", "sleep 900", "--no-attach")
        wait_until(lambda: proj.daemon_pid("router") and proj.daemon_pid("monitor"))
        spawn_recorders(proj, [f"a{i:02d}" for i in range(args.agents)])
        time.sleep(3)  # let the start-up work (first scans, first status draw) pass
        run_dir = proj.data / "state" / "run"
        pids: dict[str, int] = {}
        for f in sorted(run_dir.glob("*.pid")):
            pid = proj.daemon_pid(f.stem)
            if pid is not None:
                pids[f.stem] = pid
        for pid in list(pids.values()):  # and what they started that still runs
            for kid in descendants(pid):
                names = {v: k for k, v in pids.items()}
                if kid not in names:
                    pids[f"{names.get(parent_of(kid), '?')}: {label(kid)}"] = kid
        server = int(proj.tmux("display-message", "-p", "#{pid}").strip())
        pids["tmux server (not cmux's)"] = server
        before = {n: (cpu_seconds(pid), context_switches(pid)) for n, pid in pids.items()}
        t0 = time.monotonic()
        time.sleep(span)  # measuring idleness over a fixed span is the point here
        elapsed = time.monotonic() - t0
        after = {n: (cpu_seconds(pid), context_switches(pid)) for n, pid in pids.items()}
    per: dict[str, dict[str, float]] = {}
    for name in pids:
        cpu = after[name][0] - before[name][0]
        per[name] = {
            "cpu_seconds": round(cpu, 3),
            "percent_of_core": round(cpu / elapsed * 100, 3),
            "wakeups_per_s": round((after[name][1] - before[name][1]) / elapsed, 1),
        }
    daemons = [n for n in per if not n.startswith("tmux server")]
    total = sum(per[n]["percent_of_core"] for n in daemons)
    summary: list[dict[str, Any]] = [
        row(
            f"idle CPU, all daemons, {args.agents} agents, {span:.0f} s",
            unit="% core",
            median=round(total, 3),
            baseline="",
            goal="< 0.5",
            met=total < 0.5,
            note=", ".join(f"{n} {per[n]['percent_of_core']:.2f}%" for n in daemons),
        )
    ]
    for n in per:
        summary.append(
            row(
                f"  {n}",
                unit="% core",
                median=per[n]["percent_of_core"],
                note=f"{per[n]['wakeups_per_s']} wake-ups/s",
            )
        )
    report(
        "idle",
        summary,
        {"seconds": round(elapsed, 2), "agents": args.agents, "daemons": per},
        quick=args.quick,
        out=args.out,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
