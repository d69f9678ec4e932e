"""health, rollback, rescue: the safety net, seen and worked by hand."""

from __future__ import annotations

import sys
import time
from typing import Any

import click

from cmux import ui
from cmux.config import Config, load_config

MARK = {True: "✓", False: "✗"}


def _short(sha: str | None) -> str:
    return sha[:10] if sha else "-"


# -- cmux health ----------------------------------------------------------------------------


def _print_health(h: dict[str, Any]) -> None:
    from rich.table import Table

    now = time.time()
    if not h["enabled"]:
        ui.out("no health checks are configured.")
        ui.out("add some to cmux.toml, for example:")
        ui.out('  [[health.checks]]\n  name = "tests"\n  command = "pytest -q -x"\n  timeout = 300')
        ui.out("docs/HEALTH.md describes the rest ([health] interval, threshold, restart, ...)")
        return
    failing_now = any(c["last"] and not c["last"].get("ok") for c in h["checks"])
    if h["last_round"] is None:
        state = "not checked yet"
    elif h["phase"] == "alert":
        state = "failing, waiting for you"
    elif h["phase"] == "restarted":
        state = "failing, restarted"
    else:
        state = "failing" if failing_now else "passing"
    pid = h["daemon_pid"]
    daemon = f"monitor running (pid {pid})" if pid else "monitor not running (`cmux start` runs it)"
    ui.out(f"health: {state} · {len(h['checks'])} check(s) every {h['interval']:g}s · {daemon}")
    if h["consecutive_failures"]:
        ui.out(
            f"{h['consecutive_failures']} failing round(s) in a row; cmux acts at {h['threshold']}"
        )
    lg = h["last_good"]
    if lg:
        where = ""
        n = h["commits_since_last_good"]
        if h["head"] == lg["sha"]:
            where = " = HEAD"
        elif n is not None:
            where = f"; HEAD is {n} commit{'s' if n != 1 else ''} ahead"
        else:
            where = f"; HEAD {_short(h['head'])} is not a descendant of it"
        ui.out(f"last good: {_short(lg['sha'])} {lg['subject']!r}{where}")
    else:
        ui.out("last good: none yet (a passing round of a commit sets it)")
    budget = f"{h['rollbacks_in_window']} of {h['rollback_budget']} automatic rollbacks used"
    ui.out(f"rollbacks: {budget} in the last {ui.age(h['rollback_window'])}")
    if h["rollbacks"]:
        r = h["rollbacks"][-1]
        verdict = {True: ", verified", False: ", STILL FAILING", None: ""}[r.get("verified")]
        how = "automatic" if r.get("auto") else "by hand"
        ui.out(
            f"  last: {_short(r.get('from'))} → {_short(r.get('to'))} {ui.age(now - r['ts'])} ago "
            f"({how}{verdict}); saved as {r.get('branch')}"
        )
    if h["alert"]:
        ui.out(f"ALERT: {h['alert']}")
        ui.out("  clear it with `cmux health --clear-alert` once you have dealt with it")
    table = Table(expand=False, pad_edge=False)
    for col in ("CHECK", "KIND", "RESULTS", "FAILS", "LAST", "DETAIL"):
        table.add_column(col)
    for c in h["checks"]:
        marks = "".join(MARK[bool(r.get("ok"))] for r in c["results"]) or "-"
        last = c["last"]
        table.add_row(
            c["name"],
            c["kind"],
            marks,
            str(c["consecutive_failures"]),
            f"{ui.age(now - last['ts'])} ago" if last else "-",
            (last or {}).get("detail", "") or c["target"],
        )
    ui.print_renderable(table)
    failing = [c for c in h["checks"] if c["consecutive_failures"] and c["last_output"]]
    for c in failing:
        tail = "\n".join(c["last_output"].rstrip().splitlines()[-10:])
        ui.out(f"\n── last output of {c['name']} ──\n{tail}")


