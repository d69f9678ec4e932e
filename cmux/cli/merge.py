"""merge, queue, merger: the merge queue for a person, and its daemon."""

from __future__ import annotations

import json
import sys

import click

from cmux import ui
from cmux.config import load_config
from cmux.text import one_line


def _entry_json(entry: object, **extra: object) -> str:
    from cmux.merge.queue import Entry

    assert isinstance(entry, Entry)
    return json.dumps({**entry.to_dict(), **extra})


@click.command("merge")
@click.argument("name")
@click.option("--wait", is_flag=True, help="Wait until it landed (exit 0) or was refused (exit 1).")
@click.option("--timeout", type=float, help="With --wait: give up waiting after this many seconds.")
@click.option("--cancel", is_flag=True, help="Take NAME's branch out of the queue.")
@click.option("--json", "as_json", is_flag=True, help="Print the entry as JSON.")
def merge_cmd(name: str, wait: bool, timeout: float | None, cancel: bool, as_json: bool) -> None:
    """Queue worker NAME's branch (cmux/NAME) to land on trunk.

    The merger (started by `cmux start`) builds trunk's tip plus the branch in
    a scratch worktree, runs the checks ([[merge.checks]], by default the
    [[health.checks]]), and moves trunk only to the tested commit. A conflict
    or a failing check refuses the entry: the branch stays as it was and the
    worker is told why (see docs/MERGE.md).

    \b
    Examples:
      cmux merge w1 --wait        block until w1's work landed or was refused
      cmux merge --cancel w1      take it out of the queue
      cmux queue                  what is queued, tested, landed, refused
    """
    from cmux.ops import merge as ops

    cfg = load_config()
    if cancel:
        entry = ops.cancel(cfg, name)
        ui.out_json(_entry_json(entry)) if as_json else ui.out(
            f"cancelled merge #{entry.n} of {name}"
        )
        return
    entry, already = ops.enqueue(cfg, name)
    if not ops.merger_running(cfg):
        ui.warn("no merger is running: the entry waits until `cmux start` starts one")
    if not wait:
        if as_json:
            ui.out_json(_entry_json(entry, already=already))
        else:
            pos = next((r["position"] for r in ops.rows(cfg) if r["n"] == entry.n), None)
            what = "already in the queue" if already else "queued"
            ui.out(
                f"{what}: merge #{entry.n} of {entry.branch} ({entry.head[:12]}) onto "
                f"{entry.trunk}, {entry.state}" + (f", position {pos}" if pos else "")
            )
        return

    def progress(e: object) -> None:
        from cmux.merge.queue import Entry

        assert isinstance(e, Entry)
        if not as_json:
            ui.progress(one_line(f"merge #{e.n} of {e.branch}: {e.state} {e.reason}".rstrip()))

    final = ops.wait(cfg, entry.n, timeout=timeout, on_change=progress)
    if as_json:
        ui.out_json(_entry_json(final))
    elif final.state == "landed":
        ui.out(f"landed: {final.branch} on {final.trunk} at {(final.landed or '')[:12]}")
    else:
        ui.out(one_line(f"{final.state}: {final.branch}: {final.reason}"))
        if final.output:
            ui.out(f"the check's output: {final.output}")
    sys.exit(0 if final.state == "landed" else 1)


@click.command("queue")
@click.option("--json", "as_json", is_flag=True, help="Every entry as JSON.")
def queue_cmd(as_json: bool) -> None:
    """The merge queue: agent, branch, head, state, position, time in state,
    and the landed commit or the reason it was refused."""
    from cmux.ops import merge as ops

    cfg = load_config()
    rows = ops.rows(cfg)
    if as_json:
        ui.print_json(rows)
        return
    ui.out(ops.checks_note(cfg))
    if not ops.merger_running(cfg):
        ui.out("no merger is running: `cmux start` starts one (queued entries wait for it)")
    if not rows:
        ui.out("the queue is empty: `cmux merge NAME` (or `workers merge NAME`) adds a branch")
        return
    for r in rows:
        pos = f"#{r['position']}" if r["position"] else "  "
        what = (r["landed"] or "")[:12] if r["state"] == "landed" else r["reason"]
        ui.out(
            one_line(
                f"{r['n']:>4} {pos:>3} {r['agent']:<14} {r['branch']:<20} {r['head'][:10]}  "
                f"{r['state']:<9} {ui.age(r['in_state']):>6}  {what}"
            )
        )


@click.command("merger")
def merger_cmd() -> None:
    """Run the merge queue's merger in the foreground (`cmux start` runs it).

    One per data root; a second one exits with an error.
    """
    import logging

    from cmux.merge.merger import run

    cfg = load_config()
    logging.basicConfig(
        filename=str(cfg.data.state_dir / "merger.log"),
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        force=True,
    )
    run(cfg)
