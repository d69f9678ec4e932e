"""A worker's own git worktree: made at spawn, kept or removed at kill.

A worker spawned with ``--worktree`` works in ``<data root>/worktrees/<name>``
on the new branch ``cmux/<name>``, made from the project's HEAD. At kill its
work is never lost: the worktree and branch are kept while the worktree has
uncommitted changes or the branch holds a commit no other local branch
contains (nor the merge queue's ``refs/cmux/merged/``: landed work); otherwise
both are removed. Git is reached only through
``cmux.git``.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Protocol

from cmux import events, git
from cmux.agents.registry import Agent
from cmux.config import Config
from cmux.errors import AgentError, GitError, NotAGitRepo


class Outcome(Protocol):
    """Where :func:`retire` says what became of a worktree (a kill's result)."""

    kept_branch: str | None
    kept_worktree: str | None
    removed_worktree: str | None
    reason: str


def branch_name(name: str) -> str:
    return f"cmux/{name}"


def add(cfg: Config, name: str) -> tuple[Path, str]:
    """Make worker ``name``'s worktree and branch: (path, branch). Refuses,
    having made nothing, when either already exists."""
    root = cfg.project_root
    try:
        repo = git.Repo(root)
    except NotAGitRepo:
        raise NotAGitRepo(f"{root} is not a git repository", "--worktree needs one") from None
    if repo.head() is None:
        raise GitError(f"{root} has no commits yet", "commit once before using --worktree")
    branch = branch_name(name)
    path = cfg.data.worktree(name)
    if repo.branch_exists(branch):
        raise AgentError(
            f"branch {branch} already exists (kept from an earlier worker {name!r})",
            f"merge or delete it (`git branch -D {branch}`), or choose another name",
        )
    if path.exists():
        raise AgentError(
            f"{path} already exists",
            f"remove it (`git worktree remove {path}`) or choose another name",
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    repo.worktree_add(path, branch, "HEAD")
    return path, branch


# Where the merge queue keeps each landed entry's original head (cmux/merge/merger.py).
MERGED_REFS = "refs/cmux/merged/"


def unmerged_commits(repo: git.Repo, branch: str) -> int:
    """Commits on ``branch`` that no other local branch contains, nor the
    merge queue's record of a landed head (a rebased or squashed landing
    keeps the originals there, so deleting the branch loses nothing)."""
    others = [ref for ref in repo.refs("refs/heads/") if ref != f"refs/heads/{branch}"]
    others += list(repo.refs(MERGED_REFS))
    return repo.count(f"refs/heads/{branch}", excluding=others)


def _has_changes(path: Path) -> bool:
    try:
        return git.Repo(path).has_changes()
    except GitError:
        return False


def retire(cfg: Config, agent: Agent, result: Outcome) -> None:
    """Remove a killed agent's worktree and branch, or keep both (and say
    why in ``result`` and the event log) while they hold unmerged work."""
    path = Path(agent.worktree or "")
    branch = agent.branch or branch_name(agent.name)
    reasons = []
    if path.is_dir() and _has_changes(path):
        reasons.append("uncommitted changes in the worktree")
    repo: git.Repo | None = None
    n = 0
    try:
        repo = git.Repo(cfg.project_root)
        n = unmerged_commits(repo, branch)
    except GitError:
        n = 0
    if n:
        reasons.append(f"{n} commit{'s' if n != 1 else ''} not merged into any other branch")
    if reasons:
        result.kept_branch = branch
        result.kept_worktree = str(path)
        result.reason = "; ".join(reasons)
        events.record(cfg.data, "worktree-kept", agent.name, branch=branch, reason=result.reason)
        return
    if repo is not None:
        with contextlib.suppress(GitError):
            repo.worktree_remove(path)
        with contextlib.suppress(GitError):
            repo.delete_branch(branch)
        with contextlib.suppress(GitError):
            repo.worktree_prune()
    result.removed_worktree = str(path)
