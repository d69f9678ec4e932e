"""Noticing that an agent's process ended, and mending the monitor pane.

Three paths notice a death: tmux's pane-died hook (``pane_died``), a look at
the live server (``reconcile``, from the monitor's loop and before a start,
a spawn, a person's command) and Claude Code's SessionEnd hook. All of them
mark the agent exited through ``_mark_exited``, under the record's lock, so
none undoes another and a known exit code is never lost. An agent recorded on
a server that has ended is exited: pane ids restart on a new server.

A program can also end while its pane lives on: a profile run under a shell
(``sh -c 'claude; exec sh'``) leaves that shell at its prompt. The reconcile
sees it by the pane's terminal: its foreground process group is then an
interactive shell's own, no longer the group of cmux's wrapper (a shell with
job control takes the terminal for itself). Such an agent is ``crashed``;
when the pane dies later it is ``exited`` as any other.
"""

from __future__ import annotations

import logging
import os
import shlex
import time

from cmux import events
from cmux.agents import registry
from cmux.agents.registry import CRASHED, LIVE, Agent, State
from cmux.agents.server import MONITOR, base_env, journal_note, monitor_argv
from cmux.config import Config
from cmux.errors import TmuxError
from cmux.tmux import Pane, Tmux

log = logging.getLogger(__name__)

DEAD_GRACE = 2.0  # seconds to wait for the exit status of a pane that just died
SERVER_ENDED = "the tmux server ended"
SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "mksh", "fish", "tcsh", "csh", "ash"})
# The states a later death still changes: the live ones, and crashed.
ENDING: frozenset[State] = LIVE | CRASHED


def pane_died(
    cfg: Config, pane_id: str, status: int | None, server: str | None = None
) -> Agent | None:
    """Called by tmux's pane-died hook: the agent in that pane has exited.

    ``server`` is the identity of the server whose pane died; a record of the
    same pane id on another server is someone else (pane ids restart).
    """
    for agent in registry.list_agents(cfg.data):
        if agent.pane_id != pane_id:
            continue
        if server is not None and not registry.on_server(agent, server):
            continue
        if agent.state in ENDING or agent.state == "exited":
            return _mark_exited(cfg, agent, status, "its process exited")
    return None


def _mark_exited(cfg: Config, agent: Agent, code: int | None, why: str) -> Agent:
    """Mark a live agent exited with ``code``, or add the code to one that is
    already exited without one. Checked under the record's lock, so that of
    two paths noticing the same death (the hook, a reconcile, a SessionEnd
    hook) neither undoes the other: a known code is never replaced by None.
    """
    updated = registry.transition(
        cfg.data,
        agent.name,
        "exited",
        reason=f"{why}, code {code if code is not None else 'unknown'}",
        strict=False,
        only_from=ENDING,
        exit_code=code,
    )
    if updated.state == "exited" and updated.exit_code is None and code is not None:
        # Already exited without a code (a SessionEnd hook, a reconcile): add it.
        updated = registry.transition(
            cfg.data, agent.name, "exited", only_from={"exited"}, exit_code=code, strict=False
        )
    if updated.state == "exited" and agent.state not in ("done", "exited", "crashed"):
        journal_note(
            cfg,
            agent.name,
            f"{agent.name} exited without reporting done (code {code})",
            f"Task: {agent.task_summary or '(none)'}\nState before: {agent.state}",
            ["crash"],
        )
    return updated


def reconcile(cfg: Config, tmux: Tmux | None = None, *, inside: bool = False) -> list[Agent]:
    """Bring the registry in line with the live tmux server (one tmux call).

    An agent recorded on another server than the one running (or when none
    runs) is marked exited: that server ended, and its pane ids now name
    other panes or nothing. A pane that died or vanished while its agent was
    live marks it exited with the code tmux recorded. A dead monitor pane is
    started again. Returns the agents that changed.

    ``inside``: the caller lives in a pane of the server (the monitor). When
    no server answers, such a caller is going down with it and changes
    nothing: the next `cmux start` (or status, send) records what the dead
    server left, and says so.
    """
    tmux = tmux or Tmux.for_config(cfg)
    # The registry first, then the panes: a record read here got its pane
    # before the listing below, so an agent spawned meanwhile is never taken
    # for one whose pane is gone.
    # An agent on another host (``host``) lives on that host's server, not this one.
    agents = [a for a in registry.list_agents(cfg.data) if a.state in ENDING and not a.host]
    panes = {p.pane_id: p for p in tmux.list_panes()}
    server = next((p.server for p in panes.values() if p.server), None)
    if server is None and inside:
        return []
    if server is not None:
        mend_monitor(cfg, tmux, list(panes.values()))
    changed = []
    for agent in agents:
        if not registry.on_server(agent, server):
            if agent.pane_id or server is None:
                changed.append(_mark_exited(cfg, agent, None, SERVER_ENDED))
            continue  # (no pane yet, on the live server: being spawned)
        pane = panes.get(agent.pane_id or "")
        if pane is not None and pane.dead and pane.dead_status is None and pane.dead_signal is None:
            pane = _wait_for_status(tmux, pane)
        if pane is None:
            changed.append(_mark_exited(cfg, agent, None, "its pane is gone"))
        elif pane.dead and pane.dead_signal is not None:
            code = 128 + pane.dead_signal
            changed.append(_mark_exited(cfg, agent, code, "a signal ended its process"))
        elif pane.dead and pane.dead_status is None:
            changed.append(_mark_exited(cfg, agent, None, "its process ended"))
        elif pane.dead:
            changed.append(_mark_exited(cfg, agent, pane.dead_status, "its process exited"))
        elif agent.live and left_a_shell(agent, pane):
            changed.append(_mark_crashed(cfg, agent, foreground(pane.pid or 0)))
    return changed


