"""Merge-queue operations: queue a worker's branch, cancel, list, wait.

Both front ends call these (`cmux merge`, `cmux queue` for a person;
`workers merge` for the supervisor, its own workers only: ops.agents.decide).
They return data or raise; the merger daemon (cmux/merge/merger.py) does the
building, testing and landing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cmux.paths import HUMAN

if TYPE_CHECKING:
    from cmux.config import Config
    from cmux.merge.queue import Entry


def trunk_of(cfg: Config) -> str:
    """The branch merges land on: ``[merge] trunk``, else the branch checked
    out at `cmux start`, else the one checked out now."""
    from cmux import git
    from cmux.merge.config import settings
    from cmux.merge.queue import QueueError

    s = settings(cfg)
    if s.trunk:
        return s.trunk
    try:
        recorded = cfg.data.trunk_file.read_text().strip()
    except OSError:
        recorded = ""
    if recorded:
        return recorded
    branch = git.Repo(cfg.project_root).current_branch()
    if not branch:
        raise QueueError(
            f"{cfg.project_root} has no branch checked out (HEAD is detached): "
            "no trunk to merge to",
            'check out the trunk branch, or set it: [merge] trunk = "main" in cmux.toml',
        )
    return branch


def enqueue(cfg: Config, name: str, *, caller: str | None = None) -> tuple[Entry, bool]:
    """Put agent ``name``'s branch in the queue: (its entry, whether it was
    queued already). Raises for an unknown agent, an agent without a branch,
    or a branch with nothing beyond trunk."""
    from cmux import events, git
    from cmux.agents import registry
    from cmux.errors import GitError
    from cmux.merge import queue as q
    from cmux.merge.queue import QueueError
    from cmux.ops.agents import authorize

    if caller is not None:
        authorize(cfg, caller, "merge", name=name)
    agent = registry.get(cfg.data, name)  # UnknownAgent with the known names
    if not agent.branch:
        raise QueueError(
            f"{name} has no branch of its own to merge",
            f"only a worker spawned with --worktree has one (cmux/{name})",
        )
    repo = git.Repo(cfg.project_root)
    head = repo.verify(f"refs/heads/{agent.branch}")
    if head is None:
        raise QueueError(
            f"{name}'s branch {agent.branch} does not exist any more",
            "its work was merged and the branch deleted, or someone removed it",
        )
    trunk = trunk_of(cfg)
    if repo.verify(f"refs/heads/{trunk}") is None:
        raise QueueError(f"the trunk branch {trunk!r} does not exist", "set [merge] trunk")
    try:
        ahead = repo.count(head, excluding=[f"refs/heads/{trunk}"])
    except GitError:
        ahead = 0
    if not ahead:
        raise QueueError(
            f"{agent.branch} has no commits beyond {trunk}: nothing to merge",
            f"commit the work in {agent.worktree or 'its worktree'} first",
        )
    by = caller or HUMAN
    with q.editing(cfg.data) as queue:
        current = queue.of(name)
        if current is not None and current.active:
            if current.state == "queued" and current.head != head:
                current.head = head  # the newer work, still in its place in line
            entry, already = current, True
        else:
            entry, already = (
                queue.add(agent=name, branch=agent.branch, head=head, trunk=trunk, by=by),
                False,
            )
    if not already:
        events.record(
            cfg.data, "merge-queued", name, n=entry.n, branch=entry.branch, head=head, by=by
        )
    return entry, already


def cancel(cfg: Config, name: str, *, caller: str | None = None) -> Entry:
    """Take ``name``'s active entry out of the queue (one being tested is
    dropped before trunk moves)."""
    from cmux import events
    from cmux.merge import queue as q
    from cmux.merge.queue import QueueError
    from cmux.ops.agents import authorize

    if caller is not None:
        authorize(cfg, caller, "merge", name=name)
    with q.editing(cfg.data) as queue:
        entry = queue.of(name)
        if entry is None or not entry.active:
            raise QueueError(f"{name} has nothing in the merge queue", "see `cmux queue`")
        entry.move("cancelled", f"cancelled by {caller or HUMAN}")
    events.record(cfg.data, "merge-cancelled", name, n=entry.n, by=caller or HUMAN)
    return entry


def rows(cfg: Config, *, now: float | None = None) -> list[dict[str, Any]]:
    """Every entry, the line first (in order), then the decided ones, newest first."""
    from cmux.merge import queue as q

    queue = q.load(cfg.data)
    now = time.time() if now is None else now
    line = queue.active()
    done = sorted((e for e in queue.entries if not e.active), key=lambda e: -e.n)
    out = []
    for e in [*line, *done]:
        out.append(
            {
                "n": e.n,
                "agent": e.agent,
                "branch": e.branch,
                "head": e.head,
                "trunk": e.trunk,
                "state": e.state,
                "position": queue.position(e),
                "since": e.since,
                "in_state": round(max(0.0, now - e.since), 1),
                "landed": e.landed,
                "reason": e.reason,
                "conflicts": e.conflicts,
                "check": e.check,
                "output": e.output,
                "runs": e.runs,
                "kept": e.kept,
                "by": e.by,
            }
        )
    return out


def merger_running(cfg: Config) -> bool:
    """Whether a merger runs for this data root (by its verified pid file)."""
    from cmux import pidfile

    return pidfile.alive(cfg.data.run_dir / "merger.pid") is not None


def checks_note(cfg: Config) -> str:
    """What the queue tests with, in words (`cmux queue` prints it)."""
    from cmux.merge.config import settings

    s = settings(cfg)
    if not s.checks:
        return (
            "no checks are configured: entries land untested "
            "(add [[merge.checks]] or [[health.checks]])"
        )
    names = ", ".join(c.name for c in s.checks)
    where = "[[merge.checks]]" if s.checks_from == "merge" else "the [[health.checks]]"
    return f"checks: {names} (from {where}); strategy {s.strategy}, batches of {s.batch}"


def wait(
    cfg: Config,
    n: int,
    *,
    timeout: float | None = None,
    on_change: Callable[[Entry], None] | None = None,
    poll: float = 0.2,
) -> Entry:
    """Block until entry ``n`` is decided (landed, refused, cancelled) and
    return it; ``on_change`` hears every change of state. Raises
    QueueError when ``timeout`` passes first."""
    from cmux.merge import queue as q
    from cmux.merge.queue import DECIDED, QueueError

    deadline = None if timeout is None else time.monotonic() + timeout
    last: tuple[str, str] | None = None
    while True:
        entry = q.load(cfg.data).get(n)
        if entry is None:
            raise QueueError(f"merge #{n} is not in the queue any more")
        if (entry.state, entry.reason) != last:
            last = (entry.state, entry.reason)
            if on_change is not None:
                on_change(entry)
        if entry.state in DECIDED:
            return entry
        if deadline is not None and time.monotonic() > deadline:
            raise QueueError(
                f"merge #{n} is still {entry.state} after {timeout:g} s",
                "it goes on in the background: see `cmux queue`",
            )
        time.sleep(poll)
