"""Watchdogs: the monitor window's once-a-second look at the agents.

- Nobody has done anything for ``idle_nudge`` seconds while work is open:
  nudge the supervisor.
- A worker past ``worker_time_limit``: warn it, and ``worker_grace`` seconds
  later end it and report to its parent.
- A worker whose pane died without reporting done: report to its parent.
- A worker at 80 % of its token budget (or of the team's): warn it and its
  parent; at 100 % interrupt it and ask for its report; ``worker_grace``
  seconds later stop it (cmux/health/budget.py).
- A message delivered to an idle Claude agent and not read by its model for
  ``[mail] read_timeout`` seconds: deliver it again, once; still unread,
  tell its sender and the person (cmux/mail/receipts.py).
- The supervisor's pane died: start it again (``spawn.respawn``: with its
  conversation when its transcript is there, else afresh with the journal's
  memory), with back-off, at most ``supervisor_restarts``
  times per ``supervisor_restart_window``; past that, alert the human.
- A dead daemon is restarted by the monitor itself (cmux/daemons.py).
- An agent the model API refused (``rate-limited``, ``overloaded``: its
  StopFailure hook said so) is asked to continue ``[claude] retry_after``
  seconds later: a notice in its mailbox, and the agent made ``idle`` so the
  router types it in (Claude Code, told so, goes on where the error stopped
  it). Refused again, it waits again.
- A ``busy`` agent whose screen (spinners aside), transcript and record have
  not changed for ``[health] stuck_after`` seconds is ``stuck``: its parent
  gets its last screen lines; with ``stuck_action = "interrupt"`` it is
  interrupted too (Escape for Claude Code, C-c for others). It is ``busy``
  again as soon as anything moves.

On several hosts (``[cluster] nats``): each host's watchdogs act only on its
own agents (a record with ``host`` is another host's: its pane, time limit
and death are that host's watchdogs' to see, and their reports cross as
mail). The idle nudge is the watchdog's where the supervisor lives, and it
counts the whole team: the other hosts' agents (is work open there?) and
their events (activity) come from a :class:`Team` (the monitor passes its
cmux.cluster.feed.TeamFeed).

``tick`` must cost next to nothing when nothing happens: it stats the agents
folder and the event log, and reads only what was appended to the log since
the last look. The decisions are pure functions below; :class:`Watchdog`
keeps the memory (``state/watchdog.json``, so a restarted monitor does not
report the same death twice) and acts through an :class:`Actions` object.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from cmux import events
from cmux.agents.adapters import capabilities
from cmux.agents.registry import UNABLE, Agent, State
from cmux.config import Config
from cmux.errors import CmuxError
from cmux.fsutil import read_json, write_json
from cmux.health.budget import WARN_AT, Budgets, Marks, decide, share
from cmux.health.config import HealthSettings
from cmux.paths import HUMAN, SUPERVISOR, DataRoot

log = logging.getLogger(__name__)

ALERT_PREFIX = "watchdog: "
OPEN_STATES: frozenset[State] = (
    frozenset[State]({"starting", "idle", "busy", "waiting", "blocked"}) | UNABLE
)
RESUMABLE: frozenset[State] = frozenset({"rate-limited", "overloaded"})
GONE_WITHOUT_DONE: frozenset[State] = frozenset({"exited", "crashed"})
STUCK_LOOK = 5.0  # seconds between looks at a busy agent's screen and transcript
RECEIPTS_EVERY = 2.0  # seconds between looks for delivered but unread mail
BUDGET_EVERY = 5.0  # seconds between looks at the transcripts' token counts
STALE = 120.0  # exits older than this when the watchdog starts are history, not news
# Events that happen to an agent without the agent doing anything.
PASSIVE = frozenset({"send", "claim", "hold", "release", "deadletter", "register", "watchdog"})


# -- decisions (pure) ---------------------------------------------------------------------


def work_open(agents: Iterable[Agent]) -> bool:
    """Some worker is alive and has not reported done."""
    return any(a.role == "worker" and a.state in OPEN_STATES for a in agents)


def nudges_here(agents: Iterable[Agent]) -> bool:
    """The idle nudge is the watchdog's of the supervisor's host: not this
    one's when its record of the supervisor says it lives on another."""
    sup = next((a for a in agents if a.name == SUPERVISOR), None)
    return sup is None or not sup.host