# -- a program gone, its shell alive -------------------------------------------------------


def foreground(pid: int) -> tuple[int, int, str] | None:
    """(the process group of ``pid``, the foreground group of its terminal,
    the name of that group's leader), read from /proc; None where there is
    no /proc or the process is gone."""
    if pid <= 0:
        return None
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        pgrp, tpgid = int(fields[2]), int(fields[5])
        with open(f"/proc/{tpgid}/comm", encoding="utf-8", errors="replace") as fh:
            comm = fh.read().strip()
    except (OSError, IndexError, ValueError):
        return None
    return pgrp, tpgid, comm


def runs_a_shell(argv: list[str]) -> bool:
    """Whether the agent's own program is an interactive shell (the shell
    profile, or a profile whose command is one): its prompt is its work."""
    words = argv
    if len(argv) == 3 and argv[:2] == ["sh", "-c"]:  # a --command: its own words
        try:
            words = shlex.split(argv[2])
        except ValueError:
            return False
    return bool(words) and os.path.basename(words[0]) in SHELLS and "-c" not in words[1:]


def shell_took_over(fg: tuple[int, int, str] | None, argv: list[str], profile: str) -> bool:
    """The pure rule: the terminal's foreground belongs to an interactive
    shell that is not cmux's wrapper's group, and the agent's program is not
    itself a shell."""
    if fg is None or profile == "shell" or runs_a_shell(argv):
        return False
    pgrp, tpgid, comm = fg
    return tpgid > 0 and tpgid != pgrp and comm in SHELLS


def left_a_shell(agent: Agent, pane: Pane) -> bool:
    return shell_took_over(foreground(pane.pid or 0), agent.command, agent.profile)


def _mark_crashed(cfg: Config, agent: Agent, fg: tuple[int, int, str] | None) -> Agent:
    shell = fg[2] if fg else "a shell"
    updated = registry.transition(
        cfg.data,
        agent.name,
        "crashed",
        reason=f"its program ended; {shell} took over its pane",
        strict=False,
        only_from=LIVE,
    )
    if updated.state == "crashed" and agent.state != "crashed":
        journal_note(
            cfg,
            agent.name,
            f"{agent.name} crashed: its program ended, its pane shows {shell}",
            f"Task: {agent.task_summary or '(none)'}\nState before: {agent.state}",
            ["crash"],
        )
    return updated


def check(cfg: Config) -> None:
    """The cheap look a person's command takes (`cmux send`): reconcile, and so
    mend a dead monitor pane; tmux trouble here never fails the command."""
    try:
        reconcile(cfg)
    except TmuxError as exc:
        log.info("no reconcile: %s", exc)


def _wait_for_status(tmux: Tmux, pane: Pane) -> Pane | None:
    """A pane dead without an exit status, DEAD_GRACE seconds later at most.

    tmux sees a pane die in two steps, its terminal closing and its process
    being reaped; in between (normally a moment, forever if tmux missed the
    SIGCHLD) the status is not known yet. tmux is asked to reap at once, and
    the status awaited, so a code is never lost by looking too early.
    """
    tmux.reap(pane.server)
    deadline = time.monotonic() + DEAD_GRACE
    while True:
        now = tmux.pane(pane.pane_id)
        if now is None or now.server != pane.server:
            return None
        if now.dead_status is not None or now.dead_signal is not None or not now.dead:
            return now
        if time.monotonic() > deadline:
            return now
        time.sleep(0.02)


def mend_monitor(cfg: Config, tmux: Tmux, panes: list[Pane], *, delay: float = 0.0) -> bool:
    """Start the monitor pane again if it is dead (True if it was).

    The keeper in that pane restarts the monitor itself; this is for when the
    keeper is gone too and tmux's pane-died hook did not fire (tmux < 3.5 can
    miss it). Only a dead pane is respawned, so of two menders one wins.
    """
    mine = [p for p in panes if p.window_name == MONITOR and p.session == cfg.session_name]
    if not mine or not mine[0].dead:
        return False
    try:
        tmux.respawn_pane(mine[0].pane_id, monitor_argv(delay), env=base_env(cfg), kill=False)
    except TmuxError:
        return False  # someone else respawned it first, or it is gone
    events.record(cfg.data, "daemon-start", daemon="monitor", reason="its pane was dead")
    return True
