"""The health monitor on real git repositories with scripted checks.

The check is a real command, `test ! -e BROKEN`: a commit that adds a file
named BROKEN breaks the project, exactly like a bad change would. A second
flag outside the repository stands for causes outside the code. The clock,
the restart command and the mailbox are fakes.
"""

from __future__ import annotations

import http.server
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from cmux.health.checks import CommandResult, run_all
from cmux.health.config import Check, HealthSettings
from cmux.health.daemon import HealthMonitor, RoundReport
from cmux.health.policy import BUDGET, HOLD, RESTART, ROLLBACK, WAIT
from cmux.health.rollback import Repo
from cmux.health.state import editing, load_state
from cmux.paths import DataRoot
from tests.helpers import git, http_server, make_repo


@dataclass
class FakeNotifier:
    tells: list[tuple[str, str, str]] = field(default_factory=list)
    alerts: list[str] = field(default_factory=list)
    cleared: int = 0
    journal_entries: list[tuple[str, str, list[str]]] = field(default_factory=list)
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def tell(self, to: str, subject: str, body: str) -> None:
        self.tells.append((to, subject, body))

    def alert(self, text: str) -> None:
        self.alerts.append(text)

    def clear_alert(self) -> None:
        self.cleared += 1

    def journal(self, title: str, body: str, tags: list[str]) -> None:
        self.journal_entries.append((title, body, tags))

    def event(self, name: str, **fields: Any) -> None:
        self.events.append((name, fields))

    def names(self) -> list[str]:
        return [n for n, _ in self.events]


class Clock:
    def __init__(self) -> None:
        self.t = 1_000_000.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds


@dataclass
class World:
    root: Path
    data: DataRoot
    repo: Repo
    notifier: FakeNotifier
    clock: Clock
    outside: Path  # exists = broken for a reason outside the code
    restarts: list[float] = field(default_factory=list)
    restart_fixes_outside: bool = False

    def commit(self, message: str, **files: str | None) -> str:
        for name, content in files.items():
            if content is None:
                git(self.root, "rm", "-q", name)
            else:
                (self.root / name).write_text(content)
                git(self.root, "add", name)
        git(self.root, "commit", "-q", "-m", message)
        return self.head()

    def head(self) -> str:
        return git(self.root, "rev-parse", "HEAD").strip()

    def restart(self) -> CommandResult:
        self.restarts.append(self.clock())
        if self.restart_fixes_outside:
            self.outside.unlink(missing_ok=True)
        return CommandResult(0, "", 0.01, False)

    def monitor(self, *, restart: bool = False, **overrides: Any) -> HealthMonitor:
        checks = (
            Check("code", command="test ! -e BROKEN", timeout=10),
            Check("world", command=f"test ! -e {self.outside}", timeout=10),
        )
        settings = replace(
            HealthSettings(checks=checks, threshold=3, restart_wait=0),
            restart="fake" if restart else None,
            **overrides,
        )
        return HealthMonitor(
            self.data,
            settings,
            repo=self.repo,
            run_checks=lambda: run_all(settings.checks, self.root),
            restart=self.restart if restart else None,
            notifier=self.notifier,
            clock=self.clock,
            sleep=self.clock.sleep,
        )

    def rescue_branches(self) -> list[str]:
        return git(
            self.root, "branch", "--list", "--format=%(refname:short)", "cmux/rescue/*"
        ).split()


@pytest.fixture
def world(tmp_path: Path) -> World:
    root = make_repo(tmp_path / "proj")
    (root / ".gitignore").write_text("/.cmux/\n")
    git(root, "add", ".gitignore")
    git(root, "commit", "-q", "-m", "ignore the data root")
    data = DataRoot(root / ".cmux")
    data.ensure()
    return World(root, data, Repo(root, data), FakeNotifier(), Clock(), tmp_path / "outside-broken")


def rounds(mon: HealthMonitor, n: int) -> list[RoundReport]:
    return [mon.round() for _ in range(n)]


