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
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    REPO,
    Project,
    report,
    row,
    sandbox,
    summarize,
    wait_until,
)

TASK = "Look at README.md and say what the project is for."


def start_once(proj: Project) -> tuple[float, float]:
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


def spawn_round(proj: Project, prefix: str, n: int, *, via_tool: bool) -> dict[str, Any]:
    per: list[float] = []
    t0 = time.perf_counter()
    for i in range(n):
        name = f"{prefix}{i:02d}"
        t = time.perf_counter()
        if via_tool:
            r = subprocess.run(
                [str(REPO / "tools" / "workers"), "spawn", name, "--agent", "demo", "--task", TASK],
                cwd=proj.root,
                env=proj.agent_env("supervisor"),
                capture_output=True,
                text=True,
            )
            code, err = r.returncode, r.stderr
        else:
            run = proj.cmux("spawn", name, "--agent", "demo", "--task", TASK)
            code, err = run.code, run.err
        per.append((time.perf_counter() - t) * 1000)
        if code != 0:
            raise RuntimeError(f"spawn {name} failed: {err}")
    total = (time.perf_counter() - t0) * 1000
    names = [f"{prefix}{i:02d}" for i in range(n)]
    wait_until(
        lambda: all(proj.registry_state(x) not in (None, "starting") for x in names),
        timeout=120,
        interval=0.005,
        what="workers running",
    )
    running = (time.perf_counter() - t0) * 1000
    return {
        "per_spawn_ms": summarize(per, digits=1),
        "total_ms": round(total, 1),
        "running_ms": round(running, 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--workers", type=int, default=20)
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    starts = 3 if args.quick else 8
    details: dict[str, Any] = {}
    with sandbox({"CMUX_DEMO_PACE": "0"}) as box:
        proj = box.project()
        returned, ready = [], []
        for i in range(starts):
            r, rd = start_once(proj)
            returned.append(r)
            ready.append(rd)
            if i < starts - 1:
                proj.ok("stop")
        details["start"] = {
            "returned_ms": summarize(returned, digits=1),
            "ready_ms": summarize(ready, digits=1),
        }
        cli = spawn_round(proj, "w", args.workers, via_tool=False)
        details["spawn_cli"] = cli
        tool = spawn_round(proj, "t", args.workers, via_tool=True)
        details["spawn_tool"] = tool
    s = details["start"]["ready_ms"]
    summary = [
        row(
            "cmux start to a ready supervisor (demo)",
            unit="ms",
            median=s["median"],
            p99=s["p99"],
            n=s["n"],
            note=f"command returned after {details['start']['returned_ms']['median']:.0f} ms",
        ),
        row(
            f"{args.workers} x cmux spawn (demo), total",
            unit="ms",
            median=cli["total_ms"],
            n=args.workers,
            goal="< 3000",
            met=cli["total_ms"] < 3000,
            note=f"all running after {cli['running_ms']:.0f} ms",
        ),
        row(
            "  one cmux spawn",
            unit="ms",
            median=cli["per_spawn_ms"]["median"],
            p99=cli["per_spawn_ms"]["p99"],
            n=args.workers,
        ),
        row(
            f"{args.workers} x tools/workers spawn (demo), total",
            unit="ms",
            median=tool["total_ms"],
            n=args.workers,
            goal="< 3000",
            met=tool["total_ms"] < 3000,
            note=f"all running after {tool['running_ms']:.0f} ms",
        ),
        row(
            "  one tools/workers spawn",
            unit="ms",
            median=tool["per_spawn_ms"]["median"],
            p99=tool["per_spawn_ms"]["p99"],
            n=args.workers,
        ),
    ]
    report("lifecycle", summary, details, quick=args.quick, out=args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
