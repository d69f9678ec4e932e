"""Journal search at scale: cmux's FTS5 index against grep on the same files.

Generates a synthetic journal (100,000 entries over 365 daily files by default)
in a temporary directory, builds the index from nothing (timed), then runs the
same queries through ``cmux.journal.index.search`` (top 10, ranked, with
snippets, including the "did anything change?" check every search makes) and
through ``grep -rilF`` (file names only: no ranking, no snippets; the least
an agent without an index would do). Prints a table and writes
bench/results/journal.json.

    python bench/bench_journal.py              # 100,000 entries
    python bench/bench_journal.py --quick      # 10,000 entries, fewer runs
    python bench/bench_journal.py --entries 30000 --runs 50
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cmux.journal import index, store  # noqa: E402
from cmux.paths import DataRoot  # noqa: E402

DAYS = 365
AGENTS = ["supervisor", "cmux", "w1", "w2", "w3", "api", "docs", "fix-ci", "human"]
# Words an engineering journal is made of. COMMON take the top ranks of a
# Zipf distribution; TOPICS are spread from rank 150 (in ~3% of entries) to
# rank 8000 (in ~0.1%), most common first; made-up words fill the rest.
COMMON = [
    "the",
    "a",
    "to",
    "of",
    "and",
    "in",
    "for",
    "is",
    "was",
    "it",
    "that",
    "on",
    "with",
    "this",
    "test",
    "tests",
    "fixed",
    "added",
    "by",
    "not",
    "be",
    "from",
    "as",
    "at",
    "run",
    "error",
    "when",
    "now",
    "but",
    "after",
    "we",
    "change",
    "file",
    "config",
    "code",
    "build",
    "failed",
    "passing",
    "update",
    "worker",
    "review",
    "check",
    "branch",
    "merge",
    "commit",
    "module",
    "function",
    "api",
    "router",
    "mailbox",
    "journal",
    "index",
    "supervisor",
    "agent",
    "pane",
    "session",
    "tmux",
]
TOPICS = [
    "flaky",
    "timeout",
    "deadlock",
    "migration",
    "rollback",
    "schema",
    "cache",
    "latency",
    "retry",
    "parser",
    "lockfile",
    "refactor",
    "regression",
    "benchmark",
    "coverage",
    "fixture",
    "endpoint",
    "handler",
    "queue",
    "watcher",
    "inotify",
    "sqlite",
    "snippet",
    "ranking",
    "tokenizer",
    "worktree",
    "rebase",
    "conflict",
    "deploy",
    "staging",
    "release",
    "changelog",
    "dependency",
    "pinning",
    "wheel",
    "packaging",
    "docker",
    "logging",
    "tracing",
    "metrics",
    "alert",
    "threshold",
    "healthcheck",
    "restart",
    "crash",
    "segfault",
    "memory",
    "leak",
    "profiler",
    "allocation",
    "encoding",
    "unicode",
    "escape",
    "sanitize",
    "permission",
]
VOCAB_SIZE = 20000
DECISIONS = [
    "What was done",
    "Why",
    "Key decisions",
    "Issues encountered",
]


def _syllable_words(rng: random.Random, n: int) -> list[str]:
    cons, vow = "bcdfghjklmnprstvwz", "aeiou"
    words: set[str] = set()
    while len(words) < n:
        k = rng.randint(2, 4)
        words.add("".join(rng.choice(cons) + rng.choice(vow) for _ in range(k)))
    return sorted(words)


class Corpus:
    """A Zipf vocabulary (exponent 1.05) and entries drawn from it."""

    def __init__(self, seed: int = 7) -> None:
        self.rng = random.Random(seed)
        filler = _syllable_words(self.rng, VOCAB_SIZE)
        vocab = COMMON + [w for w in filler if w not in TOPICS]
        vocab = vocab[:VOCAB_SIZE]
        for i, word in enumerate(TOPICS):
            vocab.insert(round(150 * (8000 / 150) ** (i / (len(TOPICS) - 1))), word)
        self.vocab = vocab
        self.cum = list(itertools.accumulate(1.0 / r**1.05 for r in range(1, len(vocab) + 1)))
        self.tag_cum = list(itertools.accumulate(1.0 / r for r in range(1, len(TOPICS) + 1)))

    def words(self, n: int) -> list[str]:
        return self.rng.choices(self.vocab, cum_weights=self.cum, k=n)

    def entry(self, day: str, second: int) -> store.Entry:
        rng = self.rng
        title = " ".join(self.words(rng.randint(3, 8))).capitalize()
        paras = []
        for head in rng.sample(DECISIONS, rng.randint(1, 3)):
            paras.append(f"### {head}\n" + " ".join(self.words(rng.randint(10, 35))) + ".")
        tags = set(rng.choices(TOPICS, cum_weights=self.tag_cum, k=rng.choice((0, 0, 1, 2))))
        return store.Entry(
            date=day,
            time=f"{second // 3600:02d}:{second // 60 % 60:02d}:{second % 60:02d}",
            agent=rng.choice(AGENTS),
            title=title,
            tags=sorted(tags),
            body="\n\n".join(paras),
        )


def generate(data: DataRoot, entries: int, days: int = DAYS) -> tuple[int, int]:
    """Write ``entries`` entries over ``days`` daily files; returns (files, bytes)."""
    corpus = Corpus()
    data.journal_dir.mkdir(parents=True, exist_ok=True)
    first = date(2025, 1, 1)
    per_day, extra = divmod(entries, days)
    total = 0
    for d in range(days):
        day = (first + timedelta(days=d)).isoformat()
        n = per_day + (1 if d < extra else 0)
        seconds = sorted(corpus.rng.sample(range(8 * 3600, 23 * 3600), n))
        text = f"# {day}\n\n" + "\n".join(corpus.entry(day, s).to_markdown() for s in seconds)
        path = data.journal_dir / f"{day}.md"
        path.write_text(text, encoding="utf-8")
        # Old days are old: their mtime is their date, as in a real journal.
        stamp = datetime.fromisoformat(day).replace(hour=23, tzinfo=timezone.utc).timestamp()
        os.utime(path, (stamp, stamp))
        total += len(text.encode())
    return days, total


def queries() -> list[tuple[str, str, str]]:
    """(kind, query for cmux, fixed string for grep): a mix from rare to common."""
    tail = Corpus().vocab[15000]
    t = TOPICS
    return [
        ("word", t[-1], t[-1]),
        ("word", t[-5], t[-5]),
        ("word", t[-12], t[-12]),
        ("word", tail, tail),
        ("word", t[20], t[20]),
        ("word", t[30], t[30]),
        ("word", "tests", "tests"),
        ("two words", f"{t[0]} {t[5]}", t[5]),
        ("two words", f"tests {t[40]}", t[40]),
        ("phrase", '"fixed the"', "fixed the"),
        ("phrase", f'"{t[2]} {t[3]}"', f"{t[2]} {t[3]}"),
        ("prefix", t[10][:5] + "*", t[10][:5]),
        ("prefix", t[25][:5] + "*", t[25][:5]),
    ]


def percentile(values: list[float], p: float) -> float:
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))
    return s[k]


def _ms(fn: Any) -> float:
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1000


def cmux_search(data: DataRoot, q: str) -> None:
    index.search(data, q, limit=10)


def grep(data: DataRoot, fixed: str) -> None:
    subprocess.run(
        ["grep", "-rilF", "--", fixed, str(data.journal_dir)],
        stdout=subprocess.DEVNULL,
        check=False,
    )


def cli_search(data: DataRoot, q: str) -> None:
    env = {**os.environ, "CMUX_HOME": str(data.root), "CMUX_PROJECT": str(data.root)}
    env.pop("CMUX_AGENT", None)
    subprocess.run(
        [sys.executable, "-m", "cmux.agenttools.journal", "search", q],
        env=env,
        stdout=subprocess.DEVNULL,
        check=True,
    )


def matches(data: DataRoot, q: str) -> int:
    with sqlite3.connect(data.index_db) as conn:
        sql = "SELECT count(*) FROM entries_fts WHERE entries_fts MATCH ?"
        return int(conn.execute(sql, (index.fts_query(q),)).fetchone()[0])


def machine() -> dict[str, Any]:
    grep_version = subprocess.run(["grep", "--version"], capture_output=True, text=True).stdout
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "grep": grep_version.split("\n")[0].strip(),
        "load_average": os.getloadavg(),
    }


def summary(name: str, ms: list[float]) -> dict[str, Any]:
    return {
        "name": name,
        "n": len(ms),
        "median_ms": round(statistics.median(ms), 3),
        "p99_ms": round(percentile(ms, 99), 3),
        "min_ms": round(min(ms), 3),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--entries", type=int, default=100_000, help="entries to generate (100000)")
    p.add_argument("--runs", type=int, default=0, help="passes over the query set (20; quick: 5)")
    p.add_argument("--quick", action="store_true", help="10,000 entries and few runs")
    p.add_argument("--keep", action="store_true", help="keep the generated journal")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "journal.json")
    args = p.parse_args(argv)
    entries = 10_000 if args.quick and args.entries == 100_000 else args.entries
    runs = args.runs or (5 if args.quick else 20)
    qs = queries()

    tmp = Path(tempfile.mkdtemp(prefix="cmux-bench-journal-"))
    data = DataRoot(tmp)
    try:
        t = time.perf_counter()
        files, size = generate(data, entries)
        gen_s = time.perf_counter() - t
        print(f"generated {entries} entries in {files} files ({size / 1e6:.1f} MB) in {gen_s:.1f}s")
        t = time.perf_counter()
        stats = index.sync(data)
        build_s = time.perf_counter() - t
        db_bytes = data.index_db.stat().st_size
        print(f"built the index from nothing: {stats.entries_indexed} entries in {build_s:.2f}s")

        # One untimed pass each warms the page cache the same way for both.
        for _kind, q, fixed in qs:
            cmux_search(data, q)
            grep(data, fixed)
        # Interleaved, so both see the same machine at the same moment.
        cmux_by_q: list[list[float]] = [[] for _ in qs]
        grep_by_q: list[list[float]] = [[] for _ in qs]
        for _ in range(runs):
            for i, (_kind, q, fixed) in enumerate(qs):
                cmux_by_q[i].append(_ms(lambda q=q: cmux_search(data, q)))
                grep_by_q[i].append(_ms(lambda f=fixed: grep(data, f)))
        noop = [_ms(lambda: index.sync(data)) for _ in range(runs * 5)]
        # A live journal: one new entry in today's file, then a search.
        appended = []
        for i in range(max(5, runs // 2)):
            store.add_entry(data, agent="bench", title=f"appended {i}", body=f"{qs[0][1]} again")
            appended.append(_ms(lambda: cmux_search(data, qs[0][1])))
        cli = [_ms(lambda i=i: cli_search(data, qs[i % 4][1])) for i in range(max(5, runs // 2))]

        per_query = []
        for i, (kind, q, fixed) in enumerate(qs):
            n = matches(data, q)
            per_query.append(
                {
                    "kind": kind,
                    "query": q,
                    "grep": fixed,
                    "matching_entries": n,
                    "matching_share": round(n / entries, 5),
                    "cmux_median_ms": round(statistics.median(cmux_by_q[i]), 3),
                    "grep_median_ms": round(statistics.median(grep_by_q[i]), 3),
                }
            )
        result = {
            "bench": "journal",
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": machine(),
            "corpus": {
                "entries": entries,
                "files": files,
                "bytes": size,
                "generate_seconds": round(gen_s, 2),
            },
            "index": {"build_seconds": round(build_s, 2), "db_bytes": db_bytes},
            "runs": runs,
            "results": [
                summary("cmux search, top 10 (in process)", [x for r in cmux_by_q for x in r]),
                summary("grep -rilF (subprocess)", [x for r in grep_by_q for x in r]),
                summary("sync check, nothing changed", noop),
                summary("search after one new entry", appended),
                summary("tools/journal search (new process)", cli),
            ],
            "per_query": per_query,
        }
        print_table(result)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"\nwrote {args.out}")
    finally:
        if args.keep:
            print(f"kept the journal in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


def print_table(result: dict[str, Any]) -> None:
    m, c = result["machine"], result["corpus"]
    print(
        f"\n{c['entries']} entries in {c['files']} files ({c['bytes'] / 1e6:.1f} MB); "
        f"index built in {result['index']['build_seconds']}s "
        f"({result['index']['db_bytes'] / 1e6:.1f} MB)\n"
        f"{m['platform']}, {m['cpu_count']} cpus, python {m['python']}, sqlite {m['sqlite']}, "
        f"load {m['load_average'][0]:.2f}, {result['date']}\n"
    )
    print(f"{'':38} {'n':>5} {'median ms':>10} {'p99 ms':>9} {'min ms':>8}")
    for r in result["results"]:
        print(
            f"{r['name']:38} {r['n']:>5} {r['median_ms']:>10.2f} {r['p99_ms']:>9.2f}"
            f" {r['min_ms']:>8.2f}"
        )
    print(f"\n{'query':32} {'entries':>8} {'share':>7} {'cmux ms':>8} {'grep ms':>8}")
    for q in result["per_query"]:
        print(
            f"{q['kind'] + ': ' + q['query']:32} {q['matching_entries']:>8}"
            f" {q['matching_share']:>7.2%} {q['cmux_median_ms']:>8.2f} {q['grep_median_ms']:>8.2f}"
        )


if __name__ == "__main__":
    sys.exit(main())