def test_a_pass_of_a_new_head_moves_last_good(world: World) -> None:
    mon = world.monitor()
    first = mon.round()
    assert first.ok and first.moved_last_good
    assert world.repo.last_good() == world.head()
    assert not mon.round().moved_last_good  # same HEAD: nothing to move
    c1 = world.commit("feature", **{"feature.py": "ok\n"})
    assert mon.round().moved_last_good and world.repo.last_good() == c1
    world.commit("break", BROKEN="x")
    assert not mon.round().ok
    assert world.repo.last_good() == c1  # a failure never moves it
    assert load_state(world.data).last_good == c1


def test_a_commit_made_while_the_checks_ran_is_not_marked_good(world: World) -> None:
    mon = world.monitor()
    assert mon.round().ok
    before = world.head()
    inner = mon.run_checks

    def checks_during_which_an_agent_commits() -> list[Any]:
        results = inner()
        world.commit("sneaked in", BROKEN="x")
        return results

    mon.run_checks = checks_during_which_an_agent_commits
    report = mon.round()
    assert report.ok and not report.moved_last_good
    assert world.repo.last_good() == before


def test_a_failing_commit_is_rolled_back_after_the_threshold(world: World) -> None:
    mon = world.monitor()
    good = world.commit("good", **{"app.py": "v1\n"})
    assert mon.round().ok
    bad1 = world.commit("bad one", BROKEN="x", **{"app.py": "v2\n"})
    bad2 = world.commit("bad two", **{"more.py": "y\n"})
    (world.root / "app.py").write_text("v3, not committed\n")
    (world.root / "notes.txt").write_text("untracked notes\n")

    first, second, third = rounds(mon, 3)
    assert (first.action, second.action) == (WAIT, WAIT)
    assert third.action == ROLLBACK and third.verified is True
    assert world.head() == good
    assert not (world.root / "BROKEN").exists() and not (world.root / "notes.txt").exists()

    rescue = third.rescue
    assert rescue is not None
    assert git(world.root, "rev-parse", rescue.branch).strip() == bad2
    assert [c["sha"] for c in rescue.undone] == [bad2, bad1]
    assert rescue.stash and sorted(rescue.files) == ["app.py", "notes.txt"]

    to, subject, body = world.notifier.tells[-1]
    assert to == "supervisor" and good[:10] in subject
    for needed in (bad1[:10], bad2[:10], rescue.branch, rescue.stash[:10], "The checks pass again"):
        assert needed in body
    title, jbody, tags = world.notifier.journal_entries[-1]
    assert "Rolled back" in title and rescue.branch in jbody and "rollback" in tags
    assert "rollback" in world.notifier.names()
    st = load_state(world.data)
    assert st.phase == "ok" and st.consecutive_failures == 0
    assert st.rollbacks[-1]["verified"] is True and st.rollbacks[-1]["auto"] is True

    # Nothing was lost: the undone commits and the work come back as they were.
    git(world.root, "switch", "-q", "-c", "restored", rescue.branch)
    git(world.root, "stash", "apply", "--index", rescue.stash)
    assert (world.root / "app.py").read_text() == "v3, not committed\n"
    assert (world.root / "notes.txt").read_text() == "untracked notes\n"
    assert (world.root / "BROKEN").exists() and (world.root / "more.py").exists()


def test_never_past_a_commit_that_passed(world: World) -> None:
    mon = world.monitor(threshold=1)
    g1 = world.commit("g1", **{"a.py": "1\n"})
    assert mon.round().ok
    g2 = world.commit("g2", **{"a.py": "2\n"})
    assert mon.round().ok
    world.commit("b1", BROKEN="x")
    world.commit("b2", **{"a.py": "3\n"})
    report = mon.round()
    assert report.rescue and report.rescue.target == g2 != g1
    assert world.head() == g2


