"""The merge queue: 8 branches, one bad, a 2 s check; and cmux's own cost per entry.

Each project is a real git repository made a cmux project, with 8 worker
branches (``cmux/w1`` .. ``cmux/w8``, one commit each adding its own file,
registered as ``--worktree`` workers with mailboxes, as a spawn makes them)
queued in order through ``cmux.ops.merge.enqueue``. Branch ``--bad`` (6 by
default) adds a file ``BAD``; the one check is ``sleep 2; test ! -e BAD``.
The merger's rounds run in process, as tests/integration/test_merge_queue.py
drives them (``Merger.recover``, then ``Merger.step`` until nothing is
queued): the daemon adds only a watcher wake-up between rounds.

- Serial (``[merge] batch = 1``) against batched (``batch = 4``): wall time
  from the first round to a settled queue, and the check runs each used.
  Both must end with 7 landed and the bad one failed, trunk without BAD.
- cmux's own overhead per landed entry: ``[merge] checks = []`` (nothing
  runs; entries land untested), batch 1, N branches queued; the wall time
  of each ``Merger.step`` (build the merge in the scratch worktree, move
  trunk and the main checkout, keep the original head, tell the worker and
  its parent, the journal entry, the events). The first round, which makes
  the scratch worktree, is timed apart. A second row does the same with a
  no-op check (``true``): one check process and the health monitor's
  record of a passing commit on top. A third row queues the same behind
  the 200 decided entries the queue file keeps (``queue.KEPT``), as a
  project that has merged for a while has them: the file is read and
  written whole on every change.

    python bench/bench_merge.py [--quick] [--entries N] [--bad K]
"""

from __future__ import annotations

import argparse
import math
import resource
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import BenchProject, Sandbox, report, require, row, sandbox, summarize
from cmux.merge.queue import KEPT
from tests.helpers import git

BRANCHES = 8
CHECK_SECONDS = 2
SLOW_CHECK = f"""
[[merge.checks]]
name = "slow"
command = "sleep {CHECK_SECONDS}; test ! -e BAD"
timeout = 60
"""
NO_CHECKS = "checks = []\n"
NOOP_CHECK = """
[[merge.checks]]
name = "noop"
command = "true"
timeout = 60
"""


def project(box: Sandbox, name: str, *, batch: int, checks: str) -> BenchProject:
    """A cmux project with ``[merge] batch`` and the given checks, committed."""
    proj = box.project(name)
    toml = proj.root / "cmux.toml"
    toml.write_text(toml.read_text() + f"\n[merge]\nbatch = {batch}\n" + checks)
    git(proj.root, "add", "-A")
    git(proj.root, "commit", "-q", "-m", "cmux.toml")
    return proj


def workers(proj: BenchProject, n: int, *, bad: int | None = None) -> list[str]:
    """``n`` registered worktree workers w1..wn, each with one commit on
    cmux/wI (the ``bad`` one adds BAD), queued in order. Setup, not measured."""
    from cmux.agents import registry
    from cmux.agents.registry import Agent
    from cmux.mail import store
    from cmux.ops.merge import enqueue

    cfg = proj.config()
    store.ensure(cfg.data, "supervisor")
    names = []
    for i in range(1, n + 1):
        name = f"w{i}"
        wt = proj.data / "worktrees" / name
        wt.parent.mkdir(parents=True, exist_ok=True)
        git(proj.root, "worktree", "add", "-q", "-b", f"cmux/{name}", str(wt), "HEAD")
        (wt / f"{name}.txt").write_text(f"work of {name}\n")
        if i == bad:
            (wt / "BAD").write_text("breaks the check\n")
        git(wt, "add", "-A")
        git(wt, "commit", "-q", "-m", f"{name}: its work")
        store.ensure(cfg.data, name)
        registry.save(
            cfg.data,
            Agent(
                name=name,
                state="done",
                worktree=str(wt),
                branch=f"cmux/{name}",
                parent="supervisor",
            ),
        )
        names.append(name)
    for name in names:
        enqueue(cfg, name, caller=None)
    return names


