"""What every benchmark shares: statistics, machine facts, a sandbox, results.

Each benchmark runs in a ``Sandbox``: a private HOME and a private
TMUX_TMPDIR, made by tests/helpers.py's ``private_env`` exactly as
tests/conftest.py makes them for every test, so nothing here ever reaches
the user's own tmux server or home. The sandbox also replaces ``os.environ``
of the benchmark process while it lives, because cmux's tmux gateway (used
in process for setup) reads the environment. Projects are the tests'
``Project`` (tests/helpers.py) with what a benchmark reads besides.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tests.helpers import REPO, Project, kill_servers, make_repo, private_env, wait_until

BENCH = REPO / "bench"
RESULTS = BENCH / "results"
RECORDER = BENCH / "recorder.py"
PY = sys.executable


# -- statistics --------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile: the smallest value with at least p% at or below it."""
    if not values:
        return math.nan
    s = sorted(values)
    k = max(1, math.ceil(p / 100 * len(s)))
    return s[min(k, len(s)) - 1]


def summarize(values: Sequence[float], *, digits: int = 2) -> dict[str, Any]:
    """n, median, p99, min, max and mean of ``values`` (rounded)."""
    if not values:
        return {"n": 0, "median": None, "p99": None, "min": None, "max": None, "mean": None}
    return {
        "n": len(values),
        "median": round(statistics.median(values), digits),
        "p99": round(percentile(values, 99), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
        "mean": round(statistics.fmean(values), digits),
    }


def timed(fn: Callable[[], object]) -> float:
    """Wall time of one call, in milliseconds."""
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1000


class Unmeasured(SystemExit):
    """A benchmark that found nothing to measure, or measured zero of what
    cannot be zero: its figure would say nothing, so it fails (exit 1, with
    this message) rather than print a number."""

    def __init__(self, bench: str, what: str) -> None:
        super().__init__(f"bench {bench}: FAILED, measured nothing: {what}")


def require(ok: object, bench: str, what: str) -> None:
    """Raise Unmeasured(bench, what) unless ``ok``."""
    if not ok:
        raise Unmeasured(bench, what)


# -- the machine -------------------------------------------------------------------


def _first_line(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, check=False).stdout
    except OSError:
        return "not installed"
    return out.strip().splitlines()[0] if out.strip() else "?"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def loadavg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def machine() -> dict[str, Any]:
    mem = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) // 1024} MB"
    except OSError:
        pass
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "memory": mem,
        "python": platform.python_version(),
        "tmux": _first_line(["tmux", "-V"]),
        "git": _first_line(["git", "--version"]),
        "load": loadavg(),
    }