def test_a_restart_that_helps_means_no_rollback(world: World) -> None:
    mon = world.monitor(restart=True)
    assert mon.round().ok
    world.outside.write_text("the service fell over")
    world.restart_fixes_outside = True
    reports = rounds(mon, 3)
    assert [r.action for r in reports] == [WAIT, WAIT, RESTART]
    assert reports[-1].then is not None and reports[-1].then.ok
    assert len(world.restarts) == 1
    assert world.rescue_branches() == []
    assert "health-restart" in world.notifier.names()


def test_a_restart_that_does_not_help_is_followed_by_a_rollback(world: World) -> None:
    mon = world.monitor(restart=True)
    good = world.head()
    assert mon.round().ok
    world.commit("bad", BROKEN="x")
    last = rounds(mon, 3)[-1]
    assert last.action == RESTART
    assert last.then is not None and last.then.action == ROLLBACK
    assert last.then.verified is True and world.head() == good
    assert len(world.restarts) == 2  # once before the rollback, once after it


def test_the_budget_stops_a_flapping_rollback_loop(world: World) -> None:
    mon = world.monitor(threshold=1, rollback_budget=2, rollback_window=3600)
    good = world.head()
    assert mon.round().ok
    for i in range(2):
        world.commit(f"bad {i}", BROKEN=str(i))
        assert mon.round().action == ROLLBACK
        assert world.head() == good
        world.clock.sleep(60)
    bad = world.commit("bad again", BROKEN="2")
    report = mon.round()
    assert report.action == BUDGET and report.rescue is None
    assert world.head() == bad  # not rolled back a third time
    assert len(world.notifier.alerts) == 1 and "2 rollbacks" in world.notifier.alerts[0]
    assert len(world.rescue_branches()) == 2
    # It keeps checking, but neither rolls back nor alerts again.
    assert [r.action for r in rounds(mon, 3)] == [HOLD] * 3
    assert len(world.notifier.alerts) == 1
    # A person deals with it (what `cmux health --clear-alert` does).
    with editing(world.data) as st:
        st.alert = None
        for r in st.rollbacks:
            r["counted"] = False
    assert mon.round().action == ROLLBACK and world.head() == good


def test_a_cause_outside_the_code_is_an_alert_not_a_rollback(world: World) -> None:
    mon = world.monitor(threshold=2)
    assert mon.round().ok
    head = world.head()
    world.outside.write_text("down")
    reports = rounds(mon, 3)
    assert [r.action for r in reports] == [WAIT, ROLLBACK, HOLD]
    assert reports[1].rescue is None and "outside the code" in (reports[1].alert or "")
    assert world.head() == head and world.rescue_branches() == []
    assert len(world.notifier.alerts) == 1
    world.outside.unlink()
    assert mon.round().ok and world.notifier.cleared == 1
    assert load_state(world.data).alert is None


def test_a_rollback_that_does_not_help_raises_an_alert(world: World) -> None:
    mon = world.monitor(threshold=1)
    good = world.head()
    assert mon.round().ok
    world.commit("bad", BROKEN="x")
    world.outside.write_text("down too")
    report = mon.round()
    assert report.rescue is not None and report.verified is False
    assert world.head() == good
    assert "still fail" in (report.alert or "")
    assert "STILL FAIL" in world.notifier.tells[-1][2]
    assert mon.round().action == HOLD  # no second rollback on top
    assert len(world.rescue_branches()) == 1


def test_a_dirty_tree_alone_is_rolled_back_by_stashing_it(world: World) -> None:
    mon = world.monitor(threshold=1)
    head = world.head()
    assert mon.round().ok
    (world.root / "BROKEN").write_text("uncommitted breakage\n")
    report = mon.round()
    assert report.rescue and report.rescue.stash and report.rescue.undone == []
    assert world.head() == head and not (world.root / "BROKEN").exists()
    assert report.verified is True


