"""Property: whatever agents do, the safety net never loses anything.

Hypothesis drives random sequences of commits, edits (new, changed, staged,
deleted and binary files), passing and failing health rounds and rollbacks
by hand against a real git repository. After every step that cmux acts in:

- every commit ever made is still reachable from some ref;
- every file content present before the step is still somewhere: in the
  work tree, or in an object reachable from a ref (HEAD, a rescue branch,
  a pinned stash);
- an automatic rollback lands on the nearest commit that passed, never
  behind one;
and at the end every rescue brings back its tree and index byte for byte.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import replace
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cmux.health.checks import CheckResult
from cmux.health.config import Check, HealthSettings
from cmux.health.daemon import HealthMonitor
from cmux.health.rescues import Rescue
from cmux.health.rollback import Repo, plan
from cmux.paths import DataRoot
from tests.helpers import git, make_repo

FILES = ("a.txt", "b.txt", "dir/c.txt", "dir/deep/d.bin", "BROKEN")

BROKEN = FILES.index("BROKEN")
op = st.one_of(
    st.tuples(st.just("commit"), st.integers(0, 4), st.integers(0, 9)),
    st.tuples(st.just("commit"), st.just(BROKEN), st.integers(0, 9)),
    st.tuples(st.just("write"), st.integers(0, 4), st.integers(0, 9)),
    st.tuples(st.just("write"), st.just(BROKEN), st.integers(0, 9)),
    st.tuples(st.just("delete"), st.integers(0, 4), st.just(0)),
    st.tuples(st.just("stage"), st.integers(0, 4), st.just(0)),
    st.tuples(st.just("round"), st.integers(1, 3), st.just(0)),
    st.tuples(st.just("round"), st.integers(1, 3), st.just(0)),
    st.tuples(st.just("round"), st.integers(1, 3), st.just(0)),
    st.tuples(st.just("outside"), st.integers(0, 3), st.just(0)),
    st.tuples(st.just("rollback"), st.integers(0, 3), st.just(0)),
)


class Quiet:
    def tell(self, to: str, subject: str, body: str) -> None: ...
    def alert(self, text: str) -> None: ...
    def clear_alert(self) -> None: ...
    def journal(self, title: str, body: str, tags: list[str]) -> None: ...
    def event(self, name: str, **fields: object) -> None: ...


def content(name: str, n: int, step: int) -> bytes:
    if name.endswith(".bin"):
        return bytes([n, 0, 255, step % 256]) * (n + 1)
    return f"{name} version {n} at step {step}\n".encode()


def worktree_files(root: Path) -> dict[str, bytes]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel = Path(dirpath).relative_to(root)
        dirnames[:] = [d for d in dirnames if not (rel == Path(".") and d in (".git", ".cmux"))]
        for f in filenames:
            out[(rel / f).as_posix()] = (Path(dirpath) / f).read_bytes()
    return out


def blob_ids(root: Path, blobs: list[bytes]) -> set[str]:
    ids = set()
    for b in blobs:
        proc = subprocess.run(
            ["git", "hash-object", "--stdin"], cwd=root, input=b, capture_output=True, check=True
        )
        ids.add(proc.stdout.decode().strip())
    return ids


def reachable_objects(root: Path) -> set[str]:
    out = git(root, "rev-list", "--objects", "--all")
    return {line.split()[0] for line in out.splitlines() if line}


class Model:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = DataRoot(root / ".cmux")
        self.data.ensure()
        self.repo = Repo(root, self.data)
        self.outside_broken = False
        self.commits: set[str] = {self.head()}
        self.passed: set[str] = set()
        self.clock = 1_000_000.0
        self.rescues: list[tuple[Rescue, dict[str, bytes], str]] = []
        checks = (Check("code", command="true"),)
        self.settings = replace(
            HealthSettings(checks=checks),
            threshold=2,
            restart_wait=0,
            rollback_budget=1000,
        )
        self.monitor = HealthMonitor(
            self.data,
            self.settings,
            repo=self.repo,
            run_checks=self.run_checks,
            restart=None,
            notifier=Quiet(),
            clock=lambda: self.clock,
            sleep=lambda s: None,
        )

    def head(self) -> str:
        return git(self.root, "rev-parse", "HEAD").strip()

    def run_checks(self) -> list[CheckResult]:
        ok = not (self.root / "BROKEN").exists() and not self.outside_broken
        return [CheckResult("code", ok, "scripted", 0.0, self.clock)]

    # -- the agents' side ------------------------------------------------------

    def write(self, name: str, n: int, step: int) -> None:
        p = self.root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content(name, n, step))

    def commit(self, name: str, n: int, step: int) -> None:
        self.write(name, n, step)
        git(self.root, "add", "-A")
        git(self.root, "commit", "-q", "--allow-empty", "-m", f"step {step}")
        self.commits.add(self.head())

    def delete(self, name: str) -> None:
        (self.root / name).unlink(missing_ok=True)

    def stage(self, name: str) -> None:
        if (self.root / name).exists():
            git(self.root, "add", "--", name)

    # -- cmux's side ----------------------------------------------------------

    def before_cmux(self) -> tuple[set[str], dict[str, bytes], str, str]:
        files = worktree_files(self.root)
        return (
            blob_ids(self.root, list(files.values())),
            files,
            git(self.root, "ls-files", "-s"),
            self.head(),
        )

    def check_nothing_lost(self, blobs_before: set[str]) -> None:
        kept = reachable_objects(self.root) | blob_ids(
            self.root, list(worktree_files(self.root).values())
        )
        assert blobs_before <= kept, "some content is nowhere to be found"
        refs = git(self.root, "rev-list", "--all").split()
        assert self.commits <= set(refs), "a commit is no longer reachable"

    def round(self) -> None:
        blobs, files, index, head = self.before_cmux()
        self.clock += 30
        report = self.monitor.round()
        if report.ok:
            self.passed.add(head)
        if report.rescue is not None:
            self.check_target(report.rescue, head)
            self.rescues.append((report.rescue, files, index))
            if report.verified:
                self.passed.add(self.head())
        self.check_nothing_lost(blobs)

    def check_target(self, rescue: Rescue, head: str) -> None:
        line = git(self.root, "rev-list", head).split()
        expected = next(sha for sha in line if sha in self.passed)
        assert rescue.target == expected, "rolled back past a commit that passed"
        assert rescue.head == head

    def rollback_by_hand(self, back: int) -> None:
        line = git(self.root, "rev-list", "HEAD").split()
        target = line[min(back, len(line) - 1)]
        blobs, files, index, _ = self.before_cmux()
        p = plan(self.repo, self.passed, target)
        if p.nothing_to_do:
            return
        rescue = self.monitor.manual_rollback(p.target, restart=False)
        self.rescues.append((rescue, files, index))
        assert self.head() == target
        self.check_nothing_lost(blobs)

    def check_every_rescue_restores(self) -> None:
        """Bring each rescue back in a fresh worktree: same files, same index."""
        for i, (rescue, files, index) in enumerate(self.rescues):
            where = self.root.parent / f"restore-{i}"
            git(self.root, "worktree", "add", "-q", "--detach", str(where), rescue.branch)
            if rescue.stash:
                git(where, "stash", "apply", "-q", "--index", rescue.stash)
            restored = worktree_files(where)
            restored.pop(".git", None)
            assert restored == files, f"rescue {rescue.id} does not bring the tree back"
            assert git(where, "ls-files", "-s") == index
            git(self.root, "worktree", "remove", "--force", str(where))


@settings(
    max_examples=20,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(st.lists(op, min_size=1, max_size=22))
def test_nothing_is_ever_lost(ops: list[tuple[str, int, int]]) -> None:
    with tempfile.TemporaryDirectory(prefix="cmux-prop-") as tmp:
        root = make_repo(Path(tmp) / "proj")
        (root / ".gitignore").write_text("/.cmux/\n")
        git(root, "add", ".gitignore")
        git(root, "commit", "-q", "-m", "ignore the data root")
        m = Model(root)
        m.round()  # the starting point passes
        for step, (kind, a, b) in enumerate(ops):
            name = FILES[a % len(FILES)] if kind not in ("round", "outside", "rollback") else ""
            if kind == "commit":
                m.commit(name, b, step)
            elif kind == "write":
                m.write(name, b, step)
            elif kind == "delete":
                m.delete(name)
            elif kind == "stage":
                m.stage(name)
            elif kind == "outside":
                m.outside_broken = a == 0  # broken a quarter of the time
            elif kind == "round":
                for _ in range(a):
                    m.round()
            elif kind == "rollback":
                m.rollback_by_hand(a)
        m.check_every_rescue_restores()
