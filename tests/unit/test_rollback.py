"""Rollback on real git repositories: everything saved, byte for byte, and
cmux's own files never touched."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from cmux.errors import GitError, UsageError
from cmux.health import rescues
from cmux.health import rollback as rb
from cmux.paths import DataRoot
from tests.helpers import git, make_repo


def snapshot(root: Path, skip: tuple[str, ...] = (".git", ".cmux")) -> dict[str, object]:
    """Every file under ``root`` (but .git and the data root): bytes, mode, links."""
    out: dict[str, object] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root)
        dirnames[:] = [d for d in dirnames if (rel_dir / d).as_posix() not in skip]
        for name in filenames + [d for d in dirnames if (Path(dirpath) / d).is_symlink()]:
            p = Path(dirpath) / name
            rel = (rel_dir / name).as_posix()
            if rel in skip:
                continue
            if p.is_symlink():
                out[rel] = ("link", os.readlink(p))
            else:
                out[rel] = (p.stat().st_mode & 0o111 != 0, p.read_bytes())
    return out


def commit(root: Path, message: str, files: dict[str, bytes | str | None]) -> str:
    for name, content in files.items():
        p = root / name
        if content is None:
            git(root, "rm", "-q", "--", name)
            continue
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content.encode() if isinstance(content, str) else content)
        git(root, "add", "--", name)
    git(root, "commit", "-q", "-m", message)
    return git(root, "rev-parse", "HEAD").strip()


def sh(root: Path, command: str) -> None:
    subprocess.run(command, shell=True, cwd=root, check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path: Path) -> rb.Repo:
    root = make_repo(tmp_path / "proj")
    data = DataRoot(root / ".cmux")
    data.ensure()
    return rb.Repo(root, data)


def make_mess(root: Path) -> None:
    """Every kind of uncommitted change git knows."""
    (root / "src").mkdir(exist_ok=True)
    (root / "src" / "both.py").write_text("staged\n")
    git(root, "add", "src/both.py")
    (root / "src" / "both.py").write_text("staged\nthen unstaged\n")
    (root / "doomed.txt").unlink()
    (root / "blob.bin").write_bytes(bytes(range(256)) * 3)
    os.chmod(root / "tool.sh", 0o755)
    (root / "new" / "deep").mkdir(parents=True)
    (root / "new" / "deep" / "file with spaces é.txt").write_text("untracked ünïcode\n")
    (root / "empty").write_bytes(b"")
    git(root, "add", "empty")
    os.symlink("README.md", root / "link-to-readme")
    (root / "no-newline").write_bytes(b"last line without newline")


def base_commits(root: Path) -> tuple[str, str]:
    good = commit(
        root,
        "good",
        {
            "src/both.py": "v1\n",
            "doomed.txt": "will be deleted\n",
            "blob.bin": b"\x00\x01\x02",
            "tool.sh": "#!/bin/sh\n",
        },
    )
    bad = commit(root, "bad", {"src/both.py": "v2\n", "BROKEN": "yes\n", "src/new.py": "x = 1\n"})
    return good, bad


def test_rollback_saves_everything_and_restores_byte_for_byte(repo: rb.Repo) -> None:
    root = repo.top
    good, bad = base_commits(root)
    make_mess(root)
    before = snapshot(root)
    index_before = git(root, "ls-files", "-s")
    status_before = git(root, "status", "--porcelain")

    rescue = repo.rollback(good, reason="test", auto=True)

    assert repo.head() == good
    assert repo.dirty() == []
    assert not (root / "BROKEN").exists() and not (root / "src" / "new.py").exists()
    assert (root / "src" / "both.py").read_text() == "v1\n"
    assert git(root, "rev-parse", rescue.branch).strip() == bad
    assert rescue.branch.startswith("cmux/rescue/")
    assert [c["subject"] for c in rescue.undone] == ["bad"]
    assert rescue.stash and git(root, "rev-parse", rescue.stash_ref or "").strip() == rescue.stash
    assert rescue.id in git(root, "log", "-1", "--format=%s", rescue.stash)
    assert rescue.branch in git(root, "stash", "list")
    assert rescue.status == "done"
    assert set(rescue.files) >= {"src/both.py", "doomed.txt", "new/deep/file with spaces é.txt"}

    # Bring it back exactly as `cmux rescue list` says.
    restore = dict(rescue.commands())["put it back, on the commit it was made on"]
    sh(root, restore)
    assert snapshot(root) == before
    assert git(root, "ls-files", "-s") == index_before
    assert git(root, "status", "--porcelain") == status_before


def test_a_clean_tree_needs_no_stash(repo: rb.Repo) -> None:
    good, bad = base_commits(repo.top)
    rescue = repo.rollback(good, reason="test", auto=True)
    assert rescue.stash is None and rescue.files == []
    assert git(repo.top, "rev-parse", rescue.branch).strip() == bad
    assert "git merge " + rescue.branch in [c for _, c in rescue.commands()]
    assert git(repo.top, "stash", "list") == ""


def test_the_data_root_and_an_uncommitted_config_are_never_touched(repo: rb.Repo) -> None:
    root = repo.top
    good, _ = base_commits(root)
    # No .gitignore at all: the data root is fenced off by cmux itself.
    data = repo.data
    mail = data.mailbox("human") / "new" / "0001.json"
    mail.parent.mkdir(parents=True)
    mail.write_text('{"body": "keep me"}\n')
    day = data.journal_dir / "2030-01-01.md"
    day.write_text("## 10:00 cmux: something worth remembering\n")
    (root / "cmux.toml").write_text("[health]\n")
    (root / "scratch.txt").write_text("work in progress\n")
    mail_before = snapshot(data.mailbox_dir, skip=())
    journal_before = snapshot(data.journal_dir, skip=())

    rescue = repo.rollback(good, reason="test", auto=True)

    assert snapshot(data.mailbox_dir, skip=()) == mail_before
    assert snapshot(data.journal_dir, skip=()) == journal_before
    assert rescues.rescue_file(data, rescue.id).exists()
    assert (root / "cmux.toml").read_text() == "[health]\n"
    assert not (root / "scratch.txt").exists()
    stashed = git(root, "show", "--name-only", "--format=", f"{rescue.stash}^3").split()
    assert stashed == ["scratch.txt"]
    # The data root is now ignored through .git/info/exclude.
    assert "/.cmux/" in (root / ".git" / "info" / "exclude").read_text()
    assert git(root, "status", "--porcelain", "--ignored").count(".cmux") == 1


def test_a_data_root_shared_with_the_project(tmp_path: Path) -> None:
    """cmux run on itself keeps mailbox/ and journal/ at the top, tracked."""
    root = make_repo(tmp_path / "self")
    data = DataRoot(root)
    (root / ".gitignore").write_text("/state/\n")
    good = commit(
        root,
        "good",
        {
            ".gitignore": "/state/\n",
            "journal/2030-01-01.md": "## first\n",
            "mailbox/README.md": "protocol\n",
            "code.py": "good = True\n",
        },
    )
    commit(root, "bad", {"journal/2030-01-01.md": "## first\n## second\n", "code.py": "bad\n"})
    data.ensure()
    with open(root / "journal/2030-01-01.md", "a") as fh:
        fh.write("## third, not committed yet\n")
    (data.mailbox("w1") / "new").mkdir(parents=True)
    (data.mailbox("w1") / "new" / "m.json").write_text("{}")
    journal_before = (root / "journal/2030-01-01.md").read_bytes()

    repo = rb.Repo(root, data)
    assert "journal" in repo.protected() and "mailbox" in repo.protected()
    rescue = repo.rollback(good, reason="test", auto=True)

    assert (root / "code.py").read_text() == "good = True\n"
    assert (root / "journal/2030-01-01.md").read_bytes() == journal_before
    assert (data.mailbox("w1") / "new" / "m.json").exists()
    assert rescue.stash is None  # the only dirty file was the journal, which is cmux's
    assert repo.dirty() == []


def test_an_ignored_file_in_the_way_is_copied_aside(repo: rb.Repo) -> None:
    root = repo.top
    old = commit(root, "tracked config", {"local.cfg": "from git\n"})
    git(root, "rm", "-q", "--cached", "local.cfg")
    (root / ".gitignore").write_text("local.cfg\n")
    git(root, "add", ".gitignore")
    git(root, "commit", "-q", "-m", "ignore local.cfg")
    (root / "local.cfg").write_text("my own secret settings\n")

    rescue = repo.rollback(old, reason="test", auto=True)

    assert (root / "local.cfg").read_text() == "from git\n"
    assert rescue.overwritten == ["local.cfg"]
    kept = rescues.rescue_dir(repo.data, rescue.id) / "overwritten" / "local.cfg"
    assert kept.read_text() == "my own secret settings\n"


def test_nearest_passed_never_skips_a_good_commit(repo: rb.Repo) -> None:
    root = repo.top
    g1 = commit(root, "g1", {"a": "1"})
    g2 = commit(root, "g2", {"a": "2"})
    commit(root, "b1", {"a": "3"})
    b2 = commit(root, "b2", {"a": "4"})
    assert repo.nearest_passed([g1, g2]) == g2
    assert repo.nearest_passed([g1]) == g1
    assert repo.nearest_passed([]) is None
    # A commit that passed on another line of history is never a target.
    git(root, "switch", "-q", "-c", "side", g1)
    side = commit(root, "side", {"b": "1"})
    git(root, "switch", "-q", "main")
    assert repo.nearest_passed([side]) is None
    # Through a merge: the newest passed ancestor, children before parents.
    git(root, "merge", "-q", "--no-edit", "side")
    assert repo.nearest_passed([g1, side, b2]) == b2
    repo.set_last_good(g2)
    assert repo.last_good() == g2
    assert repo.nearest_passed([]) == g2


def test_a_good_commit_merged_in_from_a_side_branch_is_not_skipped(repo: rb.Repo) -> None:
    root = repo.top
    f = commit(root, "f", {"a": "1"})
    git(root, "switch", "-q", "-c", "side")
    x = commit(root, "x on side", {"b": "1"})
    git(root, "switch", "-q", "main")
    commit(root, "main moves on", {"c": "1"})
    git(root, "merge", "-q", "--no-edit", "side")
    # f is on HEAD's first-parent line, but x (which passed) descends from it.
    assert repo.nearest_passed([f, x]) == x


def test_plan_checks_the_target(repo: rb.Repo) -> None:
    root = repo.top
    g = commit(root, "g", {"a": "1"})
    b = commit(root, "b", {"a": "2"})
    with pytest.raises(UsageError, match="no commit has passed"):
        rb.plan(repo, [])
    p = rb.plan(repo, [g])
    assert (p.head, p.target, p.target_passed, p.ancestor) == (b, g, True, True)
    assert [c.sha for c in p.undone] == [b]
    git(root, "switch", "-q", "-c", "side", g)
    other = commit(root, "other", {"c": "1"})
    git(root, "switch", "-q", "main")
    with pytest.raises(UsageError, match="not HEAD or behind it"):
        rb.plan(repo, [g], "side")
    forced = rb.plan(repo, [g], "side", force=True)
    assert forced.target == other and not forced.ancestor
    with pytest.raises(GitError, match="not a commit"):
        rb.plan(repo, [g], "no-such-ref")
    same = rb.plan(repo, [], "HEAD")
    assert same.nothing_to_do


def test_nothing_changes_when_the_work_cannot_be_saved(repo: rb.Repo) -> None:
    root = repo.top
    base = commit(root, "base", {"f": "base\n"})
    git(root, "switch", "-q", "-c", "other")
    commit(root, "theirs", {"f": "theirs\n"})
    git(root, "switch", "-q", "main")
    head = commit(root, "ours", {"f": "ours\n"})
    subprocess.run(["git", "merge", "other"], cwd=root, capture_output=True, check=False)
    before = snapshot(root)
    assert "<<<<<<<" in (root / "f").read_text()

    with pytest.raises(GitError, match="nothing was rolled back"):
        repo.rollback(base, reason="test", auto=True)

    assert repo.head() == head
    assert snapshot(root) == before
    assert not git(root, "branch", "--list", "cmux/rescue/*").strip()


def test_rescues_are_listed_newest_first(repo: rb.Repo) -> None:
    root = repo.top
    g = commit(root, "g", {"a": "1"})
    commit(root, "b1", {"a": "2"})
    first = repo.rollback(g, reason="one", auto=True, now=1_000_000)
    commit(root, "b2", {"a": "3"})
    (root / "wip").write_text("wip\n")
    second = repo.rollback(g, reason="two", auto=False, now=1_000_000)
    assert second.id == first.id + "-2"
    views = rescues.list_rescues(repo)
    assert [v.rescue.id for v in views] == [second.id, first.id]
    assert all(v.branch_exists and v.commits_missing == 1 for v in views)
    assert views[0].rescue.stash and not views[1].rescue.stash
    git(root, "merge", "-q", first.branch)
    assert {v.rescue.id: v.commits_missing for v in rescues.list_rescues(repo)}[first.id] == 0
    assert rescues.find_rescue(repo, "cmux/rescue/" + first.id).rescue.reason == "one"
    with pytest.raises(UsageError):
        rescues.find_rescue(repo, "nope")


def test_a_stash_without_a_git_identity(repo: rb.Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    root = repo.top
    g = commit(root, "g", {"a": "1"})
    commit(root, "b", {"a": "2"})
    git(root, "config", "--unset", "user.email")
    git(root, "config", "--unset", "user.name")
    empty = root.parent / "empty-gitconfig"
    empty.write_text("")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(empty))
    monkeypatch.setenv("EMAIL", "")
    (root / "wip").write_text("wip\n")
    rescue = repo.rollback(g, reason="test", auto=True)
    assert rescue.stash and not (root / "wip").exists()


def test_not_a_git_repository(tmp_path: Path) -> None:
    from cmux.errors import NotAGitRepo

    (tmp_path / "plain").mkdir()
    with pytest.raises(NotAGitRepo):
        rb.Repo(tmp_path / "plain", DataRoot(tmp_path / "plain" / ".cmux"))


def _submodule(root: Path, tmp_path: Path) -> Path:
    lib = make_repo(tmp_path / "lib")
    git(root, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(lib), "lib")
    git(root, "commit", "-q", "-m", "lib")
    return root / "lib"


def test_unsaveable_names_submodules_and_nested_repositories(repo: rb.Repo, tmp_path: Path) -> None:
    root = repo.top
    lib = _submodule(root, tmp_path)
    commit(root, "two", {"f": "2\n"})
    assert repo.unsaveable() == []  # a clean submodule is no obstacle
    (root / "f").write_text("dirty\n")
    assert repo.unsaveable() == []  # nor is a dirty file a stash can take
    (lib / "README.md").write_text("changed\n")
    (lib / "extra").write_text("new\n")
    make_repo(root / "deps" / "tool")
    assert repo.unsaveable() == [
        ("lib", "submodule: modified content, untracked content"),
        ("deps/tool/", "a git repository inside the work tree"),
    ]


def test_when_saving_fails_after_the_stash_the_work_is_put_back(
    repo: rb.Repo, tmp_path: Path
) -> None:
    """The last line of defence: should the check before saving miss something
    a stash leaves behind, the stash is applied again and dropped, so
    "nothing was changed" stays true."""
    root = repo.top
    lib = _submodule(root, tmp_path)
    base = commit(root, "two", {"f": "2\n"})
    head = commit(root, "three", {"f": "3\n"})
    (root / "f").write_text("dirty\n")
    (root / "new.txt").write_text("untracked\n")
    git(root, "add", "new.txt")
    (root / "loose.txt").write_text("untracked too\n")
    (lib / "README.md").write_text("changed in the submodule\n")
    before = snapshot(root)
    index = git(root, "ls-files", "-s")
    repo.refuse_unsaveable = lambda: None  # type: ignore[method-assign]

    with pytest.raises(GitError) as info:
        repo.rollback(base, reason="test", auto=True)

    assert "nothing was changed" in str(info.value) and "could not be set aside: lib" in str(
        info.value
    )
    assert repo.head() == head
    assert snapshot(root) == before
    assert git(root, "ls-files", "-s") == index
    assert git(root, "stash", "list") == ""
    assert not git(root, "for-each-ref", "refs/cmux/rescue-stash/").strip()
    assert not git(root, "branch", "--list", "cmux/rescue/*").strip()


def test_when_the_work_cannot_be_put_back_the_error_says_where_it_is(
    repo: rb.Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = repo.top
    lib = _submodule(root, tmp_path)
    base = commit(root, "two", {"f": "2\n"})
    (root / "f").write_text("dirty\n")
    (lib / "README.md").write_text("changed in the submodule\n")
    repo.refuse_unsaveable = lambda: None  # type: ignore[method-assign]
    monkeypatch.setattr(rb.Repo, "_undo_stash", lambda self, rescue: False)

    with pytest.raises(GitError) as info:
        repo.rollback(base, reason="test", auto=True)

    text = str(info.value)
    stash = git(root, "rev-parse", "refs/stash").strip()
    assert "nothing was changed" not in text
    assert f"into stash {stash[:10]}" in text and "refs/cmux/rescue-stash/" in text
    assert f"git stash apply --index {stash[:10]}" in text and "work (f) was moved" in text
    assert git(root, "branch", "--list", "cmux/rescue/*").strip()  # kept: the stash names it


def test_a_reset_that_fails_after_saving_says_what_was_saved(
    repo: rb.Repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = repo.top
    base = commit(root, "two", {"f": "2\n"})
    commit(root, "three", {"f": "3\n"})
    (root / "f").write_text("dirty\n")

    def broken(self: rb.Repo, old: str, target: str, rescue: rescues.Rescue) -> None:
        raise GitError("git reset failed: disk on fire")

    monkeypatch.setattr(rb.Repo, "_move_to", broken)
    with pytest.raises(GitError) as info:
        repo.rollback(base, reason="test", auto=True)
    text = str(info.value)
    stash = git(root, "rev-parse", "refs/stash").strip()
    assert "everything was saved" in text and f"stash {stash[:10]}" in text
    assert "disk on fire" in text and "cmux rescue show" in text
    assert "nothing was changed" not in text