def is_activity(event: dict[str, Any], agents: set[str]) -> bool:
    """Did an agent do something? (Mail cmux or a person sent does not count.)"""
    name = str(event.get("event", ""))
    if name == "send":
        return event.get("sender") in agents
    if name in PASSIVE or name.startswith("deliver"):
        return False
    return event.get("agent") in agents


def idle_due(
    now: float, last_activity: float, nudged_at: float | None, limit: float, open_work: bool
) -> bool:
    if limit <= 0 or not open_work:
        return False
    return now - max(last_activity, nudged_at or 0.0) >= limit


def time_limit_action(
    agent: Agent, now: float, limit: float, grace: float, warned_at: float | None
) -> str | None:
    """'warn' when a worker reaches its limit, 'end' ``grace`` seconds later."""
    if limit <= 0 or agent.role != "worker" or agent.state not in OPEN_STATES:
        return None
    if now - agent.created < limit:
        return None
    if warned_at is None:
        return "warn"
    return "end" if now - warned_at >= grace else None


def state_before(agent: Agent) -> str:
    """The state an agent left for its current one (from ``last_event``)."""
    return agent.last_event.split(" → ", 1)[0].strip() if " → " in agent.last_event else ""


def died_without_done(agent: Agent) -> bool:
    return (
        agent.role == "worker"
        and agent.state in GONE_WITHOUT_DONE
        and state_before(agent) != "done"
    )


def resume_due(agent: Agent, now: float, wait: float) -> bool:
    """A rate-limited or overloaded agent waited ``wait`` seconds: ask it to
    continue. (An auth-error waits for a person: no resume fixes a key.)"""
    if agent.state not in RESUMABLE or not agent.pane_id:
        return False
    since = agent.since if agent.since is not None else agent.updated
    return now - since >= wait


@dataclass
class Progress:
    """What a busy agent showed at the last look, and when it last moved."""

    screen: str | None
    transcript: int
    moved: float
    looked: float


def stuck_action(
    agent: Agent, before: Progress | None, now_seen: Progress, limit: float
) -> str | None:
    """'stuck' when a busy agent has not moved for ``limit`` seconds (its
    screen, its transcript, its record); 'moving' when a stuck one moved
    again; None otherwise. ``now_seen.moved`` is already brought up to date."""
    if limit <= 0:
        return None
    if agent.state == "stuck":
        return "moving" if before is not None and now_seen.moved > before.moved else None
    if agent.state != "busy":
        return None
    quiet_since = max(now_seen.moved, agent.updated)
    return "stuck" if now_seen.looked - quiet_since >= limit else None


def moved(before: Progress | None, screen: str | None, transcript: int, now: float) -> Progress:
    """This look, with ``moved`` the time anything last changed."""
    if before is None:
        return Progress(screen, transcript, now, now)
    changed = transcript != before.transcript or (
        screen is not None and before.screen is not None and screen != before.screen
    )
    return Progress(
        screen if screen is not None else before.screen,
        transcript,
        now if changed else before.moved,
        now,
    )


def restart_backoff(n: int) -> float:
    """Seconds to wait before the (n+1)th restart in a window: 0, 1, 2, 4 … 60."""
    return 0.0 if n <= 0 else float(min(60, 2 ** (n - 1)))


def supervisor_action(
    agent: Agent | None, restarts: list[float], now: float, limit: int, window: float
) -> str | None:
    """'restart', 'wait' (back-off), 'give-up' (past the limit) or None."""
    if agent is None or agent.role != "supervisor" or agent.state not in GONE_WITHOUT_DONE:
        return None
    recent = [t for t in restarts if now - t < window]
    if len(recent) >= limit:
        return "give-up"
    if recent and now < recent[-1] + restart_backoff(len(recent)):
        return "wait"
    return "restart"


