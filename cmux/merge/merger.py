"""The merger: takes the queue's entries in order, tests them on trunk's
tip in a scratch worktree, and moves trunk only to a commit that passed.

One round (:meth:`Merger.step`) takes up to ``[merge] batch`` queued entries
with the same trunk, builds them as a chain on trunk's tip in the scratch
worktree (``<data root>/worktrees/.merge``: never the main checkout, never a
worker's worktree), and lets :func:`cmux.merge.policy.decide` pick which
prefix of the chain to test next until the batch is settled.

Invariants:

- Trunk moves only to a commit whose checks passed in this round, and only
  from the tip that commit was built on (compare-and-swap): when trunk moved
  meanwhile, the entries are built and tested again on the new tip.
- In the main checkout (when it has trunk checked out) trunk moves by
  ``git merge --ff-only``: git never overwrites uncommitted work there; when
  it would have to, the entry waits and the supervisor is told why.
- No branch is ever changed. Each landed entry's original head is kept under
  ``refs/cmux/merged/<agent>/<n>``.
- ``candidate`` is written to the queue before trunk moves: a merger killed
  anywhere is mended by :meth:`Merger.recover` (a moved trunk is a landing, an
  unmoved one a queued entry again; the scratch worktree is made afresh).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cmux import events, git
from cmux.agents.worktrees import MERGED_REFS
from cmux.config import Config
from cmux.errors import CmuxError, GitError
from cmux.health.checks import CheckResult, run_check
from cmux.merge import queue as q
from cmux.merge.config import MergeSettings, settings
from cmux.merge.policy import Settle, Test, decide
from cmux.merge.queue import Entry

log = logging.getLogger(__name__)

IDENTITY = ("cmux merge queue", "cmux@localhost")  # lent to commits when the person has none


def scratch_dir(cfg: Config) -> Path:
    return cfg.data.worktrees_dir / ".merge"


def logs_dir(cfg: Config) -> Path:
    return q.queue_dir(cfg.data) / "logs"


@dataclass
class Link:
    """One entry of a batch and the commit its prefix of the chain ends at."""

    entry: Entry
    commit: str


@dataclass
class Round:
    """What one round did (for tests, the bench and the event log)."""

    batch: list[int] = field(default_factory=list)
    runs: int = 0
    landed: list[int] = field(default_factory=list)
    refused: list[int] = field(default_factory=list)
    requeued: list[int] = field(default_factory=list)
    waiting: list[int] = field(default_factory=list)


Tell = Callable[[str, str, str], None]  # (to, body, kind)
RunChecks = Callable[[Path], list[CheckResult]]


class Merger:
    """The queue's worker; one per data root (see :func:`run`)."""

    def __init__(
        self,
        cfg: Config,
        *,
        settings_: MergeSettings | None = None,
        run_checks: RunChecks | None = None,
        tell: Tell | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.cfg = cfg
        self.data = cfg.data
        self.settings = settings_ or settings(cfg)
        self.repo = git.Repo(cfg.project_root)
        self.scratch_path = scratch_dir(cfg)
        self._scratch: git.Repo | None = None
        self.run_checks = run_checks or self._run_checks
        self.tell = tell or self._tell
        self.clock = clock
        self._told_waiting: set[tuple[int, str]] = set()
        self._testing = ""  # the commit whose checks run

    # -- the outside world -------------------------------------------------------------

    def _run_checks(self, cwd: Path) -> list[CheckResult]:
        """Every check, one after another, each one's whole output in a log
        under state/merge/logs/ (kept only for a check that failed)."""
        results = []
        for check in self.settings.checks:
            path = self.log_path(check.name)
            r = run_check(check, cwd, log=path)
            if r.ok:
                with contextlib.suppress(OSError):
                    path.unlink()
            results.append(r)
        return results

    def log_path(self, check: str) -> Path:
        """Where the output of ``check`` on the commit being tested goes."""
        return logs_dir(self.cfg) / f"{self._testing[:12]}-{_safe(check)}.log"

    def _tell(self, to: str, body: str, kind: str) -> None:
        from cmux.mail import store

        try:
            if store.known(self.data, to):
                store.send(self.cfg, to=to, body=body, sender="cmux", kind=kind)
        except CmuxError:
            log.exception("could not tell %s", to)

    def event(self, name: str, entry: Entry | None = None, **fields: Any) -> None:
        if entry is not None:
            fields = {"n": entry.n, "branch": entry.branch, **fields}
        events.record(self.data, name, entry.agent if entry else None, **fields)

    def _parent_of(self, agent: str) -> tuple[str | None, bool]:
        """(the agent's parent, whether the agent itself is still live)."""
        from cmux.agents import registry
        from cmux.errors import UnknownAgent

        try:
            a = registry.get(self.data, agent)
        except UnknownAgent:
            return "supervisor", False
        return a.parent, a.live

    def _worktree_of(self, agent: str) -> str | None:
        from cmux.agents import registry
        from cmux.errors import UnknownAgent

        try:
            return registry.get(self.data, agent).worktree
        except UnknownAgent:
            return None

    # -- the scratch worktree ----------------------------------------------------------

    def scratch(self, at: str) -> git.Repo:
        """The scratch worktree, exactly at ``at`` (made afresh when missing or broken)."""
        if self._scratch is not None:
            try:
                self._scratch.checkout_detached(at)
                return self._scratch
            except GitError:
                log.warning("the scratch worktree is broken; making it again")
                self._scratch.close()
                self._scratch = None
        self.clean_scratch()
        self.scratch_path.parent.mkdir(parents=True, exist_ok=True)
        self.repo.worktree_add_detached(self.scratch_path, at)
        self._scratch = git.Repo(self.scratch_path)
        return self._scratch

    def clean_scratch(self) -> None:
        """Remove a scratch worktree a dead merger left (and git's note of it)."""
        if self._scratch is not None:
            self._scratch.close()
            self._scratch = None
        if self.scratch_path.exists():
            with contextlib.suppress(GitError):
                self.repo.worktree_remove(self.scratch_path)
            shutil.rmtree(self.scratch_path, ignore_errors=True)
        with contextlib.suppress(GitError):
            self.repo.worktree_prune()

    # -- recovery ----------------------------------------------------------------------

    def recover(self) -> list[int]:
        """Mend what a killed merger left: entries it was testing are landed
        (trunk is at their candidate or past it) or queued again; the scratch
        worktree goes. Returns the entries that were mended."""
        self.clean_scratch()
        mended: list[int] = []
        landed: list[Entry] = []
        with q.editing(self.data) as queue:
            for e in queue.active():
                if e.state == "queued":
                    continue
                tip = self.repo.verify(f"refs/heads/{e.trunk}")
                if e.state == "waiting" and e.candidate and tip == e.base:
                    continue  # still tested on today's trunk: it only waits
                if e.candidate and tip and self.repo.is_ancestor(e.candidate, tip):
                    self._mark_landed(e, e.candidate)
                    landed.append(e)
                else:
                    e.candidate = None
                    e.move("queued", "the merger stopped while testing it; queued again")
                mended.append(e.n)
            for e in queue.entries:
                if e.state == "landed" and not e.notified:
                    landed.append(e)
        for e in landed:
            self._landed_news(e)
        if mended:
            self.event("merge-recovered", entries=mended)
        return mended

    # -- one round ---------------------------------------------------------------------

    def pending(self) -> bool:
        """Whether a round has something to do (queued or waiting entries)."""
        return any(e.state in ("queued", "waiting") for e in q.load(self.data).active())

    def step(self) -> Round | None:
        """One round over the head of the queue; None when nothing is queued.

        Nothing to do is found by reading alone: an edit under the lock writes
        the queue file and closes its lock file, and the daemon's watcher on
        that folder would wake it again at once (a busy loop when idle)."""
        if not self.pending():
            return None
        waiting: list[Entry] = []
        with q.editing(self.data) as queue:
            line = queue.active()
            waiting = [e for e in line if e.state == "waiting"]
            first = next((e for e in line if e.state == "queued"), None)
            batch: list[Entry] = []
            tip: str | None = None
            if not waiting and first is not None:
                batch = [e for e in line if e.state == "queued" and e.trunk == first.trunk]
                batch = batch[: self.settings.batch]
                tip = self.repo.verify(f"refs/heads/{first.trunk}")
                for e in batch:
                    e.base = tip
                    e.tests += 1
                    e.move("testing", f"on {first.trunk} at {tip[:12] if tip else '?'}")
        if waiting:
            same = [e for e in waiting if e.candidate == waiting[0].candidate]
            return self._retry_waiting([Link(e, e.candidate or "") for e in same])
        if first is None:
            return None
        rnd = Round(batch=[e.n for e in batch])
        if tip is None:
            self._refuse_all(batch, rnd, f"trunk branch {first.trunk!r} does not exist")
            return rnd
        for e in batch:
            self.event("merge-testing", e, base=tip)
        chain = self._build(batch, tip, rnd)
        if chain:
            self._settle(chain, tip, rnd)
        return rnd

    def _build(self, batch: list[Entry], tip: str, rnd: Round) -> list[Link]:
        """The chain of ``batch`` on ``tip``. An entry that conflicts with trunk
        itself is refused; one that conflicts only with an entry before it goes
        back to the queue, to be tried once those are decided."""
        scratch = self.scratch(tip)
        chain: list[Link] = []
        at = tip
        strategy = self.settings.strategy
        for e in batch:
            msg = self._message(e, strategy)
            try:
                if strategy == "rebase":
                    conflicts = scratch.rebase_onto(at, e.head, IDENTITY)
                elif strategy == "squash":
                    conflicts = scratch.squash_commit(e.head, msg, IDENTITY)
                else:
                    conflicts = scratch.merge_commit(e.head, msg, IDENTITY)
            except GitError as exc:
                scratch = self.scratch(at)
                self._refuse(e, "failed", f"git could not combine it: {exc.message}", rnd)
                continue
            if conflicts:
                scratch = self.scratch(at)
                if chain:  # it may conflict only with what comes before it
                    self._requeue(
                        [e], "conflicts with an entry ahead of it; tried again later", rnd
                    )
                    continue
                self._refuse_conflict(e, conflicts, rnd)
                continue
            at = scratch.head() or at
            chain.append(Link(e, at))
        return chain

    def _settle(self, chain: list[Link], tip: str, rnd: Round) -> None:
        k = len(chain)
        passed: dict[int, bool] = {}
        results: dict[int, list[CheckResult]] = {}
        landed_upto = 0
        base = tip
        while True:
            step = decide(k, passed)
            if isinstance(step, Test):
                j = step.j
                ok, res = self._test(chain[j - 1].commit, [link.entry for link in chain[:j]], rnd)
                passed[j], results[j] = ok, res
                if ok and j > landed_upto:
                    outcome = self._land(chain[landed_upto:j], base, rnd)
                    if outcome == "waiting":  # the rest is built on what waits
                        if chain[j:]:
                            self._requeue_rest(chain[j:], "behind an entry that waits", rnd)
                        return
                    if outcome != "landed":
                        self._requeue_rest(chain[landed_upto:], outcome, rnd)
                        return
                    landed_upto, base = j, chain[j - 1].commit
                continue
            assert isinstance(step, Settle)
            if step.refuse is not None:
                culprit = chain[step.refuse - 1].entry
                self._refuse_checks(culprit, results[step.refuse], rnd)
                rest = chain[step.refuse :]
                if rest:
                    self._requeue(
                        [link.entry for link in rest],
                        f"tested with #{culprit.n}, which failed; queued again without it",
                        rnd,
                    )
            return

    def _test(
        self, commit: str, entries: Sequence[Entry], rnd: Round
    ) -> tuple[bool, list[CheckResult]]:
        """Run the checks on ``commit`` in the scratch worktree."""
        scratch = self.scratch(commit)
        self._testing = commit
        t0 = time.monotonic()
        results = self.run_checks(scratch.top) if self.settings.checks else []
        rnd.runs += 1 if self.settings.checks else 0
        ok = all(r.ok for r in results)
        with q.editing(self.data) as queue:
            for e in entries:
                mine = queue.get(e.n)
                if mine is not None:
                    mine.runs += 1 if self.settings.checks else 0
                    e.runs = mine.runs
        self.event(
            "merge-check",
            None,
            commit=commit,
            entries=[e.n for e in entries],
            ok=ok,
            seconds=round(time.monotonic() - t0, 3),
            failing=[r.name for r in results if not r.ok] or None,
        )
        return ok, results

    # -- landing -----------------------------------------------------------------------

    def _land(self, links: list[Link], base: str, rnd: Round) -> str:
        """Move trunk from ``base`` to the last link's commit. Returns
        ``landed``, ``moved`` (trunk is not at base: test again), ``cancelled``
        (an entry was cancelled meanwhile) or ``waiting`` (the main checkout's
        work is in the way).

        Trunk moves under the queue's lock, with ``candidate`` written first:
        a cancel comes before (nothing lands) or after (it landed), never
        between; a merger killed after the move is mended by :meth:`recover`.
        """
        target = links[-1].commit
        trunk = links[0].entry.trunk
        done: list[Entry] = []
        waiting_words = ""
        with q.editing(self.data) as queue:
            live = [queue.get(link.entry.n) for link in links]
            if any(e is None or e.state not in ("testing", "waiting") for e in live):
                return "cancelled"
            entries = [e for e in live if e is not None]
            for e in entries:
                e.candidate = target
            q.save(self.data, queue)  # on disk before trunk moves
            outcome, words = self._move_trunk(trunk, base, target)
            if outcome == "landed":
                for e in entries:
                    self._mark_landed(e, target)
                    done.append(e)
            elif outcome == "waiting":
                waiting_words = words
                reason = "the main checkout has uncommitted work that landing would overwrite"
                for e in entries:
                    e.base = base  # what trunk must still be at when it lands
                    if e.state != "waiting":
                        e.move("waiting", reason)
                    rnd.waiting.append(e.n)
            else:
                for e in entries:
                    e.candidate = None
        if outcome == "waiting":
            self._tell_waiting(links, waiting_words)
            return "waiting"
        if outcome != "landed":
            return outcome
        self._after_landing(target)
        for e in done:
            rnd.landed.append(e.n)
            self._landed_news(e)
        return "landed"

    def _checkout_of(self, trunk: str) -> git.Repo | None:
        """The work tree that has ``trunk`` checked out (the main checkout or
        another worktree), if one has: trunk moves there by --ff-only."""
        ref = f"refs/heads/{trunk}"
        if self.repo.current_branch() == trunk:
            return self.repo
        for wt in self.repo.worktrees():
            if wt.branch == ref and not wt.bare and wt.path.resolve() != self.repo.top:
                try:
                    return git.Repo(wt.path)
                except GitError:
                    return None
        return None

    def _move_trunk(self, trunk: str, base: str, target: str) -> tuple[str, str]:
        """("landed" | "moved" | "waiting", git's words)."""
        ref = f"refs/heads/{trunk}"
        if self.repo.verify(ref) != base:
            return "moved", ""
        checkout = self._checkout_of(trunk)
        if checkout is not None:
            ok, words = checkout.fast_forward(target)
            if ok:
                return "landed", ""
            if self.repo.verify(ref) != base:
                return "moved", words
            return "waiting", words
        if self.repo.move_ref(ref, target, base, "cmux merge queue: checks passed"):
            return "landed", ""
        return "moved", ""

    def _mark_landed(self, e: Entry, commit: str) -> None:
        kept = f"{MERGED_REFS}{e.agent}/{e.n}"
        with contextlib.suppress(GitError):
            self.repo.set_ref(kept, e.head, f"cmux merge queue: #{e.n} of {e.agent} landed")
            e.kept = kept
        e.landed = commit
        e.candidate = commit
        e.conflicts, e.check, e.output = [], None, None
        e.move("landed", f"on {e.trunk} at {commit[:12]}")

    def _after_landing(self, commit: str) -> None:
        """A landed commit passed the checks: the health monitor knows it as good."""
        if not self.settings.checks:
            return
        from cmux.health.rollback import record_pass

        try:
            record_pass(self.data, self.repo, commit)
        except (CmuxError, OSError):
            log.exception("could not record %s as passing", commit)

    def _landed_news(self, e: Entry) -> None:
        self.event("merge-landed", e, commit=e.landed, head=e.head)
        parent, _ = self._parent_of(e.agent)
        short = (e.landed or "")[:12]
        untested = "" if self.settings.checks else " (no checks are configured: untested)"
        body = (
            f"merged: {e.branch} (#{e.n}, head {e.head[:12]}) landed on {e.trunk} at "
            f"{short}{untested}."
        )
        self.tell(e.agent, body + " Your work is on trunk.", "notice")
        if parent and parent != e.agent:
            self.tell(parent, body + f" `workers kill {e.agent}` tidies its worktree.", "notice")
        from cmux.journal import note

        note(
            self.data,
            agent="cmux",
            title=f"landed: {e.branch} on {e.trunk} at {short}",
            body=body,
            tags=["merge", "landed"],
        )
        with q.editing(self.data) as queue:
            mine = queue.get(e.n)
            if mine is not None:
                mine.notified = True
        e.notified = True

    def _tell_waiting(self, links: list[Link], words: str) -> None:
        """Tell the supervisor, once per entry and reason, why a tested entry waits."""
        reason = "the main checkout has uncommitted work that landing would overwrite"
        first = links[0].entry
        key = (first.n, words)
        if key in self._told_waiting:
            return
        self._told_waiting.add(key)
        for link in links:
            self.event("merge-waiting", link.entry, reason=reason, git=words[:500])
        self.tell(
            "supervisor",
            f"merge #{first.n} ({first.branch}) passed its checks but waits: {reason}. "
            f"git says: {words[:400]}\nCommit or stash that work in {self.repo.top} "
            "and it lands by itself.",
            "notice",
        )

    def _retry_waiting(self, chain: list[Link]) -> Round:
        """Land entries that passed and wait for the main checkout (their state
        stays ``waiting`` while they still must)."""
        rnd = Round(batch=[link.entry.n for link in chain])
        base = chain[0].entry.base or ""
        outcome = self._land(chain, base, rnd)
        if outcome in ("moved", "cancelled"):
            self._requeue_rest(chain, outcome, rnd)
        return rnd

    # -- refusing ----------------------------------------------------------------------

    def _requeue_rest(self, links: list[Link], outcome: str, rnd: Round) -> None:
        why = {
            "moved": "trunk moved while it was tested; testing again on the new tip",
            "cancelled": "an entry of its batch was cancelled; testing again without it",
        }.get(outcome, outcome)
        self._requeue([link.entry for link in links], why, rnd)

    def _requeue(self, entries: list[Entry], why: str, rnd: Round) -> None:
        with q.editing(self.data) as queue:
            for e in entries:
                mine = queue.get(e.n)
                if mine is not None and mine.state in ("testing", "waiting"):
                    mine.candidate = None
                    mine.move("queued", why)
                    rnd.requeued.append(e.n)
        for e in entries:
            self.event("merge-retest", e, reason=why)

    def _refuse(self, e: Entry, state: q.State, reason: str, rnd: Round, **extra: Any) -> None:
        with q.editing(self.data) as queue:
            mine = queue.get(e.n)
            if mine is None or not mine.active:
                return
            for k, v in extra.items():
                setattr(mine, k, v)
            mine.candidate = None
            mine.move(state, reason)
        rnd.refused.append(e.n)
        self.event(f"merge-{state}", e, reason=reason, **{k: v for k, v in extra.items() if v})

    def _refuse_all(self, entries: list[Entry], rnd: Round, reason: str) -> None:
        for e in entries:
            self._refuse(e, "failed", reason, rnd)
            self._tell_refused(e, f"merge #{e.n} of {e.branch} refused: {reason}")

    def _refuse_conflict(self, e: Entry, paths: list[str], rnd: Round) -> None:
        shown = ", ".join(paths[:20]) + (f" and {len(paths) - 20} more" if len(paths) > 20 else "")
        self._refuse(e, "conflict", f"conflicts with {e.trunk} in {shown}", rnd, conflicts=paths)
        where = self._worktree_of(e.agent) or "<your worktree>"
        verb = "rebase" if self.settings.strategy == "rebase" else "merge"
        body = (
            f"merge #{e.n} of {e.branch} refused: it conflicts with {e.trunk} in: {shown}.\n"
            f"Your branch is as it was. To see the conflict and resolve it in your worktree:\n"
            f"  cd {where}\n"
            f"  git {verb} {e.trunk}\n"
            f"  # edit the files above, then: git add <files> && git {verb} --continue\n"
            f"Then ask for the merge again (`mailbox done` with [merge] auto, or your "
            f"supervisor runs `workers merge {e.agent}`)."
        )
        self._tell_refused(e, body)

    def _refuse_checks(self, e: Entry, results: list[CheckResult], rnd: Round) -> None:
        bad = [r for r in results if not r.ok] or results
        first = bad[0] if bad else None
        name = first.name if first else "checks"
        output_file: str | None = None
        if first is not None:
            kept = self.log_path(name)
            if kept.is_file():  # the whole output, written as the check ran
                output_file = str(kept)
            else:
                path = logs_dir(self.cfg) / f"{e.n}-{_safe(name)}.log"
                try:
                    from cmux.fsutil import atomic_write

                    atomic_write(path, first.output)
                    output_file = str(path)
                except CmuxError:
                    log.exception("could not keep the output of %s", name)
        detail = first.detail if first else "failed"
        self._refuse(
            e, "failed", f"check {name!r} failed: {detail}", rnd, check=name, output=output_file
        )
        tail = "\n".join((first.output if first else "").rstrip().splitlines()[-15:])
        self._tell_refused(
            e,
            f"merge #{e.n} of {e.branch} refused: check {name!r} failed on {e.trunk} + your "
            f"branch ({detail}). Your branch is as it was; {e.trunk} did not move.\n"
            f"Last lines of its output (all of it: {output_file or 'not kept'}):\n{tail}",
        )

    def _tell_refused(self, e: Entry, body: str) -> None:
        parent, live = self._parent_of(e.agent)
        to = e.agent if live else (parent or "supervisor")
        self.tell(to, body, "notice")
        if live and parent and parent != e.agent:
            self.tell(parent, body.split("\n", 1)[0], "notice")

    @staticmethod
    def _message(e: Entry, strategy: str) -> str:
        verb = "Squash" if strategy == "squash" else "Merge"
        return f"{verb} {e.branch} into {e.trunk} (cmux merge queue #{e.n}, {e.agent})"


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:60] or "check"


