"""The git gateway on real repositories: the environment every call keeps,
its typed errors, and that importing it costs nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cmux import git as gw
from cmux.errors import GitError, NotAGitRepo, RefNotFound, UsageError
from tests.helpers import REPO, git, make_repo


@pytest.fixture
def repo(tmp_path: Path) -> gw.Repo:
    return gw.Repo(make_repo(tmp_path / "proj"))


@pytest.fixture
def private_umask(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This process under umask 077, the person's 022 kept for children (as cmux runs)."""
    monkeypatch.setenv("CMUX_USER_UMASK", "022")
    old = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(old)


def test_importing_the_gateway_and_its_users_does_not_import_gitpython() -> None:
    code = (
        "import sys, cmux.git, cmux.health.rollback, cmux.agents.worktrees, cmux.project;"
        "print('git' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"


def test_files_git_writes_get_the_persons_umask(
    repo: gw.Repo, tmp_path: Path, private_umask: None
) -> None:
    wt = tmp_path / "wt"
    repo.worktree_add(wt, "cmux/wt")
    assert (wt / "README.md").stat().st_mode & 0o777 == 0o644
    (repo.top / "README.md").unlink()
    repo.checkout_files(["README.md"])
    assert (repo.top / "README.md").stat().st_mode & 0o777 == 0o644


def test_an_inherited_index_file_is_not_used(
    repo: gw.Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (repo.top / "new.txt").write_text("x\n")
    git(repo.top, "add", "new.txt")
    monkeypatch.setenv("GIT_INDEX_FILE", str(tmp_path / "someone-elses-index"))
    entries = repo.status_entries()
    assert [(e.kind, e.path) for e in entries] == [("1", "new.txt")]
    assert not (tmp_path / "someone-elses-index").exists()


def test_paths_are_kept_byte_for_byte(repo: gw.Repo) -> None:
    name = os.fsdecode(b"caf\xe9 \xff.txt")  # not UTF-8: surrogate escapes
    (repo.top / name).write_text("x\n")
    git(repo.top, "add", "--", name)
    git(repo.top, "commit", "-q", "-m", "odd name")
    assert repo.tracked(name)
    (repo.top / name).unlink()
    assert repo.dirty_paths() == [name]
    repo.checkout_files([name])
    assert (repo.top / name).read_text() == "x\n"


def test_refs_commits_and_branches(repo: gw.Repo) -> None:
    head = repo.head()
    assert head and repo.resolve("HEAD") == head
    assert repo.commit(head).subject == "initial"
    repo.set_ref("refs/cmux/x", head, "test")
    assert repo.refs("refs/cmux/") == {"refs/cmux/x": head}
    repo.create_branch("cmux/rescue/1", head)
    assert repo.branches("cmux/rescue/") == {"cmux/rescue/1": head}
    assert repo.count("refs/heads/cmux/rescue/1", excluding=["refs/heads/main"]) == 0
    assert repo.is_ancestor(head, head) and not repo.is_ancestor("nope", head)
    repo.delete_branch("cmux/rescue/1")
    repo.delete_ref("refs/cmux/x")
    assert repo.refs("refs/cmux/") == {} and not repo.branch_exists("cmux/rescue/1")


def test_failures_are_typed_errors_with_gits_words(repo: gw.Repo, tmp_path: Path) -> None:
    with pytest.raises(RefNotFound) as info:
        repo.resolve("no-such-ref")
    assert info.value.ref == "no-such-ref" and isinstance(info.value, GitError)
    with pytest.raises(UsageError):
        repo.resolve("--all")
    with pytest.raises(GitError) as failed:
        repo.create_branch("main", "HEAD")
    assert "already exists" in failed.value.stderr and "git branch main" in str(failed.value)
    (tmp_path / "plain").mkdir()
    with pytest.raises(NotAGitRepo):
        gw.Repo(tmp_path / "plain")
    assert gw.toplevel(tmp_path / "plain") is None
    assert gw.toplevel(tmp_path / "missing") is None


def test_a_held_lock_says_what_to_do(repo: gw.Repo) -> None:
    (repo.top / ".git" / "index.lock").write_text("")
    with pytest.raises(GitError) as info:
        repo.reset("HEAD")
    assert info.value.hint and ".lock" in info.value.hint


def test_worktrees_are_added_listed_and_removed(repo: gw.Repo, tmp_path: Path) -> None:
    wt = tmp_path / "wt"
    repo.worktree_add(wt, "cmux/wt")
    listed = {w.path.resolve(): w for w in repo.worktrees()}
    assert listed[wt.resolve()].branch == "refs/heads/cmux/wt"
    assert listed[repo.top].branch == "refs/heads/main"
    (wt / "new").write_text("x\n")
    assert gw.Repo(wt).has_changes() and not repo.has_changes()
    repo.worktree_remove(wt)
    repo.worktree_prune()
    assert [w.path.resolve() for w in repo.worktrees()] == [repo.top]


def test_a_stash_with_untracked_files_is_found_applied_and_dropped(repo: gw.Repo) -> None:
    (repo.top / "wip").write_text("wip\n")
    repo.stash_push("cmux test stash", ".", identity=("cmux", "cmux@localhost"))
    assert not (repo.top / "wip").exists()
    ((sha, subject),) = repo.stashes()
    assert subject.endswith("cmux test stash")
    assert repo.stash_apply(sha) and (repo.top / "wip").read_text() == "wip\n"
    repo.stash_drop(sha)
    assert repo.stashes() == []


def test_init_and_version(tmp_path: Path) -> None:
    (tmp_path / "new").mkdir()
    r = gw.init(tmp_path / "new")
    assert r.head() is None
    r.commit_empty("first", ("cmux demo", "demo@cmux.invalid"))
    assert r.head() and r.commit(r.head() or "").subject == "first"
    assert (gw.version() or "").startswith("git version")


def test_commit_files_commits_only_those_paths(repo: gw.Repo) -> None:
    (repo.top / "notes").mkdir()
    (repo.top / "notes" / "a.md").write_text("# a\n")
    (repo.top / "other.txt").write_text("not this one\n")
    before = repo.head()
    sha = repo.commit_files(["notes/a.md"], "a note", ("cmux demo", "demo@cmux.invalid"))
    assert sha == repo.head() != before
    assert repo.commit(sha).subject == "a note"
    assert git(repo.top, "show", "--name-only", "--format=", sha).split() == ["notes/a.md"]
    assert repo.dirty_paths() == ["other.txt"]