# -- memory --------------------------------------------------------------------------------


@dataclass
class Memory:
    reported: list[str] = field(default_factory=list)  # "name#incarnation" deaths reported
    warned: dict[str, float] = field(default_factory=dict)  # "name#incarnation" -> when
    ended: list[str] = field(default_factory=list)
    supervisor_restarts: list[float] = field(default_factory=list)
    budget: dict[str, dict[str, float | None]] = field(default_factory=dict)  # key -> Marks
    resumed: dict[str, float] = field(default_factory=dict)  # "name#incarnation" -> since
    gave_up: bool = False
    nudged_at: float | None = None

    @classmethod
    def load(cls, path: Path) -> Memory:
        try:
            d = read_json(path)
            known = set(cls.__dataclass_fields__)
            return cls(**{k: v for k, v in d.items() if k in known})
        except (OSError, ValueError, TypeError):
            return cls()

    def save(self, path: Path) -> None:
        self.reported = self.reported[-500:]
        self.ended = self.ended[-500:]
        self.resumed = dict(list(self.resumed.items())[-500:])
        write_json(path, asdict(self))


def _key(agent: Agent) -> str:
    return f"{agent.name}#{agent.incarnation}"


# -- acting -----------------------------------------------------------------------------------


class Actions(Protocol):
    def agents(self) -> list[Agent]: ...
    def tell(self, to: str, subject: str, body: str) -> None: ...
    def note(self, name: str, text: str) -> None: ...
    def end(self, name: str, reason: str) -> str: ...
    def respawn(self, name: str, reason: str) -> str | None: ...
    def session_running(self) -> bool: ...
    def alert(self, text: str) -> None: ...
    def alert_active(self) -> bool: ...
    def event(self, kind: str, agent: str | None, **fields: Any) -> None: ...
    def usage(self, agents: list[Agent]) -> dict[str, int]: ...
    def screen(self, agent: Agent) -> str | None: ...
    def resume(self, agent: Agent, body: str) -> None: ...
    def set_state(self, agent: Agent, state: State, reason: str) -> None: ...
    def interrupt(self, agent: Agent, reason: str) -> bool: ...


class Team(Protocol):
    """The other hosts, as the watchdogs see them (cmux/cluster/feed.py)."""

    def drain(self) -> list[tuple[str, Any]]: ...
    def agents(self, local: list[Agent]) -> list[Agent]: ...


class CmuxActions:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg

    def agents(self) -> list[Agent]:
        from cmux.agents import registry

        return registry.list_agents(self.cfg.data)

    def tell(self, to: str, subject: str, body: str) -> None:
        from cmux.health.alerts import tell

        tell(self.cfg, to, subject, body)

    def note(self, name: str, text: str) -> None:
        from cmux.agents import registry

        registry.update(self.cfg.data, name, note=text)

    def end(self, name: str, reason: str) -> str:
        from cmux.agents import spawn

        r = spawn.kill(self.cfg, name, reason=reason)
        if r.kept_branch:
            return f"Its branch {r.kept_branch} is kept at {r.kept_worktree}: {r.reason}."
        return ""

    def respawn(self, name: str, reason: str) -> str | None:
        """Bring ``name`` back; says how (with its conversation, or why not)."""
        from cmux.agents import spawn

        agent = spawn.respawn(self.cfg, name, reason=reason)
        if agent.resume == "conversation":
            return "with its conversation (the same session)"
        if agent.resume == "fresh":
            return "afresh with its memory: its conversation could not be resumed"
        return "by running its command again"

    def session_running(self) -> bool:
        from cmux.agents import server

        return server.is_running(self.cfg)

    def alert(self, text: str) -> None:
        from cmux.health.alerts import raise_alert

        raise_alert(self.cfg, ALERT_PREFIX + text)

    def alert_active(self) -> bool:
        from cmux.health.alerts import alert_active

        return alert_active(self.cfg.data, ALERT_PREFIX)

    def event(self, kind: str, agent: str | None, **fields: Any) -> None:
        events.record(self.cfg.data, "watchdog", agent, kind=kind, **fields)

    def usage(self, agents: list[Agent]) -> dict[str, int]:
        from cmux.agents import cost

        return {name: t.total for name, t in cost.usage(self.cfg.data, agents).items()}

    def _tmux(self) -> Any:
        from cmux.tmux import Tmux

        return Tmux.for_config(self.cfg)

    def screen(self, agent: Agent) -> str | None:
        from cmux.errors import TmuxError

        if not agent.pane_id:
            return None
        try:
            text: str = self._tmux().capture(agent.pane_id)
            return text
        except TmuxError:
            return None

    def resume(self, agent: Agent, body: str) -> None:
        """The notice first, then idle: the router, woken by the record's
        change, types it (with any mail held while the agent could not work)."""
        from cmux.agents import registry
        from cmux.mail import store

        store.send(self.cfg, to=agent.name, body=body, sender="cmux", kind="notice")
        registry.transition(
            self.cfg.data,
            agent.name,
            "idle",
            reason="asked to continue after the API refused it",
            strict=False,
            only_from={agent.state},
        )

    def set_state(self, agent: Agent, state: State, reason: str) -> None:
        from cmux.agents import registry

        registry.transition(
            self.cfg.data, agent.name, state, reason=reason, strict=False, only_from={agent.state}
        )

    def interrupt(self, agent: Agent, reason: str) -> bool:
        """Escape for Claude Code (its turn ends: idle), C-c for others."""
        from cmux.agents import screen

        return screen.interrupt(self.cfg, agent.name, reason=reason)