def states(proj: BenchProject) -> dict[str, str]:
    from cmux.merge import queue as q

    return {e.agent: e.state for e in q.load(proj.config().data).entries}


def cpu_ms() -> float:
    """CPU time of this process and its reaped children (git, the checks), ms."""
    me, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return (me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime) * 1000


def settle(proj: BenchProject, cpu: list[float] | None = None) -> tuple[float, int, list[float]]:
    """Rounds until nothing is queued: (seconds in all, check runs, ms per
    round); the CPU ms of each round go to ``cpu``."""
    from cmux.merge.merger import Merger

    m = Merger(proj.config())
    t0 = time.perf_counter()
    m.recover()
    runs = 0
    rounds: list[float] = []
    for _ in range(200):
        t, c = time.perf_counter(), cpu_ms()
        rnd = m.step()
        if rnd is None:
            m.clean_scratch()
            return time.perf_counter() - t0, runs, rounds
        rounds.append((time.perf_counter() - t) * 1000)
        if cpu is not None:
            cpu.append(cpu_ms() - c)
        runs += rnd.runs
    raise RuntimeError("the queue did not settle in 200 rounds")


def one_bad(box: Sandbox, batch: int, bad: int, rep: int) -> dict[str, Any]:
    proj = project(box, f"b{batch}-{rep}", batch=batch, checks=SLOW_CHECK)
    names = workers(proj, BRANCHES, bad=bad)
    seconds, runs, _ = settle(proj)
    got = states(proj)
    want = {n: "failed" if n == f"w{bad}" else "landed" for n in names}
    require(got == want, "merge", f"batch {batch}: the queue ended {got}, not {want}")
    require(not (proj.root / "BAD").exists(), "merge", "BAD reached trunk")
    require(runs > 0, "merge", f"batch {batch}: no check ran")
    return {"seconds": round(seconds, 2), "runs": runs}


def history(proj: BenchProject, k: int) -> None:
    """``k`` decided entries in the queue file, as a long-running project
    has them (the file keeps the newest KEPT): each landed, after a test."""
    from cmux.merge import queue as q

    with q.editing(proj.config().data) as queue:
        for i in range(k):
            e = queue.add(
                agent=f"old{i}", branch=f"cmux/old{i}", head=f"{i:040x}", trunk="main", by="human"
            )
            e.move("testing", "on main at 0123456789ab")
            e.landed = e.candidate = e.base = f"{i + 1:040x}"
            e.kept, e.runs, e.tests, e.notified = f"refs/cmux/merged/old{i}/{e.n}", 1, 1, True
            e.move("landed", "on main at 0123456789ab")


