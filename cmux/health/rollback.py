"""The git side of the safety net: last-good, rescue branches, stashes, the reset.

Git itself is reached only through the gateway, ``cmux.git``. The rules kept here:

- ``refs/cmux/last-good`` points at the newest HEAD that passed every check.
- A rollback saves before it changes anything: a branch
  ``cmux/rescue/<UTC time>`` at the current HEAD, and, when the tree is
  dirty, a stash with untracked files whose message names that branch. The
  stash is also pinned by ``refs/cmux/rescue-stash/<id>`` so that no
  ``git stash drop`` or reflog expiry can lose it. If saving fails, nothing
  is reset.
- A refusal changes nothing, or says exactly what it did: work a stash
  cannot take (inside a submodule, an untracked repository in the tree) is
  refused before anything is written; should a stash still leave something
  behind, it is applied again and dropped, or the error names the stash.
- The reset moves HEAD and the index, then rewrites only the files the undone
  commits changed. cmux's own files (the data root, and cmux.toml and
  .gitignore while uncommitted) are outside every stash and every write; an ignored file in the
  way of a file the target tracks is copied to ``state/rescues/<id>/`` first.
- The automatic target is the nearest commit that passed, never one past it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cmux import git
from cmux.errors import GitError, NotAGitRepo, UsageError
from cmux.fsutil import locked
from cmux.git import Commit, StatusEntry
from cmux.health.rescues import (
    RESCUE_BRANCH_PREFIX,
    STASH_REF_PREFIX,
    Rescue,
    rescue_dir,
    rescue_file,
    save_rescue,
)
from cmux.paths import DataRoot

log = logging.getLogger(__name__)

LAST_GOOD_REF = "refs/cmux/last-good"
SETUP_FILES = ("cmux.toml", ".gitignore")
SEARCH_DEPTH = 5000  # commits walked back from HEAD looking for one that passed
STASH_IDENTITY = ("cmux", "cmux@localhost")  # lent to a stash when the person has none


# -- the repository ---------------------------------------------------------------


class Repo(git.Repo):
    """The project's git repository, with cmux's own files fenced off: no
    stash, reset or write of a rollback touches what :meth:`protected` lists."""

    def __init__(self, project_root: Path, data: DataRoot) -> None:
        self.project_root = Path(project_root).resolve()
        self.data = data
        try:
            super().__init__(self.project_root)
        except NotAGitRepo:
            raise NotAGitRepo(
                f"{self.project_root} is not in a git repository",
                "health rollbacks need git: `git init` and commit once",
            ) from None

    # -- what is cmux's own ----------------------------------------------------------

    def _rel(self, path: Path) -> str | None:
        try:
            rel = Path(path).resolve().relative_to(self.top)
        except ValueError:
            return None
        return rel.as_posix()

    def protected(self) -> list[str]:
        """Paths (relative to the top) that no stash and no reset may touch."""
        d = self.data
        out: list[str] = []
        if self.project_root == d.root or d.root in self.project_root.parents:
            # The data root shares its folder with the project (this repository
            # does that): fence off each of its parts instead of the whole.
            parts = [d.mailbox_dir, d.journal_dir, d.state_dir, d.contexts_dir, d.worktrees_dir]
        else:
            parts = [d.root]
        for p in parts:
            rel = self._rel(p)
            if rel and rel != ".":
                out.append(rel)
        # cmux's setup files, while uncommitted, stay where `cmux init` put them.
        for name in SETUP_FILES:
            rel = self._rel(self.project_root / name)
            if rel and not self.tracked(rel):
                out.append(rel)
        if not out:
            return out
        # git refuses a pathspec that names an ignored path, and stash leaves
        # ignored paths alone anyway: fence off only what git would see.
        ignored = self.ignored(out)
        return [p for p in out if p not in ignored]

    def pathspec(self) -> list[str]:
        return [".", *(f":(exclude,literal){p}" for p in self.protected())]

    def ignore_data_root(self) -> None:
        """List the data root in .git/info/exclude, so it stays ignored even when
        a rollback takes away the .gitignore line that `cmux init` wrote."""
        if self.project_root == self.data.root or self.data.root in self.project_root.parents:
            return
        rel = self._rel(self.data.root)
        if not rel or rel == ".":
            return
        path = self.git_path("info/exclude")
        entry = f"/{rel}/"
        try:
            text = path.read_text()
        except FileNotFoundError:
            text = ""
        if entry in text.splitlines():
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as fh:
            fh.write(("" if not text or text.endswith("\n") else "\n") + f"{entry}\n")

    # -- commits ---------------------------------------------------------------------

    def last_good(self) -> str | None:
        return self.verify(LAST_GOOD_REF)

    def set_last_good(self, sha: str) -> None:
        self.set_ref(LAST_GOOD_REF, sha, "cmux: passed every health check")

    def nearest_passed(self, passed: Iterable[str], head: str | None = None) -> str | None:
        """The commit to roll back to: one that passed, behind HEAD, and with no
        other commit that passed between it and HEAD (never past a good one).

        Along HEAD's first-parent line when that holds (how HEAD moved), else
        the first in topological order (children before parents).
        """
        good = set(passed)
        lg = self.last_good()
        if lg:
            good.add(lg)
        head = head or self.head()
        if not head or not good:
            return None
        mainline = self.rev_list(head, first_parent=True, limit=SEARCH_DEPTH)
        first = next((sha for sha in mainline if sha in good), None)
        if first is not None:
            between = self.rev_list(f"{first}..{head}", ancestry_path=True)
            if not good.intersection(between):
                return first
        for sha in self.rev_list(head, topo_order=True, limit=SEARCH_DEPTH):
            if sha in good:
                return sha
        return None

    # -- the work tree ---------------------------------------------------------------

    def dirty(self) -> list[str]:
        """Changed, staged, deleted and untracked paths, outside cmux's own."""
        return self.dirty_paths(*self.pathspec())

    def unsaveable(self) -> list[tuple[str, str]]:
        """Dirty paths a stash cannot set aside (see :func:`unsaveable`)."""
        return unsaveable(self.status_entries(*self.pathspec()))

    def refuse_unsaveable(self) -> None:
        """Raise, having changed nothing, when a stash could not save everything."""
        blocked = self.unsaveable()
        if not blocked:
            return
        listed = "; ".join(f"{path} ({why})" for path, why in blocked[:5])
        more = f" and {len(blocked) - 5} more" if len(blocked) > 5 else ""
        raise GitError(
            f"cannot roll back: git stash cannot save the work inside {listed}{more}; "
            "nothing was changed",
            "commit or stash that work inside the submodule or repository itself "
            "(or undo it), then roll back again",
        )

    # -- rescues ---------------------------------------------------------------------

    def new_rescue_id(self, now: float) -> str:
        base = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
        rid, n = base, 1
        while (
            self.branch_exists(RESCUE_BRANCH_PREFIX + rid) or rescue_file(self.data, rid).exists()
        ):
            n += 1
            rid = f"{base}-{n}"
        return rid

    def _stash(self, rescue: Rescue) -> None:
        message = (
            f"cmux rescue {rescue.id}: uncommitted work at {rescue.head[:10]}, "
            f"saved before a rollback to {rescue.target[:10]} (branch {rescue.branch})"
        )
        try:
            self.stash_push(message, *self.pathspec(), identity=STASH_IDENTITY)
        finally:
            # Found by its message, not as the newest stash: refs/stash is shared
            # by every worktree of the repository, so another one may stash at
            # the same moment. Recorded and pinned at once, even when the push
            # failed half-way: from here on every way out must say where the
            # work went (see _saving_failed).
            ours = self._find_stash(rescue.id)
            if ours:
                rescue.stash = ours
                rescue.stash_ref = STASH_REF_PREFIX + rescue.id
                self.set_ref(rescue.stash_ref, ours, message)

    def _find_stash(self, rid: str) -> str | None:
        for sha, subject in self.stashes():
            if subject.startswith("On ") and f": cmux rescue {rid}: " in subject:
                return sha
        return None

    def _undo_stash(self, rescue: Rescue) -> bool:
        """Put the stash just made back into the work tree and forget it.

        True when the work tree and index are as they were (the stash is then
        dropped and unpinned); False when it could not be applied, and it stays
        where ``rescue.stash`` and ``rescue.stash_ref`` say."""
        assert rescue.stash is not None
        if not self.stash_apply(rescue.stash):
            return False
        with contextlib.suppress(GitError):
            self.stash_drop(rescue.stash)
        if rescue.stash_ref:
            with contextlib.suppress(GitError):
                self.delete_ref(rescue.stash_ref)
        rescue.stash = rescue.stash_ref = None
        return True

    def _move_to(self, old: str, target: str, rescue: Rescue) -> None:
        """HEAD and index to ``target``; rewrite only the files that differ.

        The tree is clean (everything was just saved), so each file the undone
        commits touched holds exactly what ``old`` has, safe in the rescue
        branch. cmux's own paths are outside the pathspec and never written.
        """
        gone: list[str] = []
        write: list[str] = []
        added: list[str] = []
        for status, name in self.changes(old, target, *self.pathspec()):
            if status.startswith("D"):
                gone.append(name)
            else:
                write.append(name)
                if status.startswith("A"):
                    added.append(name)
        self._keep_ignored(added, rescue)
        self.reset(target)
        for rel in gone:
            path = self.top / rel
            if path.is_symlink() or path.is_file():
                path.unlink()
                _prune_empty_dirs(path.parent, self.top)
        if write:
            self.checkout_files(write)
        self.refresh_index()

    def _keep_ignored(self, paths: list[str], rescue: Rescue) -> None:
        """An ignored file where the target tracks one is copied aside first."""
        for rel in paths:
            src = self.top / rel
            if not (src.is_file() or src.is_symlink()):
                continue
            dest = rescue_dir(self.data, rescue.id) / "overwritten" / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            if src.is_symlink():
                os.symlink(os.readlink(src), dest)
            else:
                shutil.copy2(src, dest)
            rescue.overwritten.append(rel)

    def rollback(self, target: str, *, reason: str, auto: bool, now: float | None = None) -> Rescue:
        """Save everything, then move to ``target``. Raises GitError, having
        changed nothing, when the work cannot be saved."""
        with locked(self.data.run_dir / "rollback.lock"):
            return self._rollback(target, reason=reason, auto=auto, now=now or time.time())

    def _rollback(self, target: str, *, reason: str, auto: bool, now: float) -> Rescue:
        head = self.head()
        if head is None:
            raise GitError(f"{self.top} has no commits: there is nothing to roll back")
        target = self.resolve(target)
        rid = self.new_rescue_id(now)
        rescue = Rescue(
            id=rid,
            branch=RESCUE_BRANCH_PREFIX + rid,
            head=head,
            target=target,
            reason=reason,
            auto=auto,
            ts=now,
            undone=[
                {"sha": c.sha, "subject": c.subject} for c in self.commits_between(target, head)
            ],
        )
        rescue.files = self.dirty()
        if rescue.files:
            self.refuse_unsaveable()  # before anything is written
        save_rescue(self.data, rescue)
        try:
            self.create_branch(rescue.branch, head)
        except GitError as exc:
            rescue.status, rescue.error = "failed", str(exc)
            save_rescue(self.data, rescue)
            raise GitError(
                f"could not create the rescue branch {rescue.branch}: {exc.message}",
                "nothing was changed; a branch named cmux/rescue would block it",
            ) from None
        try:
            if rescue.files:
                self._stash(rescue)
            left = self.dirty()
            if left:
                raise GitError(
                    f"{len(left)} path(s) could not be set aside: {', '.join(left[:5])}",
                )
        except GitError as exc:
            raise self._saving_failed(rescue, exc) from None
        rescue.status = "saved"
        save_rescue(self.data, rescue)
        try:
            self.ignore_data_root()
            self._move_to(head, target, rescue)
        except (GitError, OSError) as exc:
            words = exc.message if isinstance(exc, GitError) else str(exc)
            rescue.status, rescue.error = "failed", words
            save_rescue(self.data, rescue)
            stash = f", uncommitted work in stash {rescue.stash[:10]}" if rescue.stash else ""
            raise GitError(
                f"everything was saved (commits on {rescue.branch}{stash}), then moving to "
                f"{target[:10]} failed half-way: {words}; HEAD is now "
                f"{(self.head() or '?')[:10]}",
                f"`cmux rescue show {rescue.id}` shows how to get back to where you were",
            ) from None
        rescue.left_dirty = self.dirty()
        rescue.status = "done"
        save_rescue(self.data, rescue)
        return rescue

    def _saving_failed(self, rescue: Rescue, exc: GitError) -> GitError:
        """The error to raise when saving failed, having undone what saving did,
        or, where that is not possible, saying exactly what it did."""
        what = f"could not save the uncommitted work, so nothing was rolled back: {exc.message}"
        hint = "if a merge or rebase is in progress, finish or abort it"
        rescue.status, rescue.error = "failed", exc.message
        kept = rescue.stash is not None and not self._undo_stash(rescue)
        save_rescue(self.data, rescue)
        if not kept:
            with contextlib.suppress(GitError):
                self.delete_branch(rescue.branch)
            return GitError(what, f"nothing was changed; {hint}")
        assert rescue.stash is not None
        still = set(self.dirty())
        moved = [f for f in rescue.files if f not in still]
        files = ", ".join(moved[:5]) + (f" and {len(moved) - 5} more" if len(moved) > 5 else "")
        return GitError(
            f"{what}. Your uncommitted work ({files}) was moved out of the work tree "
            f"into stash {rescue.stash[:10]} (pinned as {rescue.stash_ref}, made at "
            f"{rescue.head[:10]}, branch {rescue.branch}) and could not be put back",
            f"bring it back: git switch -c restore-{rescue.id} {rescue.branch} && "
            f"git stash apply --index {rescue.stash[:10]}",
        )