def _mtime(path: Path) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except FileNotFoundError:
        return 0


def _size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0


class Watchdog:
    def __init__(
        self,
        data: DataRoot,
        settings: HealthSettings,
        actions: Actions,
        *,
        now: float,
        budgets: Budgets | None = None,
        read_timeout: float = 0.0,
        team: Team | None = None,
    ) -> None:
        self.data = data
        self.team = team  # the other hosts' agents and events ([cluster] nats)
        self.team_agents: list[Agent] | None = None  # self.agents with theirs; None: again
        self.read_timeout = read_timeout
        self.receipts_at = 0.0
        self.s = settings
        self.budgets = budgets or Budgets()
        self.budget_at = 0.0
        self.act = actions
        self.started = now
        self.memory_file = data.state_dir / "watchdog.json"
        self.mem = Memory.load(self.memory_file)
        self.agents: list[Agent] = []
        self.agents_sig = -1
        self.events_offset = _size(data.events_file)
        self.last_activity = now
        self.progress: dict[str, Progress] = {}  # "name#incarnation" -> the last look

    # -- looking -------------------------------------------------------------------

    def _refresh_agents(self) -> None:
        sig = _mtime(self.data.agents_dir)
        if sig != self.agents_sig:
            self.agents_sig = sig
            self.agents = self.act.agents()
            self.team_agents = None

    def _read_events(self, now: float) -> None:
        size = _size(self.data.events_file)
        if size == self.events_offset:
            return
        if size < self.events_offset:  # the log was replaced
            self.events_offset = 0
        batch, self.events_offset = events.read(self.data, offset=self.events_offset)
        names = {a.name for a in self.agents}
        if any(is_activity(e, names) for e in batch):
            self.last_activity = now

    def _read_team(self, now: float) -> list[Agent]:
        """Every host's agents, and the other hosts' events as activity."""
        if self.team is None:
            return self.agents
        changes = self.team.drain()
        if self.team_agents is None or any(kind == "agent" for kind, _ in changes):
            self.team_agents = self.team.agents(self.agents)
        names = {a.name for a in self.team_agents}
        if any(kind == "event" and is_activity(e, names) for kind, e in changes):
            self.last_activity = now
        return self.team_agents

    # -- the tick ------------------------------------------------------------------

    def tick(self, now: float) -> None:
        self._refresh_agents()
        self._read_events(now)
        changed = False
        for agent in self.agents:
            if agent.host:
                continue  # on another host: the watchdogs there watch it
            changed |= self._dead_worker(agent, now)
            changed |= self._time_limit(agent, now)
            changed |= self._resume(agent, now)
            self._stuck(agent, now)
        changed |= self._supervisor(now)
        changed |= self._idle(now, self._read_team(now))
        if self.read_timeout > 0 and now - self.receipts_at >= RECEIPTS_EVERY:
            self.receipts_at = now
            self._receipts(now)
        if self.budgets.any and now - self.budget_at >= BUDGET_EVERY:
            self.budget_at = now
            changed |= self._budgets(now)
        if changed:
            self.mem.save(self.memory_file)

    def _idle(self, now: float, team: list[Agent]) -> bool:
        if not nudges_here(team) or not idle_due(
            now, self.last_activity, self.mem.nudged_at, self.s.idle_nudge, work_open(team)
        ):
            return False
        self.mem.nudged_at = now
        quiet = now - self.last_activity
        open_ones = ", ".join(
            f"{a.name} ({a.state}{f' on {a.host}' if a.host else ''})"
            for a in team
            if a.role == "worker" and a.state in OPEN_STATES
        )
        self.act.tell(
            SUPERVISOR,
            "watchdog: all quiet",
            f"No agent has done anything for {_span(quiet)} while work is open: {open_ones}. "
            "Check on them (`tools/workers status`), answer what they wait for, or end "
            "what is stuck.",
        )
        self.act.event("idle-nudge", None, quiet=round(quiet))
        return True

    def _resume(self, agent: Agent, now: float) -> bool:
        wait = self.s.retry_after
        if not resume_due(agent, now, wait):
            return False
        key = _key(agent)
        since = agent.since if agent.since is not None else agent.updated
        if self.mem.resumed.get(key) == since:
            return False  # asked once for this refusal; the router has it
        self.mem.resumed[key] = since
        why = agent.last_event.split("refused: ", 1)[-1] if "refused: " in agent.last_event else ""
        try:
            self.act.resume(
                agent,
                f"The model API refused your last request ({agent.state}"
                + (f": {why}" if why else "")
                + "); "
                f"{_span(now - since)} have passed. Continue your task where you left off.",
            )
        except CmuxError as exc:
            log.warning("could not resume %s: %s", agent.name, exc)
            return True
        self.act.event("resumed", agent.name, after=round(now - since), was=agent.state)
        return True

    def _stuck(self, agent: Agent, now: float) -> None:
        """Look at a busy (or stuck) agent every STUCK_LOOK seconds at most."""
        limit = self.s.stuck_after
        key = _key(agent)
        if limit <= 0 or agent.state not in ("busy", "stuck") or not agent.pane_id:
            self.progress.pop(key, None)
            return
        before = self.progress.get(key)
        if before is not None and now - before.looked < min(STUCK_LOOK, limit / 3):
            return
        from cmux.agents.screen import fingerprint, last_lines

        text = self.act.screen(agent)
        seen = moved(
            before,
            fingerprint(text) if text is not None else None,
            _size(Path(agent.transcript)) if agent.transcript else 0,
            now,
        )
        self.progress[key] = seen
        action = stuck_action(agent, before, seen, limit)
        if action == "moving":
            self._safe(self.act.set_state, agent, "busy", "it moves again")
            return
        if action != "stuck":
            return
        quiet = now - max(seen.moved, agent.updated)
        self._safe(self.act.set_state, agent, "stuck", f"nothing moved for {_span(quiet)}")
        interrupt = self.s.stuck_action == "interrupt"
        to = agent.parent if agent.role != "supervisor" and agent.parent else HUMAN
        screen = last_lines(text or "") or "(its screen could not be read)"
        self.act.tell(
            to,
            f"watchdog: {agent.name} is stuck",
            f"{agent.name} has been busy for {_span(quiet)} with nothing moving: no hook "
            "event, no new line in its transcript, no change on its screen. "
            + (
                "cmux interrupted it. "
                if interrupt
                else "Look at it (`cmux attach`), send it a message, or end it. "
            )
            + f"Task: {agent.task_summary or '(none)'}. Its last screen lines:\n{screen}",
        )
        self.act.event("stuck", agent.name, quiet=round(quiet), interrupted=interrupt)
        if interrupt:
            try:
                self.act.interrupt(agent, "stuck")
            except CmuxError as exc:
                log.warning("could not interrupt %s: %s", agent.name, exc)
                return
            if capabilities.for_agent(agent).hooks:
                # Claude Code is back at its prompt, and no hook says so.
                self._safe(
                    self.act.set_state, replace(agent, state="stuck"), "idle", "interrupted by cmux"
                )

    def _time_limit(self, agent: Agent, now: float) -> bool:
        key = _key(agent)
        action = time_limit_action(
            agent, now, self.s.worker_time_limit, self.s.worker_grace, self.mem.warned.get(key)
        )
        if action == "warn":
            self.mem.warned[key] = now
            limit = _span(self.s.worker_time_limit)
            self.act.tell(
                agent.name,
                "watchdog: time limit",
                f"You have run past your time limit of {limit}. Finish now: commit what "
                "works, then report with `mailbox done` (or `mailbox blocked`). You will be "
                f"ended in {_span(self.s.worker_grace)}.",
            )
            self._safe(self.act.note, agent.name, f"past its time limit of {limit}")
            self.act.event("time-limit-warning", agent.name, limit=self.s.worker_time_limit)
            return True
        if action == "end" and key not in self.mem.ended:
            self.mem.ended.append(key)
            limit = _span(self.s.worker_time_limit)
            try:
                kept = self.act.end(agent.name, f"time limit of {limit}")
            except CmuxError as exc:
                kept = f"(ending it failed: {exc.message})"
            self.act.tell(
                agent.parent or SUPERVISOR,
                f"watchdog: ended {agent.name}",
                f"{agent.name} ran past its time limit of {limit} and did not report done "
                f"within {_span(self.s.worker_grace)} of the warning, so cmux ended it. "
                f"Task: {agent.task_summary or '(none)'}. Its screen is in "
                f"state/logs/{agent.name}.log. {kept}".strip(),
            )
            self.act.event("time-limit-ended", agent.name, limit=self.s.worker_time_limit)
            return True
        return False

    def _dead_worker(self, agent: Agent, now: float) -> bool:
        if not died_without_done(agent):
            return False
        key = _key(agent)
        if key in self.mem.reported:
            return False
        self.mem.reported.append(key)
        if agent.updated < self.started - STALE:
            return True  # it died before this watchdog was watching: old news
        code = agent.exit_code if agent.exit_code is not None else "unknown"
        how = (
            "crashed: its program ended and left a shell in its pane,"
            if agent.state == "crashed"
            else f"exited (code {code})"
        )
        self.act.tell(
            agent.parent or SUPERVISOR,
            f"watchdog: {agent.name} died",
            f"{agent.name} {how} without reporting done. "
            f"It was {state_before(agent) or 'working'}; task: {agent.task_summary or '(none)'}. "
            f"Its screen is in state/logs/{agent.name}.log. Spawn it again or give the task "
            "to someone else.",
        )
        self.act.event("died-without-done", agent.name, code=agent.exit_code)
        return True

    def _supervisor(self, now: float) -> bool:
        # (A supervisor on another host is that host's watchdog's to restart.)
        sup = next((a for a in self.agents if a.role == "supervisor" and not a.host), None)
        if self.mem.gave_up:
            if self.act.alert_active():
                return False
            # The human cleared the alert: try again from a clean slate.
            self.mem.gave_up = False
            self.mem.supervisor_restarts = []
            return True
        action = supervisor_action(
            sup,
            self.mem.supervisor_restarts,
            now,
            self.s.supervisor_restarts,
            self.s.supervisor_restart_window,
        )
        if action is None or action == "wait" or sup is None:
            return False
        if not self.act.session_running():
            return False
        if action == "give-up":
            self.mem.gave_up = True
            n = len(self.mem.supervisor_restarts)
            self.act.alert(
                f"the supervisor keeps dying ({n} restarts within "
                f"{_span(self.s.supervisor_restart_window)}); cmux stopped restarting it. See "
                f"state/logs/{SUPERVISOR}.log, then `cmux health --clear-alert` to let cmux "
                "try again."
            )
            self.act.event("supervisor-gave-up", SUPERVISOR, restarts=n)
            return True
        self.mem.supervisor_restarts = [
            t for t in self.mem.supervisor_restarts if now - t < self.s.supervisor_restart_window
        ] + [now]
        code = sup.exit_code if sup.exit_code is not None else "unknown"
        try:
            how = self.act.respawn(SUPERVISOR, f"its pane died (code {code})")
        except CmuxError as exc:
            log.warning("could not restart the supervisor: %s", exc)
            self.act.event("supervisor-restart-failed", SUPERVISOR, error=exc.message)
            return True
        self.act.event(
            "supervisor-restarted",
            SUPERVISOR,
            code=sup.exit_code,
            n=len(self.mem.supervisor_restarts),
        )
        self.act.tell(
            HUMAN,
            "watchdog: supervisor restarted",
            f"The supervisor's process exited (code {code}); cmux started it again "
            f"{how or 'with its memory'}. Its old screen is in state/logs/supervisor.log.",
        )
        return True

    def _receipts(self, now: float) -> None:
        """Delivered but unread by an idle Claude agent's model: again, then tell."""
        from cmux.mail import claims, receipts, store

        for agent in self.agents:
            if agent.host or not agent.live:  # another host's: its receipts are there
                continue
            if not receipts.has_receipts(capabilities.adapter_of(agent)):
                continue
            waiting = receipts.unread(self.data, agent.name)
            if not waiting:
                continue
            marks = receipts.load(self.data, agent.name)
            for msg_id, at in waiting:
                action = receipts.decide(
                    at, marks.get(msg_id, {}), now, self.read_timeout, agent.state == "idle"
                )
                if action == "redeliver":
                    try:
                        if claims.redeliver(self.data, agent.name, msg_id):
                            receipts.mark(self.data, agent.name, msg_id, "redelivered")
                    except CmuxError:
                        log.exception("could not deliver %s again", msg_id)
                elif action == "report":
                    receipts.mark(self.data, agent.name, msg_id, "reported")
                    msg = store.find(self.data, agent.name, msg_id)
                    about = (
                        f"Message {msg_id} to {agent.name} was delivered twice, but its model "
                        f"has not read it ({_span(self.read_timeout)} after each delivery, "
                        "while it was idle). `cmux mail show "
                        f"{msg_id}` has its trail; `cmux attach` to look at {agent.name}."
                    )
                    sender = msg.sender if msg else None
                    if sender and sender not in (HUMAN, "cmux", agent.name):
                        self.act.tell(sender, f"watchdog: {agent.name} has not read", about)
                    self.act.tell(HUMAN, f"watchdog: {agent.name} has not read", about)
                    self.act.event("unread", agent.name, id=msg_id, sender=sender)

    def _budgets(self, now: float) -> bool:
        """Each live worker against its own budget and the team's."""
        used = self.act.usage(self.agents)
        total = sum(used.values())
        changed = False
        team = self.budgets.total
        if team and total >= WARN_AT * team and "team" not in self.mem.budget:
            self.mem.budget["team"] = {"warned": now}
            self.act.tell(
                HUMAN,
                "watchdog: team token budget",
                f"The team has used {share(total, team)} of [cmux] max_tokens_total. At 100 % "
                "every worker is interrupted and asked to report.",
            )
            self.act.event("budget-warning", None, scope="team", used=total, limit=team)
            changed = True
        for agent in self.agents:
            if agent.role != "worker" or not agent.live or agent.host:
                continue  # (one on another host: that host's watchdogs act on it)
            scopes = [("worker", used.get(agent.name, 0), self.budgets.per_worker)]
            scopes.append(("team", total, team))
            for scope, n, limit in scopes:
                changed |= self._budget(agent, scope, n, limit, now)
        return changed

    def _budget(self, agent: Agent, scope: str, used: int, limit: int, now: float) -> bool:
        key = f"{_key(agent)}:{scope}"
        marks = Marks(**self.mem.budget.get(key, {}))
        action = decide(used, limit, marks, now, self.s.worker_grace)
        if action is None:
            return False
        what = (
            "its token budget ([claude] max_tokens)"
            if scope == "worker"
            else ("the team's token budget ([cmux] max_tokens_total)")
        )
        parent = agent.parent or SUPERVISOR
        if action == "warn":
            marks.warned = now
            self.act.tell(
                agent.name,
                "watchdog: token budget",
                f"You have used {share(used, limit)} of {what.replace('its', 'your')}. Wrap up: "
                "at 100 % you are interrupted and asked to report.",
            )
            self.act.tell(
                parent,
                f"watchdog: {agent.name} near its budget",
                f"{agent.name} has used {share(used, limit)} of {what}.",
            )
        elif action == "interrupt":
            marks.interrupted = now
            if marks.warned is None:
                marks.warned = now
            self._safe(self.act.interrupt, agent, f"{scope} token budget spent")
            grace = _span(self.s.worker_grace)
            self.act.tell(
                agent.name,
                "watchdog: token budget spent",
                f"You have used {share(used, limit)} of {what.replace('its', 'your')}, so cmux "
                "interrupted you. Do no more work: commit what you have, then report with "
                f"`mailbox done` (or `mailbox blocked`). You will be stopped in {grace}.",
            )
            self.act.tell(
                parent,
                f"watchdog: {agent.name} spent its budget",
                f"{agent.name} used {share(used, limit)} of {what}; cmux interrupted it and "
                f"asked for its report. It is stopped in {grace} (its work is kept).",
            )
            self._safe(self.act.note, agent.name, f"token budget spent ({share(used, limit)})")
        else:
            marks.ended = now
            try:
                kept = self.act.end(agent.name, f"{scope} token budget spent")
            except CmuxError as exc:
                kept = f"(stopping it failed: {exc.message})"
            self.act.tell(
                parent,
                f"watchdog: stopped {agent.name}",
                f"{agent.name} spent {what} ({share(used, limit)}) and was stopped "
                f"{_span(self.s.worker_grace)} after it was interrupted. {kept}".strip(),
            )
        self.mem.budget[key] = asdict(marks)
        self.act.event(f"budget-{action}", agent.name, scope=scope, used=used, limit=limit)
        return True

    @staticmethod
    def _safe(fn: Any, *args: Any) -> None:
        try:
            fn(*args)
        except (CmuxError, OSError):
            log.exception("watchdog action failed")


