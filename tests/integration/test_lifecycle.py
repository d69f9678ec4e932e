"""cmux init/start/stop/spawn/kill/status with real tmux and real git."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.helpers import Project, git, make_repo, wait_until

SLEEP = "sleep 600"


def start(project: Project) -> None:
    project.ok("start", "--command", SLEEP, "--no-attach")


def windows(project: Project) -> list[str]:
    """Window names, read through libtmux: a second opinion on cmux's gateway."""
    server = project.server()
    return [w.window_name for s in server.sessions for w in s.windows]


def test_init_writes_config_and_ignores_data_root(project: Project) -> None:
    assert (project.root / "cmux.toml").is_file()
    assert (project.data / "mailbox" / "human" / "new").is_dir()
    assert "/.cmux/" in (project.root / ".gitignore").read_text()
    again = project.ok("init")
    assert "kept" in again.out
    assert (project.root / ".gitignore").read_text().count("/.cmux/") == 1


def test_init_outside_a_git_repo_is_a_clear_error(tmp_path: Path, isolated_env: dict) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    p = Project(root=plain, env=isolated_env)
    r = p.cmux("init")
    assert r.code == 1
    assert "not inside a git repository" in r.err
    assert "git init" in r.err
    assert not (plain / "cmux.toml").exists()


def test_commands_outside_a_project_say_run_init(tmp_path: Path, isolated_env: dict) -> None:
    repo = make_repo(tmp_path / "bare")
    r = Project(root=repo, env=isolated_env).cmux("status")
    assert r.code == 1
    assert "cmux init" in r.err


def test_start_makes_monitor_and_supervisor_and_second_start_is_refused(project: Project) -> None:
    r = project.ok("start", "--command", SLEEP, "--no-attach")
    assert "started" in r.out
    assert windows(project) == ["monitor", "supervisor"]
    status = project.status()
    assert status["supervisor"]["role"] == "supervisor"
    assert status["supervisor"]["state"] == "idle"

    again = project.cmux("start", "--command", SLEEP, "--no-attach")
    assert again.code == 1
    assert "already running" in again.err
    assert windows(project) == ["monitor", "supervisor"]  # nothing created


def test_twenty_workers_spawned_and_listed(project: Project) -> None:
    start(project)
    for i in range(20):
        project.ok("spawn", f"w{i:02d}", "--command", SLEEP, "--task", f"task number {i}")
    status = project.status()
    workers = {n: a for n, a in status.items() if a["role"] == "worker"}
    assert sorted(workers) == [f"w{i:02d}" for i in range(20)]
    assert {a["state"] for a in workers.values()} == {"idle"}
    assert workers["w07"]["task"] == "task number 7"
    assert len({a["pane_id"] for a in status.values()}) == 21
    assert len(windows(project)) == 22
    table = project.ok("status").out
    assert "w19" in table and "idle" in table


def test_kill_ends_one_worker_and_the_supervisor_needs_force(project: Project) -> None:
    start(project)
    project.ok("spawn", "w1", "--command", SLEEP, "--task", "one")
    project.ok("spawn", "w2", "--command", SLEEP, "--task", "two")
    project.ok("kill", "w1")
    assert "w1" not in windows(project)
    status = project.status()
    assert status["w1"]["state"] == "killed"
    assert status["w2"]["state"] == "idle"

    r = project.cmux("kill", "supervisor")
    assert r.code == 2 and "--force" in r.err
    assert "supervisor" in windows(project)
    project.ok("kill", "supervisor", "--force")
    assert project.status()["supervisor"]["state"] == "killed"


def test_an_exiting_agent_shows_exited_with_its_code(project: Project) -> None:
    start(project)
    project.ok("spawn", "quitter", "--command", "echo bye; exit 7", "--task", "quit")
    state = wait_until(
        lambda: project.status()["quitter"]["state"] == "exited" and project.status()["quitter"],
        what="quitter exited",
    )
    assert state["exit_code"] == 7
    assert "exited(7)" in project.ok("status").out
    assert "bye" in project.ok("logs", "quitter").out