@dataclass
class Plan:
    """What a rollback would do, shown before it is done."""

    head: str
    target: str
    undone: list[Commit]
    dirty: list[str]
    target_passed: bool
    passed_undone: list[str]  # commits that passed and would be undone (by hand only)
    ancestor: bool

    @property
    def nothing_to_do(self) -> bool:
        return self.head == self.target and not self.dirty


def plan(repo: Repo, passed: Iterable[str], to: str | None = None, *, force: bool = False) -> Plan:
    """Check a rollback before doing it: the target must be HEAD or behind it
    (unless ``force``); without ``to`` it is the nearest commit that passed."""
    head = repo.head()
    if head is None:
        raise GitError(f"{repo.top} has no commits: there is nothing to roll back")
    good = set(passed)
    if to is None:
        target = repo.nearest_passed(good, head)
        if target is None:
            raise UsageError(
                "no commit has passed the health checks yet, so there is no last good one",
                "name one: `cmux rollback --to REF` (see `git log --oneline`)",
            )
    else:
        target = repo.resolve(to)
    ancestor = repo.is_ancestor(target, head)
    if not ancestor and not force:
        raise UsageError(
            f"{to or target[:10]} is not HEAD or behind it, so this is not a rollback",
            "add --force to move there anyway (your work is saved first either way)",
        )
    dirty = repo.dirty()
    if dirty:
        repo.refuse_unsaveable()
    undone = repo.commits_between(target, head)
    lg = repo.last_good()
    if lg:
        good.add(lg)
    return Plan(
        head=head,
        target=target,
        undone=undone,
        dirty=dirty,
        target_passed=target in good,
        passed_undone=[c.sha for c in undone if c.sha in good],
        ancestor=ancestor,
    )