def _span(seconds: float) -> str:
    s = int(seconds)
    if s >= 3600 and s % 3600 == 0:
        return f"{s // 3600}h"
    if s >= 60 and s % 60 == 0:
        return f"{s // 60}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


# -- the entry point the monitor calls ----------------------------------------------------------

_WATCHDOGS: dict[Path, Watchdog | None] = {}


def tick(cfg: Config, now: float | None = None, *, team: Team | None = None) -> None:
    """Called by the monitor once a second; cheap when nothing changed.
    ``team``: the other hosts ([cluster] nats), taken at the first call."""
    now = time.time() if now is None else now
    root = cfg.data.root
    if root not in _WATCHDOGS:
        try:
            from cmux.health.config import settings

            s = settings(cfg)
        except CmuxError as exc:
            log.error("watchdogs are off: %s", exc)
            _WATCHDOGS[root] = None
            return
        from cmux.health.budget import budgets
        from cmux.mail.receipts import DEFAULT_READ_TIMEOUT

        timeout = float(cfg.section("mail").get("read_timeout", DEFAULT_READ_TIMEOUT))
        _WATCHDOGS[root] = Watchdog(
            cfg.data,
            s,
            CmuxActions(cfg),
            now=now,
            budgets=budgets(cfg.raw),
            read_timeout=timeout,
            team=team,
        )
    dog = _WATCHDOGS[root]
    if dog is not None:
        dog.tick(now)


def reset() -> None:
    """Forget every watchdog of this process (tests)."""
    _WATCHDOGS.clear()
