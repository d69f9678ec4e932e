"""`cmux rollback` in a project with a real submodule (or a repository inside
the tree): a refusal changes nothing, byte for byte, and a rollback that
goes ahead says what it saved and where."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import Project, git, make_repo
from tests.unit.test_rollback import snapshot


def with_submodule(project: Project, tmp_path: Path) -> Path:
    lib = make_repo(tmp_path / "lib")
    (lib / "lib.txt").write_text("v1\n")
    git(lib, "add", "lib.txt")
    git(lib, "commit", "-q", "-m", "lib v1")
    root = project.root
    git(root, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(lib), "lib")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "add lib as a submodule, and cmux")
    (root / "app.txt").write_text("app v1\n")
    git(root, "add", "app.txt")
    git(root, "commit", "-q", "-m", "app v1")
    return root / "lib"


def make_dirty(root: Path) -> None:
    (root / "README.md").write_text("# changed, not staged\n")
    (root / "app.txt").write_text("app v2, staged\n")
    git(root, "add", "app.txt")
    (root / "notes.txt").write_text("untracked\n")


def git_state(root: Path) -> dict[str, str]:
    return {
        "head": git(root, "rev-parse", "HEAD"),
        "index": git(root, "ls-files", "-s", "--debug"),
        "stashes": git(root, "stash", "list"),
        "branches": git(root, "branch", "--list", "-a"),
        "refs": git(root, "for-each-ref"),
        "status": git(root, "status", "--porcelain=v2", "-uall"),
        "lib": git(root / "lib", "status", "--porcelain=v2", "-uall")
        if (root / "lib" / ".git").exists()
        else "",
    }


def submodule_edited(lib: Path) -> str:
    with open(lib / "lib.txt", "a") as fh:
        fh.write("edited inside the submodule\n")
    return "lib (submodule: modified content)"


def submodule_untracked(lib: Path) -> str:
    (lib / "new-in-lib.txt").write_text("new\n")
    return "lib (submodule: untracked content)"


def submodule_moved(lib: Path) -> str:
    (lib / "lib.txt").write_text("v2\n")
    git(lib, "commit", "-q", "-am", "lib v2, not recorded in the project")
    return "lib (submodule: a commit other than the one recorded)"


def nested_repository(lib: Path) -> str:
    make_repo(lib.parent / "vendor" / "tool")
    return "vendor/tool/ (a git repository inside the work tree)"


@pytest.mark.parametrize(
    "mess", [submodule_edited, submodule_untracked, submodule_moved, nested_repository]
)
def test_a_rollback_that_cannot_save_everything_changes_nothing(
    project: Project, tmp_path: Path, mess: object
) -> None:
    lib = with_submodule(project, tmp_path)
    root = project.root
    make_dirty(root)
    words = mess(lib)  # type: ignore[operator]
    files, state = snapshot(root), git_state(root)

    for extra in ((), ("--json",)):
        r = project.cmux("rollback", "--to", "HEAD~1", "-y", *extra)
        assert r.code == 1, (r.out, r.err)
        assert "Traceback" not in r.err
        assert "cannot roll back" in r.err and words in r.err and "nothing was changed" in r.err
        assert snapshot(root) == files, "the work tree changed"
        assert git_state(root) == state, "git's state changed"
    assert not list((project.data / "state" / "rescues").glob("*.json"))


def test_once_the_submodule_is_clean_the_rollback_goes_ahead_and_says_what_it_saved(
    project: Project, tmp_path: Path
) -> None:
    lib = with_submodule(project, tmp_path)
    root = project.root
    make_dirty(root)
    submodule_edited(lib)
    assert project.cmux("rollback", "--to", "HEAD~1", "-y").code == 1
    git(lib, "stash", "-q")  # what the hint says: deal with the submodule's work there

    r = project.ok("rollback", "--to", "HEAD~1", "-y")
    stash = git(root, "rev-parse", "refs/stash").strip()
    assert f"uncommitted work: stash {stash[:10]}" in r.out and "refs/cmux/rescue-stash/" in r.out
    assert "branch cmux/rescue/" in r.out
    saved = git(root, "stash", "show", "--include-untracked", "--name-only", stash).split()
    assert set(saved) == {"README.md", "app.txt", "notes.txt"}
    assert not (root / "notes.txt").exists()
    assert not (root / "app.txt").exists()  # HEAD~1 had no app.txt
