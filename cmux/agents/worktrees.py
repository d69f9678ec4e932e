"""Git worktrees of workers spawned with --worktree (branch cmux/NAME).

A worktree is made from HEAD on spawn; on kill it is removed only when it
holds nothing unmerged (no uncommitted change, no commit that no other local
branch has), else it is kept and the kill says so.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from cmux import events
from cmux.agents.registry import Agent
from cmux.config import Config
from cmux.errors import AgentError, GitError, NotAGitRepo
from cmux.umask import user_umask

if TYPE_CHECKING:
    from cmux.agents.spawn import KillResult


def _git(cwd: Path, *args: str, check: bool = True) -> str:
    proc = subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, check=False, umask=user_umask()
    )
    if check and proc.returncode != 0:
        raise GitError(f"git {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


def branch_name(name: str) -> str:
    return f"cmux/{name}"


def _add_worktree(cfg: Config, name: str) -> tuple[Path, str]:
    root = cfg.project_root
    if _git(root, "rev-parse", "--is-inside-work-tree", check=False).strip() != "true":
        raise NotAGitRepo(f"{root} is not a git repository", "--worktree needs one")
    if not _git(root, "rev-parse", "--verify", "-q", "HEAD", check=False).strip():
        raise GitError(f"{root} has no commits yet", "commit once before using --worktree")
    branch = branch_name(name)
    path = cfg.data.worktree(name)
    if _git(root, "rev-parse", "--verify", "-q", f"refs/heads/{branch}", check=False).strip():
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
    _git(root, "worktree", "add", "-q", "-b", branch, str(path), "HEAD")
    return path, branch


def unmerged_commits(root: Path, branch: str) -> int:
    """Commits on ``branch`` that no other local branch contains."""
    others = [
        ref
        for ref in _git(root, "for-each-ref", "--format=%(refname)", "refs/heads").split()
        if ref != f"refs/heads/{branch}"
    ]
    out = _git(root, "rev-list", "--count", f"refs/heads/{branch}", "--not", *others)
    return int(out.strip() or 0)


def _retire_worktree(cfg: Config, agent: Agent, result: KillResult) -> None:
    root = cfg.project_root
    path = Path(agent.worktree or "")
    branch = agent.branch or branch_name(agent.name)
    reasons = []
    if path.is_dir():
        dirty = _git(path, "status", "--porcelain", check=False).strip()
        if dirty:
            reasons.append("uncommitted changes in the worktree")
    try:
        n = unmerged_commits(root, branch)
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
    _git(root, "worktree", "remove", "--force", str(path), check=False)
    _git(root, "branch", "-D", branch, check=False)
    _git(root, "worktree", "prune", check=False)
    result.removed_worktree = str(path)
