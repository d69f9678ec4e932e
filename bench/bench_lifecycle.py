"""`cmux start` to a ready supervisor, and spawning 20 demo workers.

Start: ``cmux start --agent demo --no-attach`` as a real process, until the
supervisor's registry record (state/agents/supervisor.json) says ``idle``:
the demo supervisor is then reading its pane, ready for a task. Repeated
(start, ready, stop) to get a median and p99; each start creates the
project's private tmux server from nothing.

Spawn: with the session up, 20 ``cmux spawn wNN --agent demo --task ...``
calls one after another (CMUX_DEMO_PACE=0, so the demo agents do not pause
for a watching person). Reports each call's wall time, the total, and the
time until all 20 have left ``starting`` (each runs and reports its state).
The same again through ``tools/workers spawn``, the command the supervisor
agent itself uses.

    python bench/bench_lifecycle.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from statistics import median
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    REPO,
    BenchProject,
    report,
    row,
    sandbox,
    summarize,
)
from tests.helpers import wait_until

TASK = "Look at README.md and say what the project is for."


def start_once(proj: BenchProject) -> tuple[float, float]:
    """(ms until `cmux start` returned, ms until the supervisor was idle)."""
    t = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cmux", "start", "--agent", "demo", "--no-attach"],
        cwd=proj.root,
        env=proj.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    returned = None
    while True:
        if returned is None and proc.poll() is not None:
            returned = (time.perf_counter() - t) * 1000
            if proc.returncode != 0:
                raise RuntimeError(
                    f"cmux start failed: {proc.stderr.read() if proc.stderr else ''!r}"
                )
        if proj.registry_state("supervisor") == "idle":
            ready = (time.perf_counter() - t) * 1000
            break
        if time.perf_counter() - t > 60:
            raise TimeoutError("the supervisor never became idle")
        time.sleep(0.002)
    proc.wait()
    return returned if returned is not None else ready, ready


def spawn_cmd(proj: BenchProject, name: str, mode: str) -> subprocess.Popen[str]:
    if mode == "tool":
        argv = [str(REPO / "tools" / "workers"), "spawn", name]
        env = proj.agent_env("supervisor")
    else:
        argv = [sys.executable, "-m", "cmux", "spawn", name]
        env = proj.env
    agent = ["--command", "sleep 900"] if mode == "sleep" else ["--agent", "demo"]
    return subprocess.Popen(
        [*argv, *agent, "--task", TASK],
        cwd=proj.root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def spawn_round(proj: BenchProject, names: list[str], mode: str) -> dict[str, Any]:
    """Spawn ``names``: one after another (mode cli, tool or sleep), or all
    at once (mode parallel); wall time per call, in all, and until all are
    running; CPU of the spawn commands, and of the whole machine meanwhile."""
    per: list[float] = []
    kids0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy0 = busy_cpu()
    t0 = time.perf_counter()
    if mode == "parallel":
        procs = [spawn_cmd(proj, n, mode) for n in names]
        for proc in procs:
            _, err = proc.communicate(timeout=120)
            if proc.returncode != 0:
                raise RuntimeError(f"spawn failed: {err}")
            per.append((time.perf_counter() - t0) * 1000)
    else:
        for name in names:
            t = time.perf_counter()
            proc = spawn_cmd(proj, name, mode)
            _, err = proc.communicate(timeout=120)
            per.append((time.perf_counter() - t) * 1000)
            if proc.returncode != 0:
                raise RuntimeError(f"spawn {name} failed: {err}")
    total = (time.perf_counter() - t0) * 1000
    wait_until(
        lambda: all(proj.registry_state(x) not in (None, "starting") for x in names),
        timeout=120,
        interval=0.005,
        what="workers running",
    )
    running = (time.perf_counter() - t0) * 1000
    kids1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (kids1.ru_utime + kids1.ru_stime - kids0.ru_utime - kids0.ru_stime) * 1000
    return {
        "per_spawn_ms": per,
        "total_ms": round(total, 1),
        "running_ms": round(running, 1),
        "spawn_cpu_ms": round(cpu, 1),
        "machine_busy_cpu_ms": round((busy_cpu() - busy0) * 1000, 1),
    }


def busy_cpu() -> float:
    """Seconds of CPU the whole machine spent not idle (all cores), from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--workers", type=int, default=20)
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    rounds = 1 if args.quick else 2
    modes = ("cli", "tool", "parallel", "sleep")
    details: dict[str, Any] = {}
    returned: list[float] = []
    ready: list[float] = []
    spawns: dict[str, list[dict[str, Any]]] = {m: [] for m in modes}
    with sandbox({"CMUX_DEMO_PACE": "0"}) as box:
        proj = box.project()
        for _ in range(2 if args.quick else 4):  # start and stop alone
            r, rd = start_once(proj)
            returned.append(r)
            ready.append(rd)
            proj.ok("stop")
        for k in range(rounds):
            for mode in modes:  # each round of spawns in a fresh session
                r, rd = start_once(proj)
                returned.append(r)
                ready.append(rd)
                names = [f"{mode[0]}{k}x{i:02d}" for i in range(args.workers)]
                spawns[mode].append(spawn_round(proj, names, mode))
                proj.ok("stop")
    details["start"] = {
        "returned_ms": summarize(returned, digits=1),
        "ready_ms": summarize(ready, digits=1),
    }
    for mode in modes:
        got = spawns[mode]
        details[f"spawn_{mode}"] = {
            "rounds": [{k: v for k, v in g.items() if k != "per_spawn_ms"} for g in got],
            "total_ms": summarize([g["total_ms"] for g in got], digits=1),
            "running_ms": summarize([g["running_ms"] for g in got], digits=1),
            "per_spawn_ms": summarize([x for g in got for x in g["per_spawn_ms"]], digits=1),
            "spawn_cpu_ms": median([g["spawn_cpu_ms"] for g in got]),
            "machine_busy_cpu_ms": median([g["machine_busy_cpu_ms"] for g in got]),
        }
    s = details["start"]["ready_ms"]
    n = args.workers
    summary = [
        row(
            "cmux start to a ready supervisor (demo)",
            unit="ms",
            median=s["median"],
            p99=s["p99"],
            n=s["n"],
            note=f"the command returns after {details['start']['returned_ms']['median']:.0f} ms",
        )
    ]
    for mode, label in (
        ("cli", f"{n} x cmux spawn (demo), one after another"),
        ("tool", f"{n} x tools/workers spawn (demo), one after another"),
        ("parallel", f"{n} x cmux spawn (demo), all at once"),
        ("sleep", f"{n} x cmux spawn --command 'sleep', one after another"),
    ):
        d = details[f"spawn_{mode}"]
        summary.append(
            row(
                label + ", total",
                unit="ms",
                median=d["total_ms"]["median"],
                n=len(d["rounds"]),
                goal="< 3000",
                met=d["total_ms"]["median"] < 3000,
                note=f"all {n} running after {d['running_ms']['median']:.0f} ms; CPU: "
                f"spawn commands {d['spawn_cpu_ms']:.0f} ms, "
                f"whole machine {d['machine_busy_cpu_ms']:.0f} ms",
            )
        )
        if mode != "parallel":
            summary.append(
                row(
                    "  one spawn",
                    unit="ms",
                    median=d["per_spawn_ms"]["median"],
                    p99=d["per_spawn_ms"]["p99"],
                    n=d["per_spawn_ms"]["n"],
                )
            )
    report("lifecycle", summary, details, quick=args.quick, out=args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