def test_an_externally_killed_agent_shows_exited_with_its_code(project: Project) -> None:
    start(project)
    project.ok("spawn", "victim", "--command", SLEEP, "--task", "sleep")
    pane = project.status()["victim"]["pane_id"]
    pane_pid = project.tmux("display-message", "-p", "-t", pane, "#{pane_pid}").strip()
    child = wait_until(
        lambda: subprocess.run(
            ["pgrep", "-P", pane_pid], capture_output=True, text=True
        ).stdout.split(),
        what="the agent process",
    )[0]
    os.kill(int(child), signal.SIGKILL)
    # The pane-died hook updates the registry by itself, without `status`.
    reg = project.data / "state" / "agents" / "victim.json"
    wait_until(lambda: json.loads(reg.read_text())["state"] == "exited", what="hook noticed")
    assert json.loads(reg.read_text())["exit_code"] == 128 + signal.SIGKILL


def test_a_pane_killed_from_tmux_is_noticed(project: Project) -> None:
    start(project)
    project.ok("spawn", "gone", "--command", SLEEP, "--task", "x")
    pane = project.status()["gone"]["pane_id"]
    project.tmux("kill-pane", "-t", pane)
    status = project.status()["gone"]
    assert status["state"] == "exited"
    assert status["exit_code"] is None


def test_agents_get_their_environment_and_context(project: Project, tmp_path: Path) -> None:
    start(project)
    out = tmp_path / "env.txt"
    project.ok(
        "spawn",
        "envy",
        "--command",
        f"env > {out}; which mailbox >> {out}",
        "--task",
        "look around",
    )
    wait_until(lambda: out.exists() and "mailbox" in out.read_text())
    text = out.read_text()
    env = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    assert env["CMUX_AGENT"] == "envy"
    assert env["CMUX_HOME"] == str(project.data.resolve())
    assert Path(env["CMUX_HOME"]).is_absolute()
    assert env["CMUX_SESSION"].startswith("cmux-")
    assert text.splitlines()[-1].endswith("tools/mailbox")
    ctx = (project.data / "contexts" / "envy.md").read_text()
    assert "look around" in ctx
    assert "mailbox done" in ctx
    assert "worker" in ctx.lower()


def test_tools_workers_spawns_lists_and_kills_for_the_supervisor(project: Project) -> None:
    with (project.root / "cmux.toml").open("a") as fh:
        fh.write(f'\n[profiles.sleeper]\ncommand = "{SLEEP}"\ntask = "none"\n')
    start(project)
    r = project.tool(
        "workers", "spawn", "helper", "--agent", "sleeper", "--task", "help", agent="supervisor"
    )
    assert r.code == 0, r.err
    listed = json.loads(project.tool("workers", "list", "--json", agent="supervisor").out)
    helper = next(a for a in listed if a["name"] == "helper")
    assert helper["parent"] == "supervisor" and helper["state"] == "idle"
    r = project.tool("workers", "kill", "supervisor", agent="helper")
    assert r.code == 1 and "a worker cannot `workers kill`" in r.err
    assert project.status()["supervisor"]["state"] != "killed"
    assert project.tool("workers", "kill", "helper", agent="supervisor").code == 0
    assert project.status()["helper"]["state"] == "killed"


def test_worktree_without_new_work_is_removed_on_kill(project: Project) -> None:
    start(project)
    project.ok("spawn", "wt", "--command", SLEEP, "--task", "x", "--worktree")
    wt = project.data / "worktrees" / "wt"
    assert (wt / "README.md").is_file()
    assert "cmux/wt" in git(project.root, "branch", "--list", "cmux/wt")
    assert project.status()["wt"]["cwd"] == str(wt.resolve())
    r = project.ok("kill", "wt")
    assert "removed worktree" in r.out
    assert not wt.exists()
    assert git(project.root, "branch", "--list", "cmux/wt").strip() == ""


def test_worktree_with_unmerged_commits_is_kept_and_named(project: Project) -> None:
    start(project)
    project.ok("spawn", "wt", "--command", SLEEP, "--task", "x", "--worktree")
    wt = project.data / "worktrees" / "wt"
    (wt / "new.txt").write_text("work\n")
    git(wt, "add", "new.txt")
    git(wt, "commit", "-q", "-m", "worker's work")
    r = project.ok("kill", "wt")
    assert "kept branch cmux/wt" in r.out
    assert "1 commit not merged" in r.out
    assert (wt / "new.txt").read_text() == "work\n"
    assert git(project.root, "log", "-1", "--format=%s", "cmux/wt").strip() == "worker's work"
    # The same name cannot silently reuse that branch.
    again = project.cmux("spawn", "wt", "--command", SLEEP, "--task", "x", "--worktree")
    assert again.code == 1 and "already exists" in again.err


