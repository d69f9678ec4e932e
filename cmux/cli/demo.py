"""`cmux demo`: see cmux work end to end, with no account and no network."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import click

from cmux import ui

# The demo's own repository tests what lands on trunk with one cheap check:
# every note the workers commit has a title line (an empty or untitled note
# is a broken tree, and the merge queue would refuse it).
DEMO_MERGE = """
# Added by `cmux demo`: work lands on trunk through the merge queue, tested.
[[merge.checks]]
name = "notes-have-titles"
command = "test -d notes && ! grep -L -r --include=*.md '^# ' notes | grep -q ."
timeout = 30
"""


@click.command("demo")
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to make the demo repository (default: a new temporary folder).",
)
@click.option(
    "--task",
    default="Write a short note on why tmux is handy for agents.",
    show_default=True,
    help="The task the person gives the supervisor.",
)
@click.option("--attach", is_flag=True, help="Attach to tmux to watch it live.")
@click.option("--keep", is_flag=True, help="Leave the session running afterwards.")
@click.option("--timeout", default=90.0, show_default=True, help="Seconds to wait for the result.")
@click.option(
    "--dashboard",
    "dashboard",
    is_flag=True,
    help="Open the web dashboard on the demo team (implies --keep).",
)
def demo_cmd(
    directory: Path | None, task: str, attach: bool, keep: bool, timeout: float, dashboard: bool
) -> None:
    """Run a demo team: a supervisor that splits a task between two workers.

    Makes a throw-away git repository, starts cmux there with the built-in
    demo agent, sends the supervisor a task, and shows the mail, states and
    journal entries as the workers report back. Each worker commits a note
    in its own worktree; the supervisor queues each branch with `workers
    merge`, and the merge queue tests it and lands it on trunk. Needs no
    account. With --dashboard the web dashboard opens on the team (its URL
    is printed too) and the session is left running.
    """
    from cmux import git
    from cmux.agents import session
    from cmux.config import load_config
    from cmux.mail import store
    from cmux.project import init

    root = (directory or Path(tempfile.mkdtemp(prefix="cmux-demo-"))).resolve()
    root.mkdir(parents=True, exist_ok=True)
    made = not (root / ".git").exists()
    if made:
        ui.progress(f"making a git repository in {root}")
        git.init(root).commit_empty("demo", ("cmux demo", "demo@cmux.invalid"))
    init(root)
    toml = root / "cmux.toml"
    if made and "[merge" not in toml.read_text():
        toml.write_text(toml.read_text() + DEMO_MERGE)
    for key in [k for k in os.environ if k.startswith("CMUX_") and k != "CMUX_DEMO_PACE"]:
        del os.environ[key]  # the demo is its own project
    keep = keep or dashboard
    cfg = load_config(root, agent="demo")
    ui.progress("starting the session (monitor + demo supervisor)")
    r = session.start(cfg, profile="demo")
    ui.out(
        f"session {r.session} is up in {r.seconds:.2f}s; attach any time: cd {root} && cmux attach"
    )
    if dashboard:
        from cmux.cli.dashboard import _open, announce

        url = announce(cfg)
        if url:
            _open(url)
        else:
            ui.warn("no dashboard: [dashboard] enabled is false in cmux.toml")
    _wait_state(cfg, "supervisor", "idle", 20)
    msg = store.send(cfg, to="supervisor", body=task, sender="human")
    ui.out(f"you → supervisor: {task!r} ({msg.id})")
    if attach:
        os.chdir(root)
        from cmux.cli.session import _attach

        _attach(cfg, "supervisor")
        return
    ok = _follow(cfg, timeout)
    if ok:  # let the supervisor finish tidying up (it ends its workers)
        _wait_state(cfg, "supervisor", "idle", 10)
    from cmux.status import collect_status

    ui.print_renderable(ui.status_table(collect_status(cfg), title="agents"))
    _show_queue(cfg)
    for m in store.read_all(cfg.data, "human"):
        ui.out(f"\nmail for you from {m.sender} ({m.kind}):\n{m.body}")
    if keep:
        ui.out(f"\nstill running: cd {root} && cmux attach   (cmux stop to end)")
        if dashboard:
            ui.out(f"the dashboard: cd {root} && cmux dashboard --url")
    else:
        session.stop(cfg)
        ui.out(f"\nstopped; everything it wrote is in {cfg.data.root}")
    if not ok:
        raise SystemExit(1)


def _wait_state(cfg, name: str, state: str, timeout: float) -> bool:
    from cmux.agents import registry

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if registry.get(cfg.data, name).state == state:
                return True
        except Exception:
            pass
        time.sleep(0.1)
    return False


def _follow(cfg, timeout: float) -> bool:
    """Print the interesting events until the person gets the final report."""
    from cmux import events

    offset = 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batch, offset = events.read(cfg.data, offset=offset)
        for e in batch:
            line = _describe(e)
            if line:
                ui.out(f"  {e['ts'][11:19]}  {line}")
            if (
                e.get("event") == "send"
                and e.get("agent") == "human"
                and e.get("sender") == "supervisor"
            ):
                return True
        time.sleep(0.2)
    ui.err(f"the demo did not finish within {timeout:.0f}s; see `cmux events` and `cmux logs NAME`")
    return False


def _show_queue(cfg) -> None:
    from cmux.ops import merge

    rows = merge.rows(cfg)
    if not rows:
        return
    ui.out(f"\nmerge queue ({merge.checks_note(cfg)}):")
    for r in sorted(rows, key=lambda r: r["n"]):
        what = f"at {(r['landed'] or '')[:12]}" if r["state"] == "landed" else r["reason"]
        ui.out(f"  #{r['n']} {r['branch']}: {r['state']} {what}".rstrip())


def _describe(e: dict) -> str | None:
    ev, agent = e.get("event"), e.get("agent")
    if ev == "merge-queued":
        return f"merge queue: {e.get('branch')} queued by {e.get('by')} (#{e.get('n')})"
    if ev == "merge-check":
        verdict = "passed" if e.get("ok") else f"FAILED ({', '.join(e.get('failing') or [])})"
        entries = ", ".join(f"#{n}" for n in e.get("entries") or [])
        return (
            f"merge queue: checks on {str(e.get('commit'))[:12]} ({entries}) {verdict} "
            f"in {e.get('seconds')} s"
        )
    if ev == "merge-landed":
        return f"merge queue: {e.get('branch')} LANDED on trunk at {str(e.get('commit'))[:12]}"
    if ev in ("merge-conflict", "merge-failed"):
        return f"merge queue: {e.get('branch')} refused: {e.get('reason')}"
    if ev == "spawn":
        return f"spawned {agent} ({e.get('profile')}): {str(e.get('task') or '')[:60]}"
    if ev == "send":
        return f"mail {e.get('sender')} → {agent} ({e.get('kind')})"
    if ev == "deliver":
        return f"delivered to {agent} by {e.get('via')} in {e.get('ms')} ms"
    if ev == "state":
        return f"{agent}: {e.get('from')} → {e.get('to')}" + (
            f" ({e['reason']})" if e.get("reason") else ""
        )
    if ev == "deadletter":
        return f"DEAD LETTER for {agent}: {e.get('reason')}"
    return None