# -- the daemon ------------------------------------------------------------------------

IDLE_WAIT = 30.0  # seconds between looks when nothing is queued (a change wakes it sooner)
WAITING_WAIT = 2.0  # while an entry waits for the main checkout


def run(cfg: Config) -> None:
    """Entry point of `cmux merger`: one per data root, started by the monitor."""
    import select
    import signal

    from cmux import pidfile
    from cmux.errors import SessionError
    from cmux.fsutil import locked
    from cmux.watch import open_watcher

    run_dir = cfg.data.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    with locked(run_dir / "merger.lock", blocking=False) as got:
        if not got:
            raise SessionError(f"a merger is already running for {cfg.data.root}")
        merger = Merger(cfg)
        stopping = False

        def stop(*_: object) -> None:
            nonlocal stopping
            if stopping:  # a second signal (cmux stop sends SIGHUP and SIGTERM at
                return  # once) must not cut the cleanup short: the scratch goes
            stopping = True
            raise SystemExit(0)  # out of a running check too (its group is ended)

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGHUP, stop)
        qdir = q.queue_dir(cfg.data)
        qdir.mkdir(parents=True, exist_ok=True)
        watcher = open_watcher()
        watcher.add(qdir, "files")
        try:
            pidfile.write(run_dir / "merger.pid")
            events.record(cfg.data, "merger-start", pid=os.getpid())
            merger.recover()
            while not stopping:
                rnd = merger.step()
                if rnd is not None and not rnd.waiting:
                    continue
                wait = WAITING_WAIT if rnd is not None else IDLE_WAIT
                ready, _, _ = select.select([watcher.fileno()], [], [], wait)
                if ready:
                    watcher.read()
        finally:
            watcher.close()
            merger.clean_scratch()
            pidfile.remove(run_dir / "merger.pid")
            events.record(cfg.data, "merger-stop", pid=os.getpid())