def overhead(box: Sandbox, name: str, checks: str, n: int, *, decided: int = 0) -> dict[str, Any]:
    """Per-entry wall time of Merger.step, batch 1, ``n`` entries queued
    (behind ``decided`` entries already decided)."""
    proj = project(box, name, batch=1, checks=checks)
    history(proj, decided)
    names = workers(proj, n + 1)  # the first round makes the scratch worktree: apart
    cpu: list[float] = []
    _, runs, rounds = settle(proj, cpu)
    got = {a: st for a, st in states(proj).items() if a in names}
    require(
        set(got.values()) == {"landed"} and len(got) == len(names),
        "merge",
        f"{name}: not every entry landed: {got}",
    )
    require(len(rounds) == n + 1, "merge", f"{name}: {len(rounds)} rounds for {n + 1} entries")
    return {"first_ms": round(rounds[0], 1), "ms": rounds[1:], "cpu_ms": cpu[1:], "runs": runs}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--entries", type=int, default=0, help="entries for the overhead rows")
    p.add_argument("--bad", type=int, default=6, help=f"which of the {BRANCHES} is bad (1-based)")
    p.add_argument("--reps", type=int, default=0, help="serial/batched runs of each")
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    n = args.entries or (12 if args.quick else 40)
    reps = args.reps or 1
    require(1 <= args.bad <= BRANCHES, "merge", f"--bad {args.bad} is not one of 1..{BRANCHES}")
    timing: dict[str, list[dict[str, Any]]] = {"serial": [], "batched": []}
    with sandbox() as box:
        for rep in range(reps):
            timing["serial"].append(one_bad(box, 1, args.bad, rep))
            timing["batched"].append(one_bad(box, 4, args.bad, rep))
        bare = overhead(box, "nochecks", NO_CHECKS, n)
        noop = overhead(box, "noop", NOOP_CHECK, n)
        full = overhead(box, "full", NO_CHECKS, n, decided=KEPT)
    med = {k: sorted(r["seconds"] for r in v)[len(v) // 2] for k, v in timing.items()}
    runs = {k: v[0]["runs"] for k, v in timing.items()}
    for k, v in timing.items():
        require(len({r["runs"] for r in v}) == 1, "merge", f"{k}: check runs differ: {v}")
    s_bare, s_noop, s_full = (summarize(x["ms"]) for x in (bare, noop, full))
    c_bare, c_noop, c_full = (summarize(x["cpu_ms"])["median"] for x in (bare, noop, full))
    bisect = 1 + math.ceil(math.log2(4))
    summary: list[dict[str, Any]] = [
        row(
            f"{BRANCHES} branches, #{args.bad} bad, {CHECK_SECONDS} s check: serial (batch 1)",
            unit="s",
            median=med["serial"],
            n=reps,
            note=f"{runs['serial']} check runs; 7 landed, 1 failed",
        ),
        row(
            f"{BRANCHES} branches, #{args.bad} bad, {CHECK_SECONDS} s check: batched (batch 4)",
            unit="s",
            median=med["batched"],
            n=reps,
            baseline=f"{med['serial']:.1f} (serial)",
            goal="< serial",
            met=med["batched"] < med["serial"],
            note=f"{runs['batched']} check runs; 7 landed, 1 failed",
        ),
        row(
            "  check runs, batched",
            unit="runs",
            median=runs["batched"],
            n=reps,
            baseline=f"{runs['serial']} (serial)",
            goal=f"<= 1 + {bisect} + 1",
            met=runs["batched"] <= bisect + 2,
            note="1 for a clean batch, 1 + log2(4) to find the culprit in its batch, "
            "1 for the entries after it",
        ),
        row(
            "merger overhead per landed entry, no checks",
            unit="ms",
            median=s_bare["median"],
            p99=s_bare["p99"],
            n=s_bare["n"],
            goal="median < 300",
            met=s_bare["median"] < 300,
            note=f"Merger.step, batch 1; CPU {c_bare:.0f} ms (with git's); the first round "
            f"(makes the scratch worktree) {bare['first_ms']:.0f} ms",
        ),
        row(
            "  the same with a no-op check (`true`)",
            unit="ms",
            median=s_noop["median"],
            p99=s_noop["p99"],
            n=s_noop["n"],
            note=f"plus one check process and the health monitor's record of a pass; "
            f"CPU {c_noop:.0f} ms",
        ),
        row(
            f"  the same, no checks, behind {KEPT} decided entries",
            unit="ms",
            median=s_full["median"],
            p99=s_full["p99"],
            n=s_full["n"],
            goal="median < 300",
            met=s_full["median"] < 300,
            note=f"the queue file holds the newest {KEPT} decided entries, as after many "
            f"merges; CPU {c_full:.0f} ms",
        ),
    ]
    report(
        "merge",
        summary,
        {
            "timing": timing,
            "overhead": {"no_checks": bare, "noop": noop, "history": full},
            "bad": args.bad,
        },
        quick=args.quick,
        out=args.out,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
