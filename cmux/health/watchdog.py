"""Watchdogs: the monitor window's once-a-second look at the agents.

- Nobody has done anything for ``idle_nudge`` seconds while work is open:
  nudge the supervisor.
- A worker past ``worker_time_limit``: warn it, and ``worker_grace`` seconds
  later end it and report to its parent.
- A worker whose pane died without reporting done: report to its parent.
- The supervisor's pane died: start it again (``spawn.respawn``: with its
  conversation when its transcript is there, else afresh with the journal's
  memory), with back-off, at most ``supervisor_restarts``
  times per ``supervisor_restart_window``; past that, alert the human.
- A dead daemon is restarted by the monitor itself (cmux/daemons.py).

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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from cmux import events
from cmux.agents.registry import Agent, State
from cmux.config import Config
from cmux.errors import CmuxError
from cmux.fsutil import read_json, write_json
from cmux.health.config import HealthSettings
from cmux.paths import HUMAN, SUPERVISOR, DataRoot

log = logging.getLogger(__name__)

ALERT_PREFIX = "watchdog: "
OPEN_STATES: frozenset[State] = frozenset({"starting", "idle", "busy", "waiting", "blocked"})
STALE = 120.0  # exits older than this when the watchdog starts are history, not news
# Events that happen to an agent without the agent doing anything.
PASSIVE = frozenset({"send", "claim", "hold", "release", "deadletter", "register", "watchdog"})


# -- decisions (pure) ---------------------------------------------------------------------


def work_open(agents: Iterable[Agent]) -> bool:
    """Some worker is alive and has not reported done."""
    return any(a.role == "worker" and a.state in OPEN_STATES for a in agents)


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
    return agent.role == "worker" and agent.state == "exited" and state_before(agent) != "done"


def restart_backoff(n: int) -> float:
    """Seconds to wait before the (n+1)th restart in a window: 0, 1, 2, 4 … 60."""
    return 0.0 if n <= 0 else float(min(60, 2 ** (n - 1)))


def supervisor_action(
    agent: Agent | None, restarts: list[float], now: float, limit: int, window: float
) -> str | None:
    """'restart', 'wait' (back-off), 'give-up' (past the limit) or None."""
    if agent is None or agent.role != "supervisor" or agent.state != "exited":
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
            return "with its conversation (the same Claude session)"
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
        self, data: DataRoot, settings: HealthSettings, actions: Actions, *, now: float
    ) -> None:
        self.data = data
        self.s = settings
        self.act = actions
        self.started = now
        self.memory_file = data.state_dir / "watchdog.json"
        self.mem = Memory.load(self.memory_file)
        self.agents: list[Agent] = []
        self.agents_sig = -1
        self.events_offset = _size(data.events_file)
        self.last_activity = now

    # -- looking -------------------------------------------------------------------

    def _refresh_agents(self) -> None:
        sig = _mtime(self.data.agents_dir)
        if sig != self.agents_sig:
            self.agents_sig = sig
            self.agents = self.act.agents()

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

    # -- the tick ------------------------------------------------------------------

    def tick(self, now: float) -> None:
        self._refresh_agents()
        self._read_events(now)
        changed = False
        for agent in self.agents:
            changed |= self._dead_worker(agent, now)
            changed |= self._time_limit(agent, now)
        changed |= self._supervisor(now)
        changed |= self._idle(now)
        if changed:
            self.mem.save(self.memory_file)

    def _idle(self, now: float) -> bool:
        if not idle_due(
            now, self.last_activity, self.mem.nudged_at, self.s.idle_nudge, work_open(self.agents)
        ):
            return False
        self.mem.nudged_at = now
        quiet = now - self.last_activity
        open_ones = ", ".join(
            f"{a.name} ({a.state})"
            for a in self.agents
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
        self.act.tell(
            agent.parent or SUPERVISOR,
            f"watchdog: {agent.name} died",
            f"{agent.name} exited (code {code}) without reporting done. "
            f"It was {state_before(agent) or 'working'}; task: {agent.task_summary or '(none)'}. "
            f"Its screen is in state/logs/{agent.name}.log. Spawn it again or give the task "
            "to someone else.",
        )
        self.act.event("died-without-done", agent.name, code=agent.exit_code)
        return True

    def _supervisor(self, now: float) -> bool:
        sup = next((a for a in self.agents if a.role == "supervisor"), None)
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


def tick(cfg: Config, now: float | None = None) -> None:
    """Called by the monitor once a second; cheap when nothing changed."""
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
        _WATCHDOGS[root] = Watchdog(cfg.data, s, CmuxActions(cfg), now=now)
    dog = _WATCHDOGS[root]
    if dog is not None:
        dog.tick(now)


def reset() -> None:
    """Forget every watchdog of this process (tests)."""
    _WATCHDOGS.clear()
