"""`cmux status` with 50 agents.

A session with 50 workers (``sleep``, registered through cmux's own spawn,
in process: setup, not measured), then ``cmux status --json`` and ``cmux
status`` (the table) as real processes, repeated and interleaved. The
baseline is ``tmux list-panes -a``: one tmux client call, the least a status
command that asks tmux could cost.

    python bench/bench_status.py [--quick] [--agents 50]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import report, row, sandbox, summarize, timed
from tests.helpers import wait_until


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--agents", type=int, default=50)
    p.add_argument("--runs", type=int, default=0)
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    runs = args.runs or (8 if args.quick else 30)
    with sandbox() as box:
        proj = box.project()
        proj.ok("start", "--command", "sleep 900", "--no-attach")
        wait_until(lambda: proj.daemon_pid("router"), timeout=30)
        from cmux.agents import spawn

        cfg = proj.config()
        for i in range(args.agents):
            spawn.spawn(cfg, f"w{i:02d}", task=f"task number {i}", command="sleep 900")
        rows = proj.ok("status", "--json").json()
        if len(rows) != args.agents + 1:
            raise RuntimeError(f"status shows {len(rows)} agents, not {args.agents + 1}")
        sock = cfg.socket_name
        samples: dict[str, list[float]] = {"json": [], "table": [], "tmux": []}
        for _ in range(2):  # warm up
            proj.ok("status", "--json")
            proj.ok("status")
        for _ in range(runs):
            samples["json"].append(proj.ok("status", "--json").ms)
            samples["table"].append(proj.ok("status", env={"COLUMNS": "160"}).ms)
            samples["tmux"].append(
                timed(
                    lambda: subprocess.run(
                        ["tmux", "-L", sock, "list-panes", "-a"], capture_output=True, check=True
                    )
                )
            )
    stats = {k: summarize(v, digits=1) for k, v in samples.items()}
    j, t, b = stats["json"], stats["table"], stats["tmux"]
    base = f"{b['median']:.1f} / {b['p99']:.1f} (tmux list-panes)"
    summary: list[dict[str, Any]] = [
        row(
            f"cmux status --json, {args.agents} agents",
            unit="ms",
            median=j["median"],
            p99=j["p99"],
            n=j["n"],
            baseline=base,
            goal="< 300",
            met=j["median"] < 300,
        ),
        row(
            f"cmux status (table), {args.agents} agents",
            unit="ms",
            median=t["median"],
            p99=t["p99"],
            n=t["n"],
            baseline=base,
            goal="< 300",
            met=t["median"] < 300,
        ),
    ]
    report("status", summary, {"agents": args.agents, "ms": stats}, quick=args.quick, out=args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
