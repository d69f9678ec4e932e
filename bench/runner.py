"""Run every benchmark, print one table, write bench/results/summary.json.

``bench/run`` calls this with the repository's virtual environment. Each
benchmark is its own process (a fresh sandbox: private HOME, private tmux
server), writes bench/results/<name>.json and prints its own table; this
folds their summary rows into one table with the goals.

    bench/run                   everything (under 10 minutes on 2 cores)
    bench/run --quick           a smoke run (~2 minutes)
    bench/run --only delivery   one benchmark (repeat --only for more)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import BENCH, PY, RESULTS, loadavg, machine, markdown, row, table

# name -> what it measures; run in this order.
BENCHES = {
    "send": "tools/mailbox send wall time",
    "status": "cmux status with 50 agents",
    "lifecycle": "cmux start to ready, 20 spawns",
    "idle": "CPU of the daemons with 20 idle agents",
    "delivery": "delivery latency and throughput",
    "journal": "journal search over 100,000 entries",
    "merge": "merge queue: serial against batched, the merger's cost per entry",
    "dashboard": "web dashboard: page loads, stream latency at 100 msg/s, its CPU",
    "dashboard_browser": "the dashboard in chromium: page load, event to screen, idle CPU",
    "cluster": "mail across hosts: two nodes on NATS, latency, throughput, idle CPU",
}
TIMEOUT = {"journal": 420.0, "merge": 420.0}


def journal_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """bench_journal.py's own JSON, in the summary's shape."""
    by = {r["name"]: r for r in result.get("results", [])}
    entries = result.get("corpus", {}).get("entries", "?")
    cmux = next((r for n, r in by.items() if n.startswith("cmux search")), None)
    grep = next((r for n, r in by.items() if n.startswith("grep")), None)
    cli = next((r for n, r in by.items() if n.startswith("tools/journal search")), None)
    rows = []
    if cmux:
        rows.append(
            row(
                f"journal search, top 10, {entries} entries",
                unit="ms",
                median=cmux["median_ms"],
                p99=cmux["p99_ms"],
                n=cmux["n"],
                baseline=f"{grep['median_ms']:.1f} / {grep['p99_ms']:.1f} (grep)" if grep else "",
                goal="< 10",
                met=cmux["median_ms"] < 10,
                note="in process",
            )
        )
    if cli:
        rows.append(
            row(
                "  tools/journal search (new process)",
                unit="ms",
                median=cli["median_ms"],
                p99=cli["p99_ms"],
                n=cli["n"],
            )
        )
    return rows


def not_run(name: str, why: str) -> dict[str, Any]:
    return row(f"{BENCHES[name]}: not run", unit="", note=why)


def run_one(name: str, quick: bool) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    script = BENCH / f"bench_{name}.py"
    out = RESULTS / f"{name}.json"
    info: dict[str, Any] = {"load_before": loadavg()}
    if not script.exists():
        return [not_run(name, f"{script.name} does not exist yet")], info
    out.unlink(missing_ok=True)  # never fold in a stale result
    argv = [PY, str(script), *(["--quick"] if quick else [])]
    print(f"\n=== {name}: {BENCHES[name]} ({' '.join(argv[1:])})", flush=True)
    t = time.monotonic()
    try:
        proc = subprocess.run(argv, timeout=TIMEOUT.get(name, 300.0), check=False)
        code = proc.returncode
    except subprocess.TimeoutExpired:
        code = -1
    info.update(seconds=round(time.monotonic() - t, 1), load_after=loadavg(), exit=code)
    if code != 0 or not out.exists():
        why = "timed out" if code == -1 else f"failed (exit {code})"
        return [not_run(name, why)], info
    result = json.loads(out.read_text())
    rows = journal_rows(result) if name == "journal" else list(result.get("summary", []))
    return rows, info


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a smoke run: fewer runs, shorter spans")
    p.add_argument(
        "--only",
        action="append",
        choices=list(BENCHES),
        metavar="NAME",
        help=f"run only this benchmark (repeatable): {', '.join(BENCHES)}",
    )
    args = p.parse_args(argv)
    names = [n for n in BENCHES if not args.only or n in args.only]
    RESULTS.mkdir(parents=True, exist_ok=True)
    started = machine()
    t0 = time.monotonic()
    rows: list[dict[str, Any]] = []
    runs: dict[str, Any] = {}
    for name in names:
        got, info = run_one(name, args.quick)
        for r in got:
            r["bench"] = name
        rows += got
        runs[name] = info
    total = round(time.monotonic() - t0, 1)
    summary = {
        "quick": args.quick,
        "machine": started,
        "load_end": loadavg(),
        "seconds": total,
        "benches": runs,
        "rows": rows,
    }
    (RESULTS / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (RESULTS / "summary.md").write_text(markdown(rows) + "\n")
    m = started
    print(
        f"\n=== summary{' (quick)' if args.quick else ''}: {m['date']}, {m['cpu']}, "
        f"{m['cores']} cores, {m['python']}, {m['tmux']}"
    )
    print(f"load average at start {m['load']}, at end {loadavg()}; {total:.0f} s in all\n")
    print(table(rows))
    print("\nbaseline: the same measure of the simpler way (docs/PERFORMANCE.md says which)")
    print(f"wrote {RESULTS.relative_to(BENCH.parent)}/summary.json and summary.md")
    # A missed goal is a finding, not a failure; a benchmark that broke is.
    return 1 if any(info.get("exit", 0) != 0 for info in runs.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
