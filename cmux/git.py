"""The git gateway: the only module in cmux that runs git, on gitpython.

Invariants every git call here keeps, whoever asks:

- It runs as the person would have it for the project: in the person's
  umask (``cmux.umask.user_umask``), so files git writes get their usual
  modes.
- Its output is plain and machine-read: no pager (``GIT_PAGER=cat``), no
  prompt (``GIT_TERMINAL_PROMPT=0``), the C locale (``LC_ALL``/``LANGUAGE``),
  paths unquoted (``core.quotepath=off``) and kept byte for byte
  (surrogateescape).
- In an open repository it reads that repository's own index: an inherited
  ``GIT_INDEX_FILE`` (set when cmux runs inside a git hook) never sends it
  to another one.
- Every failure is a ``cmux.errors.GitError`` (``NotAGitRepo``,
  ``RefNotFound``) with git's words, never a gitpython exception.

gitpython costs about 100 ms to import (and runs ``git version`` as it
does), so it is imported on first use, inside this module: importing
``cmux.git`` is free, and a path that never touches git never pays.

Refs, commits and the work tree are read through git itself (gitpython's
command wrapper, ``repo.git.<cmd>``) rather than its object model: that
model reads ref files directly (no reftable, no locking) and reads objects
through long-lived ``git cat-file`` processes, which a daemon must not keep.
The object model serves for opening the repository: finding its git
directory (a linked worktree's own, for its index) and the work tree.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cmux.errors import GitError, NotAGitRepo, RefNotFound, UsageError
from cmux.umask import user_umask

if TYPE_CHECKING:
    import git as gitpython

_ENV = {"GIT_TERMINAL_PROMPT": "0", "GIT_PAGER": "cat", "LC_ALL": "C", "LANGUAGE": "C"}
_INSTALL = "install git: `sudo apt-get install git`"
_COMMIT_FORMAT = "--format=%H%x00%s%x00%ct"


@dataclass(frozen=True)
class Commit:
    sha: str
    subject: str
    when: float = 0.0  # committer time, seconds since the epoch

    @property
    def short(self) -> str:
        return self.sha[:10]


@dataclass(frozen=True)
class StatusEntry:
    """One line of ``git status --porcelain=v2``: ``kind`` is its first
    field (``1`` changed, ``2`` renamed, ``u`` unmerged, ``?`` untracked,
    ``!`` ignored), ``sub`` its submodule field (``N...`` when not one)."""

    kind: str
    path: str
    sub: str = "N..."


@dataclass(frozen=True)
class Worktree:
    path: Path
    head: str | None
    branch: str | None  # refs/heads/... or None when detached or bare
    bare: bool = False


# -- gitpython, on first use ---------------------------------------------------------


@functools.cache
def _gitpython() -> tuple[Any, type[gitpython.Repo], type[gitpython.Git]]:
    """gitpython, and its Repo and command wrapper with cmux's environment built in."""
    from cmux.sitepath import ensure

    ensure()  # tools/mailbox runs without site-packages until they are needed
    try:
        import git as gitpython
    except ImportError as exc:  # gitpython refuses to import without git
        raise GitError(f"git cannot be run: {exc}", _INSTALL) from None

    class Cmd(gitpython.Git):
        index_file: str | None = None

        def __init__(self, working_dir: Any = None) -> None:
            super().__init__(working_dir)
            self.update_environment(**_ENV)
            self.set_persistent_git_options(c="core.quotepath=off")

        def execute(self, *args: Any, **kwargs: Any) -> Any:
            kwargs.setdefault("umask", user_umask())
            if self.index_file is not None and "GIT_INDEX_FILE" in os.environ:
                kwargs["env"] = {**(kwargs.get("env") or {}), "GIT_INDEX_FILE": self.index_file}
            return super().execute(*args, **kwargs)

    class GitRepo(gitpython.Repo):
        GitCommandWrapperType = Cmd

        def __init__(self, path: str) -> None:
            super().__init__(path)
            assert isinstance(self.git, Cmd)
            self.git.index_file = os.path.join(self.git_dir, "index")

    return gitpython, GitRepo, Cmd