def unsaveable(entries: list[StatusEntry]) -> list[tuple[str, str]]:
    """Of ``git status --porcelain=v2 -uall``: the dirty paths that
    ``git stash push --include-untracked`` cannot set aside, with why.

    A stash saves the superproject only: changes inside a submodule (its
    files, its untracked files, or a checked-out commit other than the one
    recorded) stay in the work tree, and so does an untracked repository
    inside the tree (git lists it as ``dir/`` even with -uall).
    """
    out: list[tuple[str, str]] = []
    for e in entries:
        if e.kind in ("1", "u") and e.sub.startswith("S") and e.sub != "S...":
            why = [
                w
                for flag, w in zip(
                    e.sub[1:],
                    (
                        "a commit other than the one recorded",
                        "modified content",
                        "untracked content",
                    ),
                    strict=False,
                )
                if flag != "."
            ]
            out.append((e.path, "submodule: " + ", ".join(why)))
        elif e.kind in ("1", "u") and e.sub.startswith("S"):
            out.append((e.path, "submodule: a staged change"))
        elif e.kind == "?" and e.path.endswith("/"):
            out.append((e.path, "a git repository inside the work tree"))
    return out


def _prune_empty_dirs(d: Path, top: Path) -> None:
    while d != top and top in d.parents:
        try:
            d.rmdir()
        except OSError:
            return
        d = d.parent


def record_pass(data: DataRoot, repo: git.Repo, sha: str) -> bool:
    """A commit that passed the checks somewhere else (the merge queue landed
    it): remembered as passing, and refs/cmux/last-good moves there when it
    is ahead of where it was. Returns whether last-good moved."""
    from cmux.health.state import editing, mark_passed

    with editing(data) as st:
        mark_passed(st, sha)
        old = repo.verify(LAST_GOOD_REF)
        if old and old != sha and not repo.is_ancestor(old, sha):
            return False
        if old != sha:
            repo.set_ref(LAST_GOOD_REF, sha, "cmux: landed by the merge queue, checks passed")
        st.last_good, st.last_good_at = sha, time.time()
    return old != sha