def test_nothing_to_roll_back_to_before_anything_passed(world: World) -> None:
    mon = world.monitor(threshold=2)
    world.commit("broken from the start", BROKEN="x")
    head = world.head()
    reports = rounds(mon, 2)
    assert reports[-1].action == ROLLBACK and reports[-1].rescue is None
    assert "nothing safe to roll back to" in (reports[-1].alert or "")
    assert world.head() == head and world.rescue_branches() == []


def test_the_count_survives_a_restarted_daemon(world: World) -> None:
    good = world.head()
    assert world.monitor().round().ok
    world.commit("bad", BROKEN="x")
    rounds(world.monitor(), 2)
    assert load_state(world.data).consecutive_failures == 2
    assert world.monitor().round().action == ROLLBACK  # a fresh monitor, the 3rd failure
    assert world.head() == good


class _Broken(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(500)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def unhealthy_url() -> Iterator[str]:
    with http_server(_Broken) as url:
        yield f"{url}/health"


@pytest.mark.timeout(30)
def test_an_unhealthy_url_and_a_timed_out_command_count_as_failures(
    world: World, unhealthy_url: str
) -> None:
    good = world.head()
    world.repo.set_last_good(good)
    world.commit("a change", **{"x.py": "1\n"})
    settings = HealthSettings(
        checks=(
            Check("web", url=unhealthy_url, timeout=2),
            Check("slow", command="sleep 30", timeout=0.3),
        ),
        threshold=2,
        restart_wait=0,
    )
    mon = HealthMonitor(
        world.data,
        settings,
        repo=world.repo,
        run_checks=lambda: run_all(settings.checks, world.root),
        restart=None,
        notifier=world.notifier,
        clock=world.clock,
        sleep=world.clock.sleep,
    )
    first = mon.round()
    assert not first.ok and first.action == WAIT
    web, slow = first.results
    assert "HTTP 500" in web.detail and slow.timed_out
    st = load_state(world.data)
    assert {n: c["consecutive_failures"] for n, c in st.checks.items()} == {"web": 1, "slow": 1}
    second = mon.round()
    assert second.action == ROLLBACK and second.rescue is not None
    assert world.head() == good


def test_the_real_notifier_reaches_the_mailbox_and_journal(tmp_path: Path) -> None:
    """With cmux's own notifier: no supervisor yet, so the human hears of it;
    the mailbox and the journal written before the rollback are still there."""
    from cmux.config import load_config
    from cmux.journal import store as journal_store
    from cmux.mail import store
    from cmux.project import init

    root = make_repo(tmp_path / "proj")
    init(root)
    git(root, "add", "cmux.toml", ".gitignore")
    git(root, "commit", "-q", "-m", "cmux")
    cfg = load_config(root)
    store.send(cfg, to="human", body="a message from before", sender="cmux", kind="notice")
    journal_store.add_entry(cfg.data, agent="w1", title="learned something", body="keep this")
    settings = HealthSettings(
        checks=(Check("code", command="test ! -e BROKEN"),), threshold=1, restart_wait=0
    )
    mon = HealthMonitor.for_config(cfg, settings)
    good = git(root, "rev-parse", "HEAD").strip()
    assert mon.round().ok
    git(root, "switch", "-q", "-c", "topic")  # rollbacks work on any branch
    (root / "BROKEN").write_text("x")
    git(root, "add", "BROKEN")
    git(root, "commit", "-q", "-m", "break it")
    report = mon.round()
    assert report.rescue and git(root, "rev-parse", "HEAD").strip() == good

    bodies = [m.body for m in store.read_all(cfg.data, "human")]
    assert bodies[0] == "a message from before"
    assert any(report.rescue.branch in b for b in bodies[1:])
    titles = [e.title for e in journal_store.recent(cfg.data, days=1)]
    assert "learned something" in titles
    assert any(t.startswith("Rolled back to") for t in titles)
    events = (cfg.data.events_file).read_text()
    assert '"event": "rollback"' in events