@click.command("health")
@click.option("--json", "as_json", is_flag=True, help="Print the state as JSON.")
@click.option("--now", "check_now", is_flag=True, help="Run every check once now and show it.")
@click.option(
    "--clear-alert",
    is_flag=True,
    help="Say you have dealt with the alert: clears it and the spent rollback budget.",
)
@click.option(
    "--daemon", is_flag=True, hidden=True, help="Run the monitor loop (the monitor does)."
)
def health_cmd(as_json: bool, check_now: bool, clear_alert: bool, daemon: bool) -> None:
    """The health checks: each one's last results, failures in a row, last good commit.

    Checks are configured under [health] in cmux.toml (docs/HEALTH.md); the
    monitor window runs them every `interval` seconds. Every passing round of
    a new HEAD moves refs/cmux/last-good. After `threshold` failing rounds in
    a row cmux runs the `restart` command, checks again, and if it still
    fails rolls back to the last good commit, saving everything first
    (`cmux rescue list`). After `rollback_budget` rollbacks within
    `rollback_window` it stops rolling back and alerts you.

    \b
    Examples:
      cmux health                 what passes, what fails, the last good commit
      cmux health --now           run the checks once, now (exit 1 if one fails)
      cmux health --clear-alert   after you fixed what the alert was about
    """
    cfg = load_config()
    if daemon:
        import logging

        from cmux.health.daemon import run_daemon

        cfg.data.ensure()
        logging.basicConfig(
            filename=str(cfg.data.state_dir / "health.log"),
            level=logging.INFO,
            format="%(asctime)s %(name)s %(levelname)s %(message)s",
            force=True,
        )
        run_daemon(cfg)
        return
    if clear_alert:
        _clear_alert(cfg, as_json)
        return
    if check_now:
        _check_now(cfg, as_json)
        return
    from cmux.health.view import collect_health

    h = collect_health(cfg)
    if as_json:
        ui.print_json(h)
        return
    _print_health(h)


def _clear_alert(cfg: Config, as_json: bool) -> None:
    from cmux.health.view import clear_alert

    cleared = clear_alert(cfg)
    if as_json:
        ui.print_json({"cleared": cleared})
        return
    ui.out("alert cleared; the rollback budget starts afresh" if cleared else "no alert")


def _check_now(cfg: Config, as_json: bool) -> None:
    from cmux.health.view import check_now

    report = check_now(cfg)
    if as_json:
        ui.print_json(
            {
                "ok": report.ok,
                "head": report.head,
                "moved_last_good": report.moved_last_good,
                "results": [r.to_dict() for r in report.results],
            }
        )
    else:
        for r in report.results:
            ui.out(f"{MARK[r.ok]} {r.name}: {r.detail} ({r.seconds:.2f}s)")
        if report.moved_last_good:
            ui.out(f"last good is now {_short(report.head)}")
    if not report.ok:
        raise SystemExit(1)


# -- cmux rollback ------------------------------------------------------------------------------


@click.command("rollback")
@click.option(
    "--to", "ref", metavar="REF", help="Roll back to REF (default: the last good commit)."
)
@click.option("--force", is_flag=True, help="Allow a REF that is not HEAD or behind it.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--no-restart", is_flag=True, help="Do not run [health] restart afterwards.")
@click.option("--json", "as_json", is_flag=True, help="Print what was saved as JSON.")
def rollback_cmd(ref: str | None, force: bool, yes: bool, no_restart: bool, as_json: bool) -> None:
    """Roll the project back to the last good commit (or REF), saving everything first.

    Before anything changes, cmux makes a branch cmux/rescue/<time> at HEAD
    and, if there is uncommitted work (staged, unstaged or untracked), a
    stash that names that branch. cmux's own files (the data root; cmux.toml
    and .gitignore while uncommitted) are never touched. Then HEAD goes back, the
    [health] restart command runs, and the supervisor is told.

    `cmux rescue list` shows what was saved and the git commands that bring
    it back.

    \b
    Examples:
      cmux rollback                 to the last commit that passed the checks
      cmux rollback --to HEAD~3     three commits back
      cmux rollback --to v1.2 -y    no question asked
    """
    from cmux.health import view

    cfg = load_config()
    p = view.rollback_plan(cfg, ref, force=force)
    if p.nothing_to_do:
        if as_json:
            ui.print_json({"rolled_back": False, "reason": "HEAD is the target, nothing is dirty"})
        else:
            ui.out(f"nothing to roll back: HEAD is {_short(p.target)} and nothing is uncommitted")
        return
    if not as_json:
        _show_plan(p)
    if not yes and sys.stdin.isatty() and not click.confirm("roll back?", default=False):
        raise click.exceptions.Abort()
    rescue = view.roll_back(cfg, p.target, restart=not no_restart)
    if as_json:
        ui.print_json({"rolled_back": True, **rescue.to_dict()})
        return
    ui.out(f"rolled back to {_short(rescue.target)}; everything is saved:")
    ui.out(f"  commits: branch {rescue.branch}")
    if rescue.stash:
        ui.out(f"  uncommitted work: stash {_short(rescue.stash)} ({rescue.stash_ref})")
    if rescue.left_dirty:
        ui.out(f"  changed while rolling back, left as they are: {', '.join(rescue.left_dirty)}")
    ui.out(f"bring it back: `cmux rescue show {rescue.id}`")