def cpu_seconds(pid: int, *, children: bool = True) -> float:
    """CPU time (user + system) of ``pid``, with its reaped children's."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / os.sysconf("SC_CLK_TCK")


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (children, their children ...)."""
    parent: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        parent[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    out: list[int] = []
    todo = [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parent.items() if pp == p]
        out += kids
        todo += kids
    return out


def command_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return "?"


def context_switches(pid: int) -> int:
    """Voluntary context switches: roughly, how often the process woke up."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("voluntary_ctxt_switches"):
            return int(line.split()[1])
    return 0


# -- the sandbox -------------------------------------------------------------------


@dataclass
class BenchProject(Project):
    """The tests' Project, with a scratch folder beside it for a benchmark's
    own files and the readings the benchmarks take of its state."""

    scratch: Path = Path()

    def agent_env(self, agent: str | None = None) -> dict[str, str]:
        env = {
            **self.env,
            "CMUX_HOME": str(self.data),
            "CMUX_PROJECT": str(self.root),
            "CMUX_PYTHON": PY,
            "PYTHONPATH": str(REPO),
        }
        if agent:
            from cmux.identity import issue
            from cmux.paths import DataRoot

            env["CMUX_AGENT"] = agent
            env["CMUX_AGENT_TOKEN"] = issue(DataRoot(self.data), agent)  # as a spawn gives it
        return env

    def registry_state(self, name: str) -> str | None:
        try:
            return str(
                json.loads((self.data / "state" / "agents" / f"{name}.json").read_text())["state"]
            )
        except (OSError, ValueError, KeyError):
            return None

    def daemon_pid(self, name: str) -> int | None:
        try:
            return int((self.data / "state" / "run" / f"{name}.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None


@dataclass
class Sandbox:
    """A private HOME and TMUX_TMPDIR, and projects inside them."""

    base: Path
    sockdir: Path
    env: dict[str, str]
    projects: list[BenchProject] = field(default_factory=list)

    def project(self, name: str = "proj") -> BenchProject:
        root = make_repo(self.base / name)
        scratch = self.base / f"{name}-scratch"
        scratch.mkdir()
        p = BenchProject(root=root, env=self.env, scratch=scratch)
        p.ok("init")
        self.projects.append(p)
        return p


@contextmanager
def sandbox(extra_env: dict[str, str] | None = None) -> Iterator[Sandbox]:
    base = Path(tempfile.mkdtemp(prefix="cmux-bench-"))
    # Short path: tmux sockets must fit in 108 bytes.
    sockdir = Path(tempfile.mkdtemp(prefix="cxb", dir="/tmp"))
    home = base / "home"
    home.mkdir()
    env = private_env(home, sockdir)
    env.update(
        # Measure this checkout's cmux, whatever the virtualenv has installed.
        PYTHONPATH=str(REPO),
        **(extra_env or {}),
    )
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    box = Sandbox(base=base, sockdir=sockdir, env=env)
    try:
        yield box
    finally:
        for p in box.projects:
            p.cmux("stop", timeout=60)
        kill_servers(sockdir)
        os.environ.clear()
        os.environ.update(saved)
        _wait_for_stragglers(base)
        shutil.rmtree(sockdir, ignore_errors=True)
        shutil.rmtree(base, ignore_errors=True)


def _wait_for_stragglers(base: Path, timeout: float = 5.0) -> None:
    """Let processes still working in ``base`` (daemons writing their last
    event, pane-died hooks) end before it is removed."""
    mark = str(base)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        busy = False
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            try:
                if os.readlink(f"/proc/{entry}/cwd").startswith(mark):
                    busy = True
                    break
            except OSError:
                continue
        if not busy:
            return
        time.sleep(0.1)


# -- recorder panes ------------------------------------------------------------------


def spawn_recorders(project: BenchProject, names: Iterable[str]) -> dict[str, Path]:
    """A timestamping recorder (bench/recorder.py) in a new window per name,
    spawned in process (setup, not measured); returns name -> its output file.
    Waits until every recorder has its tty in raw mode."""
    from cmux.agents import spawn

    cfg = project.config()
    outs: dict[str, Path] = {}
    for name in names:
        out = project.scratch / f"{name}.rec"
        out.touch()
        spawn.spawn(cfg, name, task="record", command=f"{PY} {RECORDER} {out}")
        outs[name] = out
    wait_until(
        lambda: all(p.read_bytes().startswith(b"ready") for p in outs.values()),
        timeout=60,
        what="recorders ready",
    )
    return outs


@dataclass
class Arrivals:
    """What the recorders saw: id -> first arrival time, and duplicates."""

    first: dict[str, float] = field(default_factory=dict)
    per_agent: dict[str, list[str]] = field(default_factory=dict)
    duplicates: int = 0
    garbled: int = 0
    empty_enters: int = 0
    _offsets: dict[Path, int] = field(default_factory=dict)

    def read(self, recs: dict[str, Path]) -> None:
        for name, path in recs.items():
            off = self._offsets.get(path, 0)
            with open(path, "rb") as fh:
                fh.seek(off)
                chunk = fh.read()
            end = chunk.rfind(b"\n")
            if end < 0:
                continue
            self._offsets[path] = off + end + 1
            for line in chunk[: end + 1].decode(errors="replace").splitlines():
                parts = line.split()
                if len(parts) != 2 or parts[0] == "ready":
                    continue
                t, mid = parts
                if mid == "?":
                    self.garbled += 1
                    continue
                if mid == "-":
                    self.empty_enters += 1
                    continue
                if mid in self.first:
                    self.duplicates += 1
                    continue
                self.first[mid] = float(t)
                self.per_agent.setdefault(name, []).append(mid)

    def wait_for(self, recs: dict[str, Path], ids: Iterable[str], *, timeout: float) -> set[str]:
        """Read until every id arrived or ``timeout``; returns the ids still missing."""
        want = set(ids)
        deadline = time.monotonic() + timeout
        while True:
            self.read(recs)
            missing = want - self.first.keys()
            if not missing or time.monotonic() > deadline:
                return missing
            time.sleep(0.05)


# -- results and tables ------------------------------------------------------------


def row(
    metric: str,
    *,
    unit: str,
    median: float | None = None,
    p99: float | None = None,
    n: int | None = None,
    baseline: str = "",
    goal: str = "",
    met: bool | None = None,
    note: str = "",
) -> dict[str, Any]:
    """One line of the summary table (the same shape for every benchmark)."""
    return {
        "metric": metric,
        "unit": unit,
        "median": median,
        "p99": p99,
        "n": n,
        "baseline": baseline,
        "goal": goal,
        "met": met,
        "note": note,
    }


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 10 else f"{v:.0f}" if abs(v) >= 100 else f"{v:.1f}"
    return str(v)


def _cells(r: dict[str, Any]) -> list[str]:
    return [
        r["metric"],
        _fmt(r["median"]),
        _fmt(r["p99"]),
        r["unit"],
        _fmt(r["n"]),
        r["baseline"] or "",
        r["goal"] or "",
        {True: "yes", False: "NO", None: ""}[r["met"]],
    ]


HEAD = ["metric", "median", "p99", "unit", "n", "baseline", "goal", "met"]


def table(rows: Sequence[dict[str, Any]]) -> str:
    """A plain-text table of summary rows."""
    body = [_cells(r) for r in rows]
    widths = [
        max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(HEAD)
    ]
    lines = ["  ".join(h.ljust(w) for h, w in zip(HEAD, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(b, widths, strict=True)) for b in body]
    return "\n".join(lines)


def markdown(rows: Sequence[dict[str, Any]]) -> str:
    """The same table in Markdown (for docs/PERFORMANCE.md), with the notes."""
    head = [*HEAD, "note"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in rows:
        cells = [*_cells(r), r.get("note") or ""]
        cells[0] = (
            cells[0].replace("  ", "&nbsp;&nbsp;", 1) if cells[0].startswith("  ") else cells[0]
        )
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def write_result(name: str, result: dict[str, Any], out: Path | None = None) -> Path:
    path = out or RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path


def report(
    name: str,
    summary: list[dict[str, Any]],
    details: dict[str, Any],
    *,
    quick: bool,
    out: Path | None = None,
) -> None:
    """Print the table and write bench/results/<name>.json."""
    m = machine()
    result = {"bench": name, "quick": quick, "machine": m, "summary": summary, **details}
    print(f"\n{name}: {m['date']}, {m['cpu']}, {m['cores']} cores, load {m['load']}")
    print(table(summary))
    path = write_result(name, result, out)
    print(f"wrote {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")
