"""Exact resume: which agents come back after their tmux server ended, and how.

What the last session left is kept in ``state/session.json`` (``LastSession``):
the identity of its tmux server, and, when it ended with ``cmux stop``, the
agents that stop ended (name and incarnation). ``cmux start`` reads it:

- the server died under the session (``tmux kill-server``, a crash, a
  reboot): ``start`` brings back every agent that was live on it, by default;
- the session ended with ``cmux stop``: only ``start --resume`` brings back
  the agents that stop ended; a plain ``start`` begins anew (and says so);
- ``start --fresh`` always begins anew: what was live stays exited.

An agent counts as live on the dead server when its record is on that server
and it is still live, or it exited there without an exit code: the server's
end took it (a reconcile marked it, or Claude Code's SessionEnd hook ran as
its terminal closed). An agent whose program ended by itself has an exit
code (the pane-died hook recorded it): its parent was told, it stays ended.

How each one comes back (``plan``, pure):

- ``conversation``: an agent whose program resumes (its adapter's
  ``resumes``: Claude Code, Codex, Gemini) and whose transcript is still
  there continues it (``claude --resume <session id>``, ``codex resume``,
  ``gemini --resume``: the same session id);
- ``fresh``: such an agent whose conversation cannot be continued (no
  session id, its transcript is gone, or continuing it failed last time)
  starts anew with its task and the journal's memory, and is told why;
- ``rerun``: any other program (shell, demo, ``--command``) has no
  conversation: its command runs again with its task.

Either way the agent keeps its name, role, parent, working directory,
worktree, branch and task; its incarnation goes up by one; its undelivered
mail waits in its Maildir until the router can type it (once each); its
state after that comes from its hooks as for any start.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from cmux.agents.registry import GONE, LIVE, Agent, State
from cmux.fsutil import read_json, write_json
from cmux.paths import DataRoot

How = Literal["conversation", "fresh", "rerun"]
Mode = Literal["auto", "resume", "fresh"]
FILE_NAME = "session.json"


# -- what the last session left ------------------------------------------------------


@dataclass
class LastSession:
    """The last session of a data root: its server, and how it ended."""

    server: str | None = None
    started: float = 0.0
    stopped: float | None = None  # set by `cmux stop`; None: it did not end cleanly
    ended: dict[str, int] = field(default_factory=dict)  # by `cmux stop`: name -> incarnation


def session_file(data: DataRoot) -> Path:
    return data.state_dir / FILE_NAME


def load(data: DataRoot) -> LastSession | None:
    try:
        d = read_json(session_file(data))
        known = set(LastSession.__dataclass_fields__)
        return LastSession(**{k: v for k, v in d.items() if k in known})
    except (OSError, ValueError, TypeError):
        return None


def save(data: DataRoot, last: LastSession) -> None:
    write_json(session_file(data), asdict(last))


def started(data: DataRoot, server: str | None) -> None:
    """A session began on ``server`` (called by `cmux start`)."""
    save(data, LastSession(server=server, started=time.time()))


def stopped(data: DataRoot, ended: Iterable[Agent]) -> None:
    """`cmux stop` ended the session and ``ended`` with it."""
    last = load(data) or LastSession()
    last.stopped = time.time()
    last.ended = {a.name: a.incarnation for a in ended}
    save(data, last)


# -- decisions (pure) --------------------------------------------------------------------


def should_resume(mode: Mode, last: LastSession | None) -> bool:
    """Whether `cmux start` brings agents back: always with --resume, never
    with --fresh, and by default only when the last session's server died
    under it (it was never stopped)."""
    if mode == "fresh":
        return False
    if mode == "resume":
        return True
    return last is not None and last.stopped is None


def died_with_server(agent: Agent, server: str | None) -> bool:
    """The agent was live on ``server`` when that server ended."""
    if server is None or agent.server != server:
        return False
    if agent.state in LIVE:
        return True
    return agent.state == "exited" and agent.exit_code is None


def candidates(agents: Iterable[Agent], last: LastSession | None) -> list[Agent]:
    """The agents that were live when the last session ended (supervisor first).

    After `cmux stop`: those it ended, in the incarnation it ended (a name
    spawned or killed again since is left alone). After a dead server: those
    that were live on it (``died_with_server``).
    """
    if last is None:
        return []
    out: list[Agent] = []
    for a in agents:
        if last.stopped is not None:
            if a.state in GONE and last.ended.get(a.name) == a.incarnation:
                out.append(a)
        elif died_with_server(a, last.server):
            out.append(a)
    out.sort(key=lambda a: (a.role != "supervisor", a.created, a.name))
    return out


@dataclass(frozen=True)
class Plan:
    how: How
    session_id: str | None = None  # the conversation to continue ("conversation")
    why: str = ""  # why the conversation could not be continued ("fresh")


def state_before(agent: Agent) -> str:
    """The state an agent left for its current one (from ``last_event``)."""
    return agent.last_event.split(" → ", 1)[0].strip() if " → " in agent.last_event else ""


def plan(agent: Agent, *, resumes: bool, transcript: Path | None) -> Plan:
    """How ``agent`` comes back. ``resumes``: its program can continue a
    conversation (its adapter's ``resumes``); ``transcript``: its transcript
    file if one exists."""
    if not resumes:
        return Plan("rerun")
    if not agent.session_id:
        return Plan("fresh", why="no session id was recorded for it")
    if transcript is None:
        where = f" ({agent.transcript})" if agent.transcript else ""
        why = f"the transcript of session {agent.session_id} is not there{where}"
        return Plan("fresh", why=why)
    if agent.resume == "conversation" and state_before(agent) == "starting":
        return Plan("fresh", why=f"continuing session {agent.session_id} failed last time")
    return Plan("conversation", session_id=agent.session_id)


def carried_state(agent: Agent) -> State | None:
    """A report that outlives the restart: an agent that had declared itself
    done or blocked is brought back in that state (only new input ends it)."""
    before = agent.state if agent.state in LIVE else state_before(agent)
    if before == "done":
        return "done"
    return "blocked" if before == "blocked" else None


def was_working(agent: Agent) -> bool:
    """It was in the middle of a turn when it went (it is told to go on)."""
    before = agent.state if agent.state in LIVE else state_before(agent)
    return before in ("busy", "waiting")


def fresh_notice(why: str, role: str) -> str:
    """The first words of a fresh start whose conversation was lost."""
    rest = "your task follows; " if role != "supervisor" else ""
    return (
        f"[cmux] Your earlier conversation could not be resumed: {why}. This is a fresh "
        f"start: {rest}what the journal remembers is in your context "
        "(`journal search WORDS` finds more)."
    )


def comeback_notice(reason: str) -> str:
    """What an agent that was at work is told once its conversation is back."""
    return (
        f"[cmux] You were brought back after {reason}; your conversation is resumed. "
        "You were in the middle of your work then: check what was finished, and go on "
        "where you left off."
    )