def test_worktree_with_uncommitted_changes_is_kept(project: Project) -> None:
    start(project)
    project.ok("spawn", "wt", "--command", SLEEP, "--task", "x", "--worktree")
    wt = project.data / "worktrees" / "wt"
    (wt / "README.md").write_text("changed but not committed\n")
    r = project.ok("kill", "wt")
    assert "uncommitted changes" in r.out
    assert (wt / "README.md").read_text() == "changed but not committed\n"


def test_merged_worktree_branch_is_removed(project: Project) -> None:
    start(project)
    project.ok("spawn", "wt", "--command", SLEEP, "--task", "x", "--worktree")
    wt = project.data / "worktrees" / "wt"
    (wt / "f.txt").write_text("merged\n")
    git(wt, "add", "f.txt")
    git(wt, "commit", "-q", "-m", "to merge")
    git(project.root, "merge", "-q", "--ff-only", "cmux/wt")
    r = project.ok("kill", "wt")
    assert "removed worktree" in r.out
    assert not wt.exists()


def test_stop_ends_only_our_server_and_keeps_state(project: Project) -> None:
    other = subprocess.run(
        ["tmux", "-L", "someone-else", "new-session", "-d", "-s", "theirs", "sleep 600"],
        env=project.env,
        capture_output=True,
    )
    assert other.returncode == 0
    start(project)
    project.ok("spawn", "w1", "--command", SLEEP, "--task", "x")
    r = project.ok("stop")
    assert "stopped" in r.out
    theirs = subprocess.run(
        ["tmux", "-L", "someone-else", "list-sessions", "-F", "#{session_name}"],
        env=project.env,
        capture_output=True,
        text=True,
    )
    assert theirs.stdout.split() == ["theirs"]
    ours = subprocess.run(
        ["tmux", "-L", project.socket(), "list-sessions"], env=project.env, capture_output=True
    )
    assert ours.returncode != 0
    assert (project.data / "state" / "agents" / "w1.json").exists()
    assert project.status()["w1"]["state"] == "killed"
    assert "not running" in project.ok("stop").out
    subprocess.run(["tmux", "-L", "someone-else", "kill-server"], env=project.env, check=False)


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (["spawn", "Bad Name", "--command", SLEEP, "--task", "x"], 2, "invalid agent name"),
        (["spawn", "human", "--command", SLEEP, "--task", "x"], 2, "reserved"),
        (["spawn", "supervisor", "--command", SLEEP, "--task", "x"], 2, "reserved"),
        (["spawn", "w1", "--command", SLEEP], 2, "needs a task"),
        (
            ["spawn", "w1", "--command", SLEEP, "--task", "x", "--task-file", "f"],
            2,
            "either --task",
        ),
        (["spawn", "w1", "--agent", "nope", "--task", "x"], 2, "unknown agent profile"),
        (
            ["spawn", "w1", "--command", SLEEP, "--task", "x", "--dir", "/no/such"],
            2,
            "no such directory",
        ),
        (["kill", "ghost"], 1, "no agent named 'ghost'"),
        (["logs", "ghost"], 1, "no agent named 'ghost'"),
    ],
)
def test_bad_input_gets_a_clear_error(
    project: Project, args: list[str], code: int, words: str
) -> None:
    start(project)
    r = project.cmux(*args)
    assert r.code == code, r
    assert words in r.err
    assert "Traceback" not in r.err
    assert windows(project) == ["monitor", "supervisor"]


def test_duplicate_name_is_refused(project: Project) -> None:
    start(project)
    project.ok("spawn", "w1", "--command", SLEEP, "--task", "x")
    r = project.cmux("spawn", "w1", "--command", SLEEP, "--task", "y")
    assert r.code == 2 and "already exists" in r.err
    assert windows(project).count("w1") == 1
    # Once it is gone, the name can be used again.
    project.ok("kill", "w1")
    project.ok("spawn", "w1", "--command", SLEEP, "--task", "y")
    assert project.status()["w1"]["task"] == "y"