def _show_plan(p: Any) -> None:
    n = len(p.undone)
    passed = " (passed the checks)" if p.target_passed else ""
    ui.out(f"roll back from {_short(p.head)} to {_short(p.target)}{passed}")
    if not p.ancestor:
        ui.out("  --force: the target is not behind HEAD (another line of history)")
    if n:
        ui.out(f"  {n} commit{'s' if n != 1 else ''} undone (kept on a rescue branch):")
        for c in p.undone[:15]:
            ui.out(f"    {c.short} {c.subject}")
        if n > 15:
            ui.out(f"    … and {n - 15} more")
    if p.passed_undone:
        ui.out(f"  note: {len(p.passed_undone)} of them passed the health checks")
    if p.dirty:
        ui.out(f"  {len(p.dirty)} uncommitted path(s) set aside in a stash:")
        for f in p.dirty[:15]:
            ui.out(f"    {f}")
        if len(p.dirty) > 15:
            ui.out(f"    … and {len(p.dirty) - 15} more")


# -- cmux rescue --------------------------------------------------------------------------------


@click.group("rescue")
def rescue_group() -> None:
    """What rollbacks saved, and how to bring it back.

    Each rollback keeps the commits it undid on a branch cmux/rescue/<time>,
    and uncommitted work in a stash (pinned by refs/cmux/rescue-stash/<time>
    so it cannot be dropped by accident).
    """


def _view_dict(v: Any) -> dict[str, Any]:
    r = v.rescue
    return {
        **r.to_dict(),
        "branch_exists": v.branch_exists,
        "commits_not_in_head": v.commits_missing,
        "commands": [{"what": w, "command": c} for w, c in r.commands()],
    }


@rescue_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the rescues as JSON.")
def rescue_list_cmd(as_json: bool) -> None:
    """Every rescue, newest first, with the commands that bring it back."""
    from cmux.health import view

    cfg = load_config()
    views = view.rescue_views(cfg)
    if as_json:
        ui.print_json([_view_dict(v) for v in views])
        return
    if not views:
        ui.out("nothing was rescued: no rollback has happened here")
        return
    now = time.time()
    for v in views:
        r = v.rescue
        how = "automatic" if r.auto else "by hand"
        parts = [f"{len(r.undone)} commit(s) undone"]
        if r.stash:
            parts.append(f"{len(r.files)} uncommitted path(s) stashed")
        when = f"{ui.age(now - r.ts)} ago" if r.ts else ""
        ui.out(f"{r.id}  {when}  {how}: {', '.join(parts)}")
        if r.reason:
            ui.out(f"  why: {r.reason}")
        if r.target:
            ui.out(f"  from {_short(r.head)} to {_short(r.target)}")
        if not v.branch_exists:
            ui.out(f"  branch {r.branch} was deleted")
        elif r.undone and v.commits_missing == 0:
            ui.out("  its commits are back in HEAD")
        for what, cmd in r.commands():
            ui.out(f"  {what}: {cmd}")
        ui.out()


@rescue_group.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the rescue as JSON.")
def rescue_show_cmd(name: str, as_json: bool) -> None:
    """One rescue in full: the commits, the files, the commands."""
    from cmux.health import view
    from cmux.health.report import describe_rollback

    cfg = load_config()
    v = view.rescue_view(cfg, name)
    if as_json:
        ui.print_json(_view_dict(v))
        return
    ui.out(describe_rollback(v.rescue, verified=None, reason=v.rescue.reason or "rollback"))
