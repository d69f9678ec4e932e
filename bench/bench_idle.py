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

The span covers the monitor's periodic work: its tick every second (the
daemons' supervision, the screen reads, the watchdogs, the status redraw) and
its reconcile every 10 s; the quick span is 2.5 reconcile periods, so it holds
at least two reconciles whatever their phase. A span shorter than one
reconcile period is refused. The run FAILS (exit 1) when it finds no monitor
or router to measure, when the monitor never woke, or when the daemons'
CPU counted no tick at all: a 0 % from a window that saw no work says nothing.

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
    require,
    row,
    sandbox,
    spawn_recorders,
)
from tests.helpers import wait_until

# cmux/monitor.py: the monitor ticks every TICK (1 s) and reconciles the
# registry with tmux every 10 s; those are the periodic jobs the span must hold.
RECONCILE_S = 10.0
QUICK_S = 2.5 * RECONCILE_S
FULL_S = 60.0


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def label(pid: int) -> str:
    argv = command_name(pid).split()
    if argv and argv[0].endswith("tmux") and "-C" in argv:
        return "its tmux control client"
    return " ".join([os.path.basename(argv[0]), *argv[1:3]]) if argv else "?"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help=f"{QUICK_S:.0f} s instead of {FULL_S:.0f}")
    p.add_argument("--seconds", type=float, default=0)
    p.add_argument("--agents", type=int, default=20)
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    span = args.seconds or (QUICK_S if args.quick else FULL_S)
    if span < RECONCILE_S:
        p.error(f"--seconds {span:g} would miss the monitor's reconcile (every {RECONCILE_S:g} s)")
    with sandbox() as box:
        proj = box.project()
        proj.ok("start", "--command", "sleep 900", "--no-attach")
        wait_until(lambda: proj.daemon_pid("router") and proj.daemon_pid("monitor"), timeout=30)
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
        require(
            "monitor" in pids and "router" in pids,
            "idle",
            f"no monitor or router pid file under {run_dir} (found: {sorted(pids) or 'none'})",
        )
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
    require(
        per["monitor"]["wakeups_per_s"] > 0,
        "idle",
        f"the monitor never woke in {elapsed:.0f} s (it ticks every second): was it stopped?",
    )
    require(
        sum(per[n]["cpu_seconds"] for n in daemons) > 0,
        "idle",
        f"the daemons counted no CPU tick in {elapsed:.0f} s; a longer --seconds is needed",
    )
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