def test_spawn_needs_a_running_session(project: Project) -> None:
    r = project.cmux("spawn", "w1", "--command", SLEEP, "--task", "x")
    assert r.code == 1
    assert "not running" in r.err and "cmux start" in r.err


def test_doctor_reports_what_is_there(project: Project) -> None:
    r = project.cmux("doctor", "--json")
    checks = {c["name"]: c for c in json.loads(r.out)}
    assert checks["tmux"]["status"] == "ok"
    assert checks["git"]["status"] == "ok"
    assert checks["project"]["status"] == "ok"
    # claude is the default profile and is not on PATH here: a failure with a fix.
    if checks.get("agent claude", {}).get("status") == "fail":
        assert r.code == 1
        assert "npm install" in checks["agent claude"]["fix"]


def test_monitor_window_restarts_the_router(project: Project) -> None:
    start(project)
    pidfile = project.data / "state" / "run" / "router.pid"
    pid = int(
        wait_until(lambda: pidfile.exists() and pidfile.read_text().split()[0], what="router pid")
    )
    os.kill(pid, signal.SIGKILL)
    new = wait_until(
        lambda: (
            pidfile.exists()
            and pidfile.read_text().split()[:1] not in ([], [str(pid)])
            and pidfile.read_text().split()[0]
        ),
        timeout=10,
        what="a new router",
    )
    os.kill(int(new), 0)  # alive


def test_cmux_journals_spawns_reports_kills_and_crashes_and_the_supervisor_starts_with_it(
    project: Project,
) -> None:
    start(project)
    project.ok("spawn", "w1", "--command", SLEEP, "--task", "polish the parser")
    project.ok("spawn", "w2", "--command", "exit 3", "--task", "doomed")
    assert project.tool("mailbox", "done", "parser polished, tests green", agent="w1").code == 0
    project.ok("kill", "w1")
    wait_until(lambda: project.status()["w2"]["state"] == "exited")
    hits = json.loads(project.ok("journal", "search", "parser", "--json").out)
    titles = " | ".join(h["title"] for h in hits)
    assert "spawned worker w1" in titles and "done: parser polished" in titles
    assert "killed w1" in titles
    crash = json.loads(project.ok("journal", "search", "w2", "--json").out)
    assert any("without reporting done" in h["title"] for h in crash)
    # A fresh supervisor is started with what happened before.
    project.ok("stop")
    project.ok("start", "--command", SLEEP, "--no-attach")
    ctx = (project.data / "contexts" / "supervisor.md").read_text()
    assert "parser polished, tests green" in ctx
    assert "killed w1" in ctx


def test_approve_without_a_dialog_is_refused_and_types_nothing(project: Project) -> None:
    start(project)
    project.ok("spawn", "w1", "--command", "cat", "--task", "x")
    for run in (
        project.tool("workers", "approve", "w1", agent="supervisor"),
        project.cmux("approve", "w1"),
    ):
        assert run.code != 0
        assert "dialog" in run.err
        assert "Traceback" not in run.err
    pane = project.status()["w1"]["pane_id"]
    assert project.tmux("capture-pane", "-p", "-t", pane).strip() == ""


def test_a_missing_agent_program_is_refused_before_anything_starts(project: Project) -> None:
    cfg = project.root / "cmux.toml"
    cfg.write_text(
        cfg.read_text().replace('command = "claude"', 'command = "claude-not-installed"')
    )
    r = project.cmux("start", "--no-attach")
    assert r.code == 2
    assert "Claude Code is not installed" in r.err and "--agent demo" in r.err
    assert project.cmux("status", "--json").json() == []
    ours = subprocess.run(
        ["tmux", "-L", project.socket(), "list-sessions"], env=project.env, capture_output=True
    )
    assert ours.returncode != 0  # no session was left behind
    start(project)
    r = project.cmux("spawn", "w1", "--agent", "claude", "--task", "x")
    assert r.code == 2 and "not installed" in r.err
    assert "w1" not in windows(project)
