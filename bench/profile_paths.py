"""Where the time goes on the paths that miss their goals (or nearly do).

Not part of ``bench/run``: the profiles quoted in docs/PERFORMANCE.md.

- send: ``tools/mailbox send`` taken apart (the sh wrapper, the interpreter
  with and without site, importing cmux, the work), and ``-X importtime``
  of the send path (the smallest of N runs per module, so noise from a
  shared machine falls out);
- cli: CPU of a cmux command that does nothing (``cmux --help``), of a
  spawn, of the bare interpreter, from getrusage of the children;
- status: ``cmux status`` with 50 agents in phases, in process: importing
  click, cmux's modules, collecting the rows, rich's import and rendering.

    python bench/profile_paths.py [--runs 15]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import PY, REPO, machine, sandbox, write_result
from tests.helpers import wait_until

STATUS_PHASES = r"""
import os, sys, time, json
T = time.perf_counter
marks = [("start", T())]
import click
marks.append(("import click", T()))
from cmux import ui
from cmux.status import collect_status, status_header
from cmux.config import load_config
marks.append(("import cmux.status, ui, config", T()))
cfg = load_config()
rows = collect_status(cfg)
marks.append(("collect_status (reconcile, registry, mail)", T()))
status_header(cfg)
marks.append(("status_header (tmux has-session)", T()))
from rich.console import Console
from rich.table import Table
marks.append(("import rich.console, rich.table", T()))
table = ui.status_table(rows)
Console(file=open(os.devnull, "w"), width=160).print(table)
marks.append(("build and render the table (rich)", T()))
print(json.dumps([(b[0], (b[1] - a[1]) * 1000) for a, b in zip(marks, marks[1:])]))
"""


def importtime(argv: list[str], env: dict[str, str], cwd: Path, runs: int) -> list[dict[str, Any]]:
    """-X importtime of ``argv``: per module the smallest self and cumulative µs."""
    best: dict[str, list[int]] = {}
    for _ in range(runs):
        err = subprocess.run(
            [PY, "-X", "importtime", *argv], env=env, cwd=cwd, capture_output=True, text=True
        ).stderr
        for line in err.splitlines():
            m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
            if not m:
                continue
            self_us, cum_us, depth = int(m[1]), int(m[2]), len(m[3]) // 2
            old = best.get(m[4])
            best[m[4]] = [
                min(self_us, old[0]) if old else self_us,
                min(cum_us, old[1]) if old else cum_us,
                depth,
            ]
    rows = [
        {"module": k, "self_ms": v[0] / 1000, "cumulative_ms": v[1] / 1000, "depth": v[2]}
        for k, v in best.items()
    ]
    return sorted(rows, key=lambda r: -r["cumulative_ms"])


def cpu_of(argv: list[str], env: dict[str, str], cwd: Path, runs: int) -> float:
    """Median CPU (user + system, ms) of running ``argv`` as a child."""
    out = []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, check=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        out.append((after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) * 1000)
    return statistics.median(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--runs", type=int, default=15)
    p.add_argument("--agents", type=int, default=50)
    args = p.parse_args(argv)
    n = args.runs
    result: dict[str, Any] = {"machine": machine(), "runs": n}
    with sandbox() as box:
        proj = box.project()
        cfg = proj.config()
        from cmux.mail import store

        for name in ("supervisor", "w1"):
            store.ensure(cfg.data, name)
        env = proj.agent_env("w1")
        send = ["send", "supervisor", "a short note"]
        variants = {
            "tools/mailbox send": [str(REPO / "tools" / "mailbox"), *send],
            "python -m cmux.agenttools.mailbox send (no sh)": [
                PY,
                "-m",
                "cmux.agenttools.mailbox",
                *send,
            ],
            "python -S -m ... send (no site)": [PY, "-S", "-m", "cmux.agenttools.mailbox", *send],
            "python -S, import the send path only": [
                PY,
                "-S",
                "-c",
                "import cmux.agenttools.mailbox, cmux.config, cmux.mail.store",
            ],
            "python -c pass": [PY, "-c", "pass"],
            "python -S -c pass": [PY, "-S", "-c", "pass"],
        }
        walls: dict[str, list[float]] = {k: [] for k in variants}
        for _ in range(n):
            for k, cmd in variants.items():
                t = time.perf_counter()
                subprocess.run(cmd, env=env, cwd=proj.root, check=True, stdout=subprocess.DEVNULL)
                walls[k].append((time.perf_counter() - t) * 1000)
        result["send_wall_ms"] = {
            k: {"median": round(statistics.median(v), 1), "min": round(min(v), 1)}
            for k, v in walls.items()
        }
        result["send_importtime"] = importtime(
            ["-m", "cmux.agenttools.mailbox", *send], env, proj.root, n
        )[:30]

        proj.ok("start", "--command", "sleep 900", "--no-attach")
        wait_until(lambda: proj.daemon_pid("router"), timeout=30)
        from cmux.agents import spawn

        for i in range(args.agents):
            spawn.spawn(cfg, f"w{i:02d}", task=f"task number {i}", command="sleep 900")
        cli_env = dict(proj.env)
        result["cli_cpu_ms"] = {
            "python -c pass": cpu_of([PY, "-c", "pass"], cli_env, proj.root, n),
            "python -c 'import cmux.cli'": cpu_of(
                [PY, "-c", "import cmux.cli"], cli_env, proj.root, n
            ),
            "cmux --help": cpu_of([PY, "-m", "cmux", "--help"], cli_env, proj.root, n),
            "cmux status --json": cpu_of(
                [PY, "-m", "cmux", "status", "--json"], cli_env, proj.root, n
            ),
        }
        spawn_cpu = []
        for i in range(max(5, n // 3)):
            spawn_cpu.append(
                cpu_of(
                    [
                        PY,
                        "-m",
                        "cmux",
                        "spawn",
                        f"p{i:02d}",
                        "--command",
                        "sleep 900",
                        "--task",
                        "t",
                    ],
                    cli_env,
                    proj.root,
                    1,
                )
            )
        result["cli_cpu_ms"]["cmux spawn --command sleep"] = statistics.median(spawn_cpu)
        phases: dict[str, list[float]] = {}
        for _ in range(n):
            out = subprocess.run(
                [PY, "-c", STATUS_PHASES],
                env={**cli_env, "COLUMNS": "160"},
                cwd=proj.root,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            for name, ms in json.loads(out):
                phases.setdefault(name, []).append(ms)
        result["status_phases_ms"] = {
            k: {"median": round(statistics.median(v), 1), "min": round(min(v), 1)}
            for k, v in phases.items()
        }
        result["status_importtime"] = importtime(
            ["-m", "cmux", "status"], {**cli_env, "COLUMNS": "160"}, proj.root, max(5, n // 3)
        )[:30]
    result["load_end"] = os.getloadavg()
    _print(result)
    path = write_result("profile_paths", result)
    print(f"\nwrote {path.relative_to(REPO)}")
    return 0


def _print(r: dict[str, Any]) -> None:
    m = r["machine"]
    print(f"{m['date']}, {m['cpu']}, {m['cores']} cores, load {m['load']} -> {r['load_end']}")
    print("\ntools/mailbox send, taken apart (wall ms, median / min):")
    for k, v in r["send_wall_ms"].items():
        print(f"  {k:48} {v['median']:7.1f} {v['min']:7.1f}")
    print("\nimports of the send path (-X importtime, ms, smallest of the runs):")
    for row in r["send_importtime"][:20]:
        print(
            f"  {row['cumulative_ms']:6.1f} cum {row['self_ms']:5.1f} self  "
            f"{'  ' * row['depth']}{row['module']}"
        )
    print("\nCPU of a process (ms, median):")
    for k, v in r["cli_cpu_ms"].items():
        print(f"  {k:48} {v:7.1f}")
    print("\ncmux status with 50 agents, in phases (ms, median / min):")
    for k, v in r["status_phases_ms"].items():
        print(f"  {k:48} {v['median']:7.1f} {v['min']:7.1f}")
    print("\nimports of cmux status (-X importtime, ms, smallest of the runs):")
    for row in r["status_importtime"][:20]:
        print(
            f"  {row['cumulative_ms']:6.1f} cum {row['self_ms']:5.1f} self  "
            f"{'  ' * row['depth']}{row['module']}"
        )


if __name__ == "__main__":
    sys.exit(main())