def _call(
    cmd: gitpython.Git,
    name: str,
    *args: str,
    input: bytes | None = None,
    config: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> tuple[int, str, str]:
    """Run ``git [-c config]... <name> <args>``: (exit status, stdout, stderr);
    ``env``: variables for this command only (GIT_SSH_COMMAND)."""
    gitpython = _gitpython()[0]
    kw: dict[str, Any] = {
        "with_extended_output": True,
        "with_exceptions": False,
        "stdout_as_string": False,
        "strip_newline_in_stdout": False,
    }
    if env:
        kw["env"] = env
    if config:
        cmd = cmd(c=list(config))  # for this one command only
    try:
        if input is None:
            status, out, err = getattr(cmd, name.replace("-", "_"))(*args, **kw)
        else:
            import tempfile  # only checkout_files feeds git a stdin

            with tempfile.TemporaryFile() as fh:
                fh.write(input)
                fh.seek(0)
                status, out, err = getattr(cmd, name.replace("-", "_"))(*args, istream=fh, **kw)
    except gitpython.GitCommandNotFound:
        raise GitError("git is not installed (or not on PATH)", _INSTALL) from None
    except OSError as exc:
        raise GitError(f"could not run git {name}: {exc}") from None
    text = out.decode("utf-8", "surrogateescape") if isinstance(out, bytes) else str(out or "")
    return status, text, str(err or "")


def _failure(name: str, args: tuple[str, ...], stderr: str, stdout: str) -> GitError:
    words = stderr.strip() or stdout.strip()
    what = " ".join((name, *args[:2]))
    hint = None
    if ".lock" in words and "exists" in words:
        hint = "another git command is running here; if none is, remove the .lock file it names"
    return GitError(f"git {what} failed: {words}", hint, stderr=stderr)


def _fields(line: str, n: int) -> list[str]:
    parts = line.split("\0")
    return (parts + [""] * n)[:n]


def _split_z(text: str) -> list[str]:
    return [p for p in text.split("\0") if p]


# -- without a repository ------------------------------------------------------------


def toplevel(path: Path) -> Path | None:
    """The top of the work tree ``path`` is in (as git prints it), or None."""
    if not Path(path).is_dir():
        return None
    _, _, cmd_type = _gitpython()
    status, out, _ = _call(cmd_type(str(path)), "rev-parse", "--show-toplevel")
    return Path(out.strip()) if status == 0 and out.strip() else None


def version() -> str | None:
    """What ``git --version`` says, or None when git cannot be run."""
    try:
        gitpython, _, cmd_type = _gitpython()
    except GitError:  # gitpython found no git to run
        return None
    try:
        return str(cmd_type().version(kill_after_timeout=10)).strip() or None
    except (gitpython.exc.GitError, OSError):  # gone since, not executable, hung
        return None


def init(path: Path) -> Repo:
    """``git init`` in ``path`` (which exists), and the new repository."""
    _, _, cmd_type = _gitpython()
    status, out, err = _call(cmd_type(str(path)), "init", "-q")
    if status != 0:
        raise _failure("init", ("-q",), err, out)
    return Repo(path)


def clone(url: str, path: Path, *, env: dict[str, str] | None = None) -> Repo:
    """``git clone url path`` (``path`` must not exist yet), and the clone.
    ``env`` carries GIT_SSH_COMMAND for a repository on another host."""
    _, _, cmd_type = _gitpython()
    args = ("-q", "--", url, str(path))
    status, out, err = _call(cmd_type(str(Path(path).parent)), "clone", *args, env=env)
    if status != 0:
        raise _failure("clone", (url,), err, out)
    return Repo(path)


# -- a repository --------------------------------------------------------------------


class Repo:
    """An open git repository (its work tree's top is ``top``).

    Queries answer "no" (None, False, empty) where git says no; everything
    else raises GitError with git's words.
    """

    def __init__(self, path: Path) -> None:
        top = toplevel(Path(path))
        if top is None:
            raise NotAGitRepo(
                f"{Path(path).resolve()} is not in a git repository",
                "`git init` there and commit once",
            )
        gitpython, repo_type, _ = _gitpython()
        try:
            self._repo = repo_type(str(top))
        except (gitpython.InvalidGitRepositoryError, gitpython.NoSuchPathError) as exc:
            raise NotAGitRepo(f"{top} is not a git repository: {exc}") from None
        self.top = top.resolve()

    def close(self) -> None:
        self._repo.close()

    def _run(
        self,
        name: str,
        *args: str,
        check: bool = True,
        input: bytes | None = None,
        config: tuple[str, ...] = (),
    ) -> str:
        status, out, err = _call(self._repo.git, name, *args, input=input, config=config)
        if check and status != 0:
            raise _failure(name, args, err, out)
        return out

    # -- commits and refs ------------------------------------------------------------

    def verify(self, ref: str) -> str | None:
        """The commit ``ref`` names, or None (also for no such ref)."""
        out = self._run("rev-parse", "-q", "--verify", f"{ref}^{{commit}}", check=False)
        return out.strip() or None

    def head(self) -> str | None:
        """HEAD's commit; None before the first commit."""
        return self.verify("HEAD")

    def resolve(self, ref: str) -> str:
        """The commit ``ref`` names; raises RefNotFound, or UsageError for a
        name git would read as an option."""
        if not ref or ref.startswith("-"):
            raise UsageError(f"{ref!r} is not a commit")
        sha = self.verify(ref)
        if not sha:
            raise RefNotFound(
                f"{ref!r} is not a commit in {self.top}", "see `git log --oneline`", ref=ref
            )
        return sha

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        """True when ``ancestor`` is ``descendant`` or behind it; False also
        when either is not a commit."""
        status, _, _ = _call(self._repo.git, "merge-base", "--is-ancestor", ancestor, descendant)
        return status == 0

    def commit(self, sha: str) -> Commit:
        out = self._run("log", "-1", _COMMIT_FORMAT, sha, "--")
        h, subject, ct = _fields(out.rstrip("\n"), 3)
        return Commit(h, subject, float(ct or 0))

    def commits_between(self, base: str, tip: str, limit: int = 500) -> list[Commit]:
        """Commits reachable from ``tip`` and not from ``base``, newest first."""
        out = self._run("log", f"--max-count={limit}", _COMMIT_FORMAT, f"{base}..{tip}", "--")
        commits = []
        for line in out.splitlines():
            h, subject, ct = _fields(line, 3)
            commits.append(Commit(h, subject, float(ct or 0)))
        return commits

    def rev_list(
        self,
        *revs: str,
        first_parent: bool = False,
        ancestry_path: bool = False,
        topo_order: bool = False,
        limit: int | None = None,
    ) -> list[str]:
        """``git rev-list`` of ``revs`` with those options; [] when git refuses."""
        opts = [
            *(["--first-parent"] if first_parent else []),
            *(["--ancestry-path"] if ancestry_path else []),
            *(["--topo-order"] if topo_order else []),
            *([f"--max-count={limit}"] if limit is not None else []),
        ]
        return self._run("rev-list", *opts, *revs, check=False).split()

    def count(self, tip: str, excluding: Iterable[str] = ()) -> int:
        """Commits reachable from ``tip`` and from none of ``excluding``."""
        out = self._run("rev-list", "--count", tip, "--not", *excluding)
        return int(out.strip() or 0)

    def refs(self, prefix: str) -> dict[str, str]:
        """Every ref under ``prefix`` (a folder such as ``refs/cmux/``, or one
        full name): full name -> object."""
        out = self._run("for-each-ref", "--format=%(refname)%00%(objectname)", prefix)
        pairs = (_fields(line, 2) for line in out.splitlines())
        return {name: sha for name, sha in pairs}

    def branches(self, prefix: str = "") -> dict[str, str]:
        """Local branches under ``prefix`` (a folder such as ``cmux/rescue/``):
        name -> commit."""
        return {
            name.removeprefix("refs/heads/"): sha
            for name, sha in self.refs("refs/heads/" + prefix).items()
        }

    def branch_exists(self, name: str) -> bool:
        return bool(self._run("rev-parse", "-q", "--verify", f"refs/heads/{name}", check=False))

    def create_branch(self, name: str, at: str) -> None:
        self._run("branch", name, at)

    def delete_branch(self, name: str) -> None:
        """``git branch -D``: deleted whether merged or not."""
        self._run("branch", "-D", name)

    def set_ref(self, ref: str, sha: str, message: str) -> None:
        self._run("update-ref", "-m", message, ref, sha)

    def delete_ref(self, ref: str) -> None:
        self._run("update-ref", "-d", ref)

    # -- configuration and paths -----------------------------------------------------

    def config(self, key: str) -> str:
        """The value of ``key``; "" when unset."""
        return self._run("config", key, check=False).strip()

    def git_path(self, name: str) -> Path:
        """Where git keeps ``name`` (``git rev-parse --git-path``), absolute."""
        path = Path(self._run("rev-parse", "--git-path", name).strip())
        return path if path.is_absolute() else self.top / path

    def tracked(self, rel: str) -> bool:
        """Is the path ``rel`` (relative to the top, taken literally) in the index?"""
        return bool(self._run("ls-files", "-z", "--", f":(literal){rel}", check=False).strip())

    def ignored(self, paths: Iterable[str]) -> set[str]:
        """Which of ``paths`` (relative to the top) git ignores."""
        paths = list(paths)
        if not paths:
            return set()
        return set(self._run("check-ignore", "--", *paths, check=False).splitlines())

    # -- the work tree ---------------------------------------------------------------

    def dirty_paths(self, *pathspec: str) -> list[str]:
        """Changed, staged, deleted and untracked paths (every untracked file,
        no renames) within ``pathspec``."""
        out = self._run("status", "--porcelain", "-z", "-uall", "--no-renames", "--", *pathspec)
        return [entry[3:] for entry in _split_z(out)]

    def status_entries(self, *pathspec: str) -> list[StatusEntry]:
        """``git status --porcelain=v2 -uall --no-renames`` within ``pathspec``.

        An untracked directory git does not enter (another repository)
        keeps its trailing ``/``."""
        out = self._run("status", "--porcelain=v2", "-z", "-uall", "--no-renames", "--", *pathspec)
        entries: list[StatusEntry] = []
        fields = out.split("\0")
        i = 0
        while i < len(fields):
            entry = fields[i]
            i += 1
            if entry.startswith(("1 ", "2 ", "u ")):
                parts = entry.split(" ", {"1": 8, "2": 9, "u": 10}[entry[0]])
                entries.append(StatusEntry(entry[0], parts[-1], parts[2]))
                if entry[0] == "2":
                    i += 1  # a rename's original path follows
            elif entry.startswith(("? ", "! ")):
                entries.append(StatusEntry(entry[0], entry[2:]))
        return entries

    def has_changes(self) -> bool:
        """Anything ``git status`` (with the person's settings) would show."""
        return bool(self._run("status", "--porcelain", check=False).strip())

    def changes(self, old: str, new: str, *pathspec: str) -> list[tuple[str, str]]:
        """(status letter, path) of each file that differs between two commits."""
        out = self._run("diff", "--name-status", "-z", "--no-renames", old, new, "--", *pathspec)
        parts = _split_z(out)
        return list(zip(parts[0::2], parts[1::2], strict=False))

    def reset(self, target: str) -> None:
        """HEAD and the index to ``target``; the work tree is left alone."""
        self._run("reset", "-q", target)

    def checkout_files(self, paths: list[str]) -> None:
        """Write ``paths`` from the index into the work tree, over what is there."""
        data = "\0".join(paths).encode("utf-8", "surrogateescape")
        self._run("checkout-index", "-f", "-z", "--stdin", input=data)

    def refresh_index(self) -> None:
        self._run("update-index", "-q", "--refresh", check=False)

    def commit_empty(self, message: str, identity: tuple[str, str]) -> None:
        """A commit with no changes, by ``identity`` (name, email)."""
        name, email = identity
        config = (f"user.name={name}", f"user.email={email}")
        self._run("commit", "-q", "--allow-empty", "-m", message, config=config)

    def commit_files(self, paths: Iterable[str], message: str, identity: tuple[str, str]) -> str:
        """Add ``paths`` (relative to the top) and commit them, and only them;
        the commit is by ``identity`` when the person has none set. Returns it."""
        paths = list(paths)
        lend: tuple[str, ...] = ()
        if not (self.config("user.email") and self.config("user.name")):
            lend = (f"user.name={identity[0]}", f"user.email={identity[1]}")
        self._run("add", "--", *paths)
        self._run("commit", "-q", "-m", message, "--", *paths, config=lend)
        return self.resolve("HEAD")

    # -- stashes ---------------------------------------------------------------------

    def stash_push(self, message: str, *pathspec: str, identity: tuple[str, str]) -> None:
        """``git stash push --include-untracked`` within ``pathspec``; the
        stash commits are made by ``identity`` when the person has none set."""
        lend: tuple[str, ...] = ()
        if not (self.config("user.email") and self.config("user.name")):
            lend = (f"user.name={identity[0]}", f"user.email={identity[1]}")
        self._run(
            "stash", "push", "--include-untracked", "-m", message, "--", *pathspec, config=lend
        )

    def stashes(self) -> list[tuple[str, str]]:
        """(commit, subject) of each stash, newest first."""
        out = self._run("stash", "list", "--format=%H%x00%s", check=False)
        return [(sha, subject) for sha, subject in (_fields(ln, 2) for ln in out.splitlines())]

    def stash_apply(self, sha: str) -> bool:
        """Apply a stash, index too; False (and git's own cleanup) when it
        does not apply."""
        try:
            self._run("stash", "apply", "--index", "-q", sha)
        except GitError:
            return False
        return True

    def stash_drop(self, sha: str) -> None:
        """Drop the stash entry whose commit is ``sha`` (if it is one)."""
        entries = [s for s, _ in self.stashes()]
        if sha in entries:
            self._run("stash", "drop", "-q", f"stash@{{{entries.index(sha)}}}")

    # -- merging (the merge queue's scratch worktree) ----------------------------------

    def current_branch(self) -> str | None:
        """The branch checked out here (``main``), or None when HEAD is detached."""
        out = self._run("symbolic-ref", "-q", "--short", "HEAD", check=False)
        return out.strip() or None

    def merge_base(self, a: str, b: str) -> str | None:
        out = self._run("merge-base", a, b, check=False)
        return out.strip() or None

    def _lend(self, identity: tuple[str, str]) -> tuple[str, ...]:
        """``-c user.name/user.email`` for a commit, when the person set none."""
        if self.config("user.email") and self.config("user.name"):
            return ()
        return (f"user.name={identity[0]}", f"user.email={identity[1]}")

    def checkout_detached(self, sha: str) -> None:
        """The work tree and index exactly at ``sha`` (detached), whatever was
        there: changes, a half merge or rebase, untracked files (not ignored ones)."""
        gitdir = Path(self._repo.git_dir)
        if (gitdir / "rebase-merge").exists() or (gitdir / "rebase-apply").exists():
            self._run("rebase", "--abort", check=False)
        if (gitdir / "MERGE_HEAD").exists():
            self._run("merge", "--abort", check=False)
        self._run("checkout", "-q", "--force", "--detach", sha)
        self._run("clean", "-q", "-ffd")

    def conflicted(self) -> list[str]:
        """The paths left unmerged by a merge or rebase that stopped."""
        out = self._run("diff", "--name-only", "-z", "--diff-filter=U", check=False)
        return sorted(set(_split_z(out)))

    def merge_commit(self, rev: str, message: str, identity: tuple[str, str]) -> list[str]:
        """Merge ``rev`` into the (detached) HEAD as a merge commit. Returns
        the conflicting paths, having undone the merge, or [] when HEAD is the
        merge now (or ``rev`` was in it already)."""
        status, out, err = _call(
            self._repo.git,
            "merge",
            "-q",
            "--no-ff",
            "--no-edit",
            "-m",
            message,
            rev,
            config=self._lend(identity),
        )
        if status == 0:
            return []
        paths = self.conflicted()
        self._run("merge", "--abort", check=False)
        if not paths:
            raise _failure("merge", (rev,), err, out)
        return paths

    def squash_commit(self, rev: str, message: str, identity: tuple[str, str]) -> list[str]:
        """``rev``'s changes as one new commit on the (detached) HEAD; the
        conflicting paths (undone) or []."""
        status, out, err = _call(self._repo.git, "merge", "-q", "--squash", rev)
        if status != 0:
            paths = self.conflicted()
            self._run("reset", "-q", "--hard", "HEAD")
            if not paths:
                raise _failure("merge", ("--squash", rev), err, out)
            return paths
        if not self._run("diff", "--cached", "--name-only", check=False).strip():
            return []  # nothing to add: rev's changes are all there already
        self._run("commit", "-q", "--no-verify", "-m", message, config=self._lend(identity))
        return []

    def rebase_onto(self, onto: str, rev: str, identity: tuple[str, str]) -> list[str]:
        """The commits of ``rev`` not in ``onto`` replayed on ``onto``, HEAD
        (detached) at the result; the conflicting paths (undone) or []."""
        self._run("checkout", "-q", "--force", "--detach", rev)
        status, out, err = _call(self._repo.git, "rebase", "-q", onto, config=self._lend(identity))
        if status == 0:
            return []
        paths = self.conflicted()
        self._run("rebase", "--abort", check=False)
        if not paths:
            raise _failure("rebase", (onto,), err, out)
        return paths

    def move_ref(self, ref: str, new: str, old: str, message: str) -> bool:
        """Point ``ref`` at ``new`` only if it still points at ``old``; False
        (nothing changed) when it does not."""
        status, _, _ = _call(self._repo.git, "update-ref", "-m", message, ref, new, old)
        return status == 0

    def fast_forward(self, sha: str) -> tuple[bool, str]:
        """``git merge --ff-only sha`` in this work tree: (True, "") when HEAD
        is at ``sha`` now, else (False, git's words); git never overwrites
        uncommitted work, so a refusal changed nothing."""
        status, out, err = _call(self._repo.git, "merge", "-q", "--ff-only", sha)
        return status == 0, (err.strip() or out.strip())

    # -- worktrees -------------------------------------------------------------------

    def switch_new(self, branch: str, start: str) -> None:
        """Check out the new branch ``branch`` made at ``start``."""
        self._run("checkout", "-q", "-b", branch, start)

    def remote_ref(self, url: str, ref: str, *, env: dict[str, str] | None = None) -> str | None:
        """The commit ``ref`` names in the repository at ``url`` (None: no such ref)."""
        status, out, err = _call(self._repo.git, "ls-remote", url, ref, env=env)
        if status != 0:
            raise _failure("ls-remote", (url, ref), err, out)
        for line in out.splitlines():
            sha, _, name = line.partition("\t")
            if name == ref:
                return sha
        return None

    def push(self, url: str, refspec: str, *, env: dict[str, str] | None = None) -> None:
        """``git push url refspec`` (never forced: a rejected push raises)."""
        status, out, err = _call(self._repo.git, "push", "-q", url, refspec, env=env)
        if status != 0:
            raise _failure("push", (url, refspec), err, out)

    def worktree_add(self, path: Path, branch: str, start: str = "HEAD") -> None:
        """A new worktree at ``path`` on a new branch ``branch`` from ``start``."""
        self._run("worktree", "add", "-q", "-b", branch, str(path), start)

    def worktree_remove(self, path: Path) -> None:
        """Remove the worktree at ``path``, changes and all."""
        self._run("worktree", "remove", "--force", str(path))

    def worktree_add_detached(self, path: Path, start: str) -> None:
        """A new worktree at ``path``, HEAD detached at ``start``."""
        self._run("worktree", "add", "-q", "--force", "--detach", str(path), start)

    def worktree_prune(self) -> None:
        self._run("worktree", "prune")

    def worktrees(self) -> list[Worktree]:
        """Every worktree of the repository, the main one first."""
        out = self._run("worktree", "list", "--porcelain")
        found: list[Worktree] = []
        for block in out.split("\n\n"):
            lines = dict(([*ln.split(" ", 1), ""])[:2] for ln in block.splitlines() if ln)
            if "worktree" in lines:
                found.append(
                    Worktree(
                        Path(lines["worktree"]),
                        lines.get("HEAD") or None,
                        lines.get("branch") or None,
                        "bare" in lines,
                    )
                )
        return found
