"""cmux health, rollback and rescue as a person runs them, on a real project."""

from __future__ import annotations

from tests.helpers import Project, git

CHECKS = """
[health]
threshold = 2
restart_wait = 0

[[health.checks]]
name = "code"
command = "test ! -e BROKEN"
timeout = 10
"""


def configure(project: Project, extra: str = "") -> None:
    with open(project.root / "cmux.toml", "a") as fh:
        fh.write(CHECKS + extra)


def commit(project: Project, message: str, **files: str) -> str:
    for name, text in files.items():
        (project.root / name).write_text(text)
        git(project.root, "add", name)
    git(project.root, "commit", "-q", "-m", message)
    return git(project.root, "rev-parse", "HEAD").strip()


def test_without_checks_health_says_how_to_add_them(project: Project) -> None:
    r = project.ok("health")
    assert "no health checks are configured" in r.out and "[[health.checks]]" in r.out
    assert project.ok("health", "--json").json()["enabled"] is False
    r = project.cmux("health", "--now")
    assert r.code == 2 and "no health checks" in r.err


def test_a_config_mistake_is_a_clear_error(project: Project) -> None:
    configure(project, "\n[health.oops]\n")
    r = project.cmux("health")
    assert r.code == 1 and "unknown key: oops" in r.err and "docs/HEALTH.md" in r.err


def test_health_now_records_results_and_moves_last_good(project: Project) -> None:
    configure(project)
    good = git(project.root, "rev-parse", "HEAD").strip()
    r = project.ok("health", "--now")
    assert "✓ code: exit 0" in r.out and f"last good is now {good[:10]}" in r.out
    assert git(project.root, "rev-parse", "refs/cmux/last-good").strip() == good
    commit(project, "break it", BROKEN="x")
    r = project.cmux("health", "--now")
    assert r.code == 1 and "✗ code: exit 1" in r.out
    h = project.ok("health", "--json").json()
    assert h["enabled"] and h["last_good"]["sha"] == good
    assert h["commits_since_last_good"] == 1
    [check] = h["checks"]
    assert check["name"] == "code" and check["consecutive_failures"] == 1
    assert [x["ok"] for x in check["results"]] == [True, False]
    text = project.ok("health").out
    assert "health: failing" in text and "HEAD is 1 commit ahead" in text
    assert "monitor not running" in text


def test_rollback_by_hand_saves_everything_and_keeps_cmux_files(project: Project) -> None:
    configure(project)
    cfg = project.config()
    from cmux.mail import store

    store.send(cfg, to="human", body="written before the rollback", sender="cmux", kind="notice")
    project.ok("journal", "add", "a lesson", "--body", "worth keeping")
    good = git(project.root, "rev-parse", "HEAD").strip()
    project.ok("health", "--now")
    bad = commit(project, "break it", BROKEN="x")
    (project.root / "wip.txt").write_text("unfinished\n")
    toml = (project.root / "cmux.toml").read_text()

    # A REF on another line of history is refused unless forced.
    git(project.root, "branch", "elsewhere", good)
    commit(project, "more", more="y")
    git(project.root, "switch", "-q", "elsewhere")
    other = commit(project, "other line", other="z")
    git(project.root, "switch", "-q", "main")
    (project.root / "wip.txt").write_text("unfinished\n")
    r = project.cmux("rollback", "--to", other, "-y")
    assert r.code == 2 and "not HEAD or behind it" in r.err and "--force" in r.err

    out = project.ok("rollback", "-y", "--json").json()
    assert out["rolled_back"] and out["target"] == good
    assert git(project.root, "rev-parse", "HEAD").strip() == good
    assert not (project.root / "BROKEN").exists() and not (project.root / "wip.txt").exists()
    assert (project.root / "cmux.toml").read_text() == toml  # uncommitted, left alone
    assert out["stash"] and "wip.txt" in out["files"]
    assert bad in [c["sha"] for c in out["undone"]]

    # The mailbox and the journal are untouched; the human heard of it.
    inbox = project.ok("inbox", "--all", "--json").json()
    bodies = [m["body"] for m in inbox]
    assert bodies[0] == "written before the rollback"
    assert any(out["branch"] in b for b in bodies)
    journal = project.ok("journal", "recent", "--json").json()
    titles = [e["title"] for e in journal]
    assert "a lesson" in titles and any(t.startswith("Rolled back to") for t in titles)

    rescues = project.ok("rescue", "list", "--json").json()
    assert [r["id"] for r in rescues] == [out["id"]]
    assert rescues[0]["commits_not_in_head"] == 2
    listing = project.ok("rescue", "list").out
    assert "git stash apply --index" in listing and "git merge cmux/rescue/" in listing
    shown = project.ok("rescue", "show", out["id"]).out
    assert "break it" in shown and "wip.txt" in shown

    # Bring it all back with the commands shown.
    git(project.root, "switch", "-q", "-c", "restored", out["branch"])
    git(project.root, "stash", "apply", "--index", out["stash"])
    assert (project.root / "wip.txt").read_text() == "unfinished\n"
    assert (project.root / "BROKEN").exists()


def test_rollback_with_nothing_to_do(project: Project) -> None:
    configure(project)
    project.ok("health", "--now")
    r = project.ok("rollback", "-y")
    assert "nothing to roll back" in r.out
    assert project.ok("rescue", "list").out.startswith("nothing was rescued")


def test_rollback_before_anything_passed_needs_a_ref(project: Project) -> None:
    configure(project)
    first = git(project.root, "rev-parse", "HEAD").strip()
    commit(project, "second", x="1")
    r = project.cmux("rollback", "-y")
    assert r.code == 2 and "no commit has passed" in r.err and "--to REF" in r.err
    project.ok("rollback", "--to", "HEAD~1", "-y")
    assert git(project.root, "rev-parse", "HEAD").strip() == first


def test_clear_alert(project: Project) -> None:
    configure(project)
    (project.data / "state" / "alert").write_text("health: something is wrong\n")
    assert "ALERT: health: something is wrong" in project.ok("health").out
    assert "ALERT" in project.ok("status").out
    assert project.ok("health", "--clear-alert", "--json").json() == {"cleared": True}
    assert not (project.data / "state" / "alert").exists()
    assert "no alert" in project.ok("health", "--clear-alert").out


def test_help_texts_teach(project: Project) -> None:
    assert "rolls back" in project.ok("health", "--help").out
    assert "--daemon" not in project.ok("health", "--help").out
    assert "cmux/rescue/" in project.ok("rollback", "--help").out
    assert "list" in project.ok("rescue", "--help").out
