"""init, start, stop, attach, doctor, monitor."""

from __future__ import annotations

import os
from pathlib import Path

import click

from cmux import ui
from cmux.config import load_config


@click.command("init")
@click.argument("directory", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def init_cmd(directory: Path | None, as_json: bool) -> None:
    """Make a git repository a cmux project.

    Writes cmux.toml (kept if it exists) and creates the data root (default
    .cmux/, added to .gitignore). DIRECTORY defaults to the top of the git
    repository you are in.
    """
    from cmux.project import init

    r = init(directory)
    if as_json:
        ui.print_json({k: str(v) if isinstance(v, Path) else v for k, v in vars(r).items()})
        return
    ui.out(f"{'wrote' if r.created_config else 'kept'} {r.config_file}")
    ui.out(f"data root: {r.data_root}")
    if r.gitignore_updated:
        ui.out("added the data root to .gitignore")
    ui.out("next: `cmux start` (or `cmux start --agent demo` to try it without an account)")


@click.command("start")
@click.option(
    "--agent",
    "profile",
    metavar="PROFILE",
    help="Profile for the supervisor (claude, codex, gemini, demo, shell, or one from cmux.toml).",
)
@click.option(
    "--command", "command", metavar="CMD", help="Run CMD as the supervisor instead of a profile."
)
@click.option(
    "--no-attach", is_flag=True, help="Start in the background; attach later with `cmux attach`."
)
@click.option(
    "--resume",
    "resume_",
    is_flag=True,
    help="Bring back the agents the last session had (also after `cmux stop`).",
)
@click.option("--fresh", is_flag=True, help="Start anew: bring back nobody, even after a crash.")
def start_cmd(
    profile: str | None, command: str | None, no_attach: bool, resume_: bool, fresh: bool
) -> None:
    """Start the session: a monitor window and the supervisor.

    One tmux session on a private socket for this project. The `monitor`
    window runs cmux's daemons (router, health monitor, watchdogs, the web
    dashboard, whose URL it prints) and a live status; the `supervisor`
    window runs the supervisor agent. From inside tmux it switches your
    client; otherwise it attaches, unless --no-attach.

    When the last session's tmux server died (a crash, `tmux kill-server`, a
    reboot), every agent that was live comes back in its own window: a
    Claude agent with its conversation (`claude --resume`), any other program
    run again with its task; mail sent meanwhile is delivered. After a clean
    `cmux stop` only --resume does that; --fresh never does.

    Agents recorded on other hosts ([hosts.NAME]) and not gone take first
    the states their hosts report (one probe per host, as `cmux hosts`,
    10 s at most): gone there is not shown live here, a host that does not
    answer makes them unreachable. They are not brought back here.
    """
    from cmux.agents import session
    from cmux.agents.resume import Mode
    from cmux.errors import UsageError

    if resume_ and fresh:
        raise UsageError("give either --resume or --fresh, not both")
    cfg = load_config(agent=profile)
    mode: Mode = "resume" if resume_ else "fresh" if fresh else "auto"
    r = session.start(cfg, profile=profile, command=command, mode=mode)
    if r.resumed:
        ui.out("brought back: " + ", ".join(f"{name} ({how})" for name, how in r.resumed.items()))
    for name, why in r.failed.items():
        ui.err(f"could not bring back {name}: {why}")
    gone = [n for n in r.left_by_dead_server if n not in r.resumed]
    if gone and not r.resumed:
        ui.out("the tmux server of the last session had ended; marked exited: " + ", ".join(gone))
    if r.not_resumed:
        ui.out(
            f"not brought back: {', '.join(r.not_resumed)} "
            + ("(--fresh)" if fresh else "(`cmux start --resume` brings them back)")
        )
    if r.remote:
        ui.out(
            "on other hosts, as they say now: "
            + ", ".join(f"{name} {state}" for name, state in sorted(r.remote.items()))
        )
    windows = ", ".join(["monitor", "supervisor", *(n for n in r.resumed if n != "supervisor")])
    ui.out(f"started {r.session} (socket {r.socket}) in {r.seconds:.2f}s: windows {windows}")
    from cmux.cli.dashboard import announce

    announce(cfg)
    from cmux.agents import registry
    from cmux.cli.agents import warn_if_shell

    warn_if_shell(registry.get(cfg.data, "supervisor"))
    if no_attach:
        ui.out('attach with `cmux attach`; give it work with `cmux send supervisor "..."`')
        return
    _attach(cfg, None)


@click.command("stop")
@click.option(
    "--here",
    "--local",
    "here",
    is_flag=True,
    help="End only this host's session; agents on other hosts go on running there.",
)
@click.option(
    "--timeout",
    default=60.0,
    show_default=True,
    help="Seconds each other host may take to end its agents before it counts as not reached.",
)
@click.option("--json", "as_json", is_flag=True, help="Print what was ended as JSON.")
def stop_cmd(here: bool, timeout: float, as_json: bool) -> None:
    """End the daemons, the agents and the session cmux created.

    Only this project's private tmux server is touched; state on disk
    (mailboxes, journal, registry, worktrees) is kept.

    Agents on other hosts ([hosts.NAME]) end too: one ssh call per host,
    all at once, ending each the way `cmux kill` does (its branch pushed to
    cmux/NAME here first), then that host's session for this project when
    none of its agents is left. A host that does not answer within
    --timeout is named with the ssh error and a hint, its agents' records
    are left as they are, and the exit code is 1 (this host's session is
    stopped all the same); `cmux stop` again, or `cmux kill NAME`, tries
    again. --here keeps the other hosts' agents running.

    \b
    Examples:
      cmux stop                  everything, on every host
      cmux stop --here           this host only
      cmux stop --json           for a script: "hosts" says what each did
    """
    from cmux.agents import session
    from cmux.remote import halt

    def shown(h: halt.HostStop) -> None:
        if h.ok:
            ui.out(halt.summary(h))
            return
        ui.err(halt.summary(h) + (f"\n  hint: {h.hint}" if h.hint else ""))

    cfg = load_config()
    far = [] if here else halt.stop_hosts(cfg, timeout=timeout, on_host=None if as_json else shown)
    r = session.stop(cfg)
    missed = [h for h in far if not h.ok]
    if as_json:
        ui.print_json(
            {
                "was_running": r.was_running,
                "ended": r.ended,
                "hosts": [h.to_dict() for h in far],
            }
        )
    elif not r.was_running:
        ui.out("cmux was not running here" + ("" if far else "; nothing to stop"))
    else:
        ui.out(f"stopped {cfg.session_name}" + (f"; ended {', '.join(r.ended)}" if r.ended else ""))
    if missed:
        if not as_json:
            names = ", ".join(h.host for h in missed)
            ui.err(f"not everything stopped on {names}: `cmux stop` again tries again")
        raise SystemExit(1)


def _attach(cfg, name: str | None) -> None:
    from cmux import tmux as gateway
    from cmux.agents import registry
    from cmux.agents.server import require_running
    from cmux.ops.agents import attach_elsewhere

    if name and attach_elsewhere(cfg, name):
        return
    tmux = require_running(cfg)
    if name:
        agent = registry.get(cfg.data, name)
        if registry.on_server(agent, tmux.server_id()):  # (else its id is another's pane)
            assert agent.pane_id
            tmux.select_window(agent.pane_id)
    inside = gateway.enclosing_socket()
    if inside == cfg.socket_name:
        tmux.switch_client(cfg.session_name)
        return
    argv = gateway.attach_command(cfg.socket_name, cfg.session_name, binary=tmux.binary)
    if inside is not None:
        # Inside another tmux server: open a window there that shows ours.
        gateway.open_in_enclosing(cfg.session_name, argv)
        return
    os.execvp(argv[0], argv)


@click.command("attach")
@click.argument("name", required=False)
def attach_cmd(name: str | None) -> None:
    """Attach to the session (at NAME's window if given).

    Detach again with the tmux prefix then d (Ctrl-b d by default).
    """
    _attach(load_config(), name)


@click.command("doctor")
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON.")
def doctor_cmd(as_json: bool) -> None:
    """Check tmux, git, agent binaries and the data root, and say what to fix."""
    from cmux.doctor import run_checks

    checks = run_checks()
    if as_json:
        ui.print_json([vars(c) for c in checks])
    else:
        marks = {"ok": "✓", "warn": "!", "fail": "✗"}
        for c in checks:
            ui.out(f"{marks[c.status]} {c.name}: {c.detail}")
            if c.fix and c.status != "ok":
                ui.out(f"    fix: {c.fix}")
    if any(c.status == "fail" for c in checks):
        raise SystemExit(1)


@click.command("monitor")
def monitor_cmd() -> None:
    """Run cmux's daemons and a live status (the `monitor` window runs this)."""
    from cmux.monitor import run

    run(load_config(), draw=ui.status_screen)
