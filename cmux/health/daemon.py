"""The health monitor at work: run the checks, decide, restart, roll back, tell.

:class:`HealthMonitor` acts on what cmux/health/policy.py decides, with
every collaborator that touches the world (the checks, the restart command,
git, the notifier and the clock) passed in, so tests can use fakes for any of
them. Its state is cmux/health/state.py's file, changed only under its lock.
A rollback is never cut short: a SIGTERM during one waits for it to finish
(:func:`critical`). :func:`run_daemon` is ``cmux health --daemon``, one per
data root (``state/run/health.lock``, pid in ``state/run/health.pid``), which
the monitor window starts and keeps alive (cmux/monitor.py).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Literal

from cmux import events
from cmux.config import Config
from cmux.errors import CmuxError, GitError
from cmux.fsutil import locked
from cmux.health import checks as checks_mod
from cmux.health.alerts import ALERT_PREFIX, CmuxNotifier, Notifier, raise_alert
from cmux.health.checks import CheckResult, CommandResult
from cmux.health.config import HealthSettings
from cmux.health.policy import BUDGET, RESTART, ROLLBACK, Action, Policy, decide
from cmux.health.report import describe_rollback, span
from cmux.health.rescues import Rescue
from cmux.health.rollback import Repo
from cmux.health.state import (
    ROLLBACKS_KEPT,
    HealthState,
    editing,
    load_state,
    mark_passed,
    record_results,
    rollback_entry,
)
from cmux.paths import SUPERVISOR, DataRoot

log = logging.getLogger(__name__)

# A SIGTERM during a rollback waits for it to finish (see run_daemon).
_critical = {"depth": 0, "exit": False}


@contextlib.contextmanager
def critical() -> Iterator[None]:
    """A stretch a SIGTERM does not cut: the daemon leaves once it is over."""
    _critical["depth"] += 1
    try:
        yield
    finally:
        _critical["depth"] -= 1
    if _critical["depth"] == 0 and _critical["exit"]:
        raise SystemExit(0)


@dataclass
class RoundReport:
    """What one call of :meth:`HealthMonitor.round` saw and did."""

    ok: bool
    action: Action | Literal["checked"]
    results: list[CheckResult]
    head: str | None = None
    moved_last_good: bool = False
    rescue: Rescue | None = None
    verified: bool | None = None
    alert: str | None = None
    then: RoundReport | None = None  # the round after a restart


class HealthMonitor:
    def __init__(
        self,
        data: DataRoot,
        settings: HealthSettings,
        *,
        repo: Repo | None,
        run_checks: Callable[[], list[CheckResult]],
        restart: Callable[[], CommandResult] | None,
        notifier: Notifier,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.data = data
        self.settings = settings
        self.policy = Policy.from_settings(settings)
        if restart is None:
            self.policy = Policy(
                threshold=self.policy.threshold,
                can_restart=False,
                budget=self.policy.budget,
                window=self.policy.window,
            )
        self.repo = repo
        self.run_checks = run_checks
        self.restart = restart
        self.notify = notifier
        self.clock = clock
        self.sleep = sleep

    @classmethod
    def for_config(cls, cfg: Config, settings: HealthSettings) -> HealthMonitor:
        try:
            repo: Repo | None = Repo(cfg.project_root, cfg.data)
        except GitError:
            repo = None
        env = {"CMUX_HOME": str(cfg.data.root), "CMUX_PROJECT": str(cfg.project_root)}

        def run() -> list[CheckResult]:
            return checks_mod.run_all(settings.checks, cfg.project_root, env)

        restart = None
        if settings.restart:
            command = settings.restart

            def restart() -> CommandResult:
                return checks_mod.run_command(
                    command,
                    cwd=cfg.project_root,
                    timeout=settings.restart_timeout,
                    env=env,
                    reap=False,
                    log=cfg.data.logs_dir / "health-restart.log",
                )

        return cls(
            cfg.data,
            settings,
            repo=repo,
            run_checks=run,
            restart=restart,
            notifier=CmuxNotifier(cfg),
        )

    # -- one round -----------------------------------------------------------------

    def head(self) -> str | None:
        try:
            return self.repo.head() if self.repo else None
        except GitError:
            return None

    def _checked(self) -> tuple[list[CheckResult], bool, str | None, bool]:
        """Run the checks: (results, all passed, HEAD now, HEAD unchanged while
        they ran). A commit made while the checks ran was not what they checked."""
        before = self.head()
        results = self.run_checks()
        head = self.head()
        return results, all(r.ok for r in results), head, head == before

    def round(self, *, after_restart: bool = False) -> RoundReport:
        results, ok, head, steady = self._checked()
        now = self.clock()
        with editing(self.data) as st:
            was = st.phase
            record_results(st, results, now, head)
            decision = decide(st, ok, now, self.policy)
            moved = self._mark_good(st, head, now) if ok and steady else False
        report = RoundReport(ok=ok, action=decision.action, results=results, head=head)
        report.moved_last_good = moved
        if decision.clear_alert:
            self.notify.clear_alert()
        self._log_round(ok, was, results, st)
        if decision.action == RESTART:
            self._restart()
            self.sleep(self.settings.restart_wait)
            report.then = self.round(after_restart=True)
        elif decision.action == ROLLBACK:
            self._roll_back(report)
        elif decision.action == BUDGET:
            report.alert = self._budget_alert(now)
        return report

    def _log_round(self, ok: bool, was: str, results: list[CheckResult], st: HealthState) -> None:
        if not ok and st.consecutive_failures == 1:
            failing = {r.name: r.detail for r in results if not r.ok}
            self.notify.event("health-failing", checks=failing, head=st.head)
        elif ok and was != "ok":
            self.notify.event("health-recovered", head=st.head)

    def _mark_good(self, st: HealthState, head: str | None, now: float) -> bool:
        """A pass of a new HEAD moves refs/cmux/last-good there."""
        if not head or not self.repo:
            return False
        mark_passed(st, head)
        if st.last_good == head and self.repo.last_good() == head:
            return False
        try:
            self.repo.set_last_good(head)
        except GitError:
            log.exception("could not move %s", "refs/cmux/last-good")
            return False
        st.last_good, st.last_good_at = head, now
        self.notify.event("last-good", commit=head)
        return True

    def _restart(self) -> CommandResult | None:
        if self.restart is None:
            return None
        r = self.restart()
        entry = {
            "ts": self.clock(),
            "code": r.code,
            "timed_out": r.timed_out,
            "seconds": round(r.seconds, 3),
        }
        with editing(self.data) as st:
            st.restarts = [*st.restarts, entry][-20:]
        self.notify.event("health-restart", code=r.code, timed_out=r.timed_out or None)
        return r

    def _alert(self, kind: str, text: str, now: float) -> str:
        with editing(self.data) as st:
            st.alert = {"kind": kind, "text": text, "ts": now}
            st.phase = "alert"
        self.notify.alert(text)
        self.notify.tell(SUPERVISOR, "health: cmux needs the human", text)
        return text

    def _budget_alert(self, now: float) -> str:
        s = self.settings
        if s.rollback_budget == 0:
            text = (
                f"the checks failed {s.threshold} times in a row and automatic rollback is off "
                "(rollback_budget = 0). `cmux health` shows what fails; `cmux rollback` rolls "
                "back by hand."
            )
        else:
            text = (
                f"the checks keep failing after {s.rollback_budget} rollbacks within "
                f"{span(s.rollback_window)}: no more automatic rollbacks. Fix the cause, then "
                "`cmux health --clear-alert`. `cmux rescue list` shows what was saved."
            )
        return self._alert("budget", text, now)

    # -- rolling back ----------------------------------------------------------------

    def _roll_back(self, report: RoundReport) -> None:
        now = self.clock()
        if self.repo is None:
            report.alert = self._alert(
                "no-git", "the checks keep failing and the project is not a git repository", now
            )
            return
        st = load_state(self.data)
        head = self.repo.head()
        target = self.repo.nearest_passed(st.passed, head)
        failing = ", ".join(r.name for r in report.results if not r.ok) or "the checks"
        if head is None or target is None:
            report.alert = self._alert(
                "no-target",
                f"{failing} keep failing and no commit has passed the checks yet, so there is "
                "nothing safe to roll back to. `cmux health` shows the output.",
                now,
            )
            return
        try:
            clean = not self.repo.dirty()
        except GitError as exc:
            report.alert = self._alert("save-failed", f"cannot read the work tree: {exc}", now)
            return
        if target == head and clean:
            report.alert = self._alert(
                "stuck",
                f"{failing} keep failing at {head[:10]}, which passed before, with nothing "
                "uncommitted: the cause is outside the code (a service, the machine, data).",
                now,
            )
            return
        reason = f"{failing} failed {self.policy.threshold} times in a row" + (
            " and after a restart" if self.policy.can_restart else ""
        )
        try:
            with critical():
                rescue = self.repo.rollback(target, reason=reason, auto=True, now=now)
                with editing(self.data) as st:
                    entry = rollback_entry(rescue, auto=True)
                    st.rollbacks = [*st.rollbacks, entry][-ROLLBACKS_KEPT:]
        except GitError as exc:
            report.alert = self._alert("save-failed", f"could not roll back: {exc.message}", now)
            return
        report.rescue = rescue
        self.notify.event(
            "rollback",
            to=target,
            **{"from": head},
            rescue=rescue.branch,
            stash=rescue.stash,
            undone=len(rescue.undone),
            auto=True,
        )
        self._restart()
        self.sleep(self.settings.restart_wait)
        report.verified = self._verify(rescue)
        if not report.verified:
            report.alert = self._alert(
                "stuck",
                f"rolled back to {target[:10]} (the last good commit) and {failing} still "
                "fail: the cause is outside the code. The undone work is in "
                f"{rescue.branch}; `cmux rescue list` shows how to bring it back.",
                self.clock(),
            )
        self._report_rollback(rescue, report.verified, reason)

    def _verify(self, rescue: Rescue) -> bool:
        results = self.run_checks()
        ok = all(r.ok for r in results)
        now = self.clock()
        head = self.head()
        with editing(self.data) as st:
            record_results(st, results, now, head)
            if ok:
                st.consecutive_failures, st.phase = 0, "ok"
                self._mark_good(st, head, now)
            for r in st.rollbacks:
                if r.get("rescue") == rescue.id:
                    r["verified"] = ok
        self.notify.event("rollback-verified" if ok else "rollback-still-failing", to=rescue.target)
        return ok

    def _report_rollback(self, rescue: Rescue, verified: bool | None, reason: str) -> None:
        body = describe_rollback(rescue, verified=verified, reason=reason)
        short = rescue.target[:10]
        self.notify.tell(SUPERVISOR, f"health: rolled back to {short}", body)
        self.notify.journal(f"Rolled back to {short}: {reason}", body, ["rollback", "health"])

    # -- by hand ---------------------------------------------------------------------

    def check_now(self) -> RoundReport:
        """Run the checks once and record them (a pass moves last-good), but
        count nothing towards a rollback and act on nothing."""
        results, ok, head, steady = self._checked()
        now = self.clock()
        with editing(self.data) as st:
            record_results(st, results, now, head)
            moved = self._mark_good(st, head, now) if ok and steady else False
        return RoundReport(
            ok=ok, action="checked", results=results, head=head, moved_last_good=moved
        )

    def manual_rollback(self, target: str, *, restart: bool = True) -> Rescue:
        """``cmux rollback``: the same saving of work, not counted in the budget."""
        assert self.repo is not None
        with critical():
            rescue = self.repo.rollback(target, reason="rolled back by hand", auto=False)
            with editing(self.data) as st:
                st.rollbacks = [*st.rollbacks, rollback_entry(rescue, auto=False)][-ROLLBACKS_KEPT:]
        self.notify.event(
            "rollback",
            to=rescue.target,
            **{"from": rescue.head},
            rescue=rescue.branch,
            stash=rescue.stash,
            undone=len(rescue.undone),
            auto=False,
        )
        if restart:
            self._restart()
        self._report_rollback(rescue, None, "rolled back by hand (`cmux rollback`)")
        return rescue

    # -- the daemon ------------------------------------------------------------------

    def run_forever(self, stopping: Callable[[], bool]) -> None:
        while not stopping():
            started = self.clock()
            try:
                self.round()
            except CmuxError as exc:
                log.error("health round failed: %s", exc)
            except Exception:
                log.exception("health round failed")
            wait = self.settings.interval - (self.clock() - started)
            while wait > 0 and not stopping():
                step = min(wait, 0.5)
                self.sleep(step)
                wait -= step


# -- the daemon entry point ----------------------------------------------------------


def pid_file(data: DataRoot) -> Path:
    return data.run_dir / "health.pid"


def daemon_pid(data: DataRoot) -> int | None:
    """The running health daemon's pid, or None."""
    from cmux import pidfile

    return pidfile.alive(pid_file(data))


def run_daemon(cfg: Config) -> None:
    """``cmux health --daemon``: one per data root, until SIGTERM."""
    from cmux import pidfile
    from cmux.errors import AlreadyRunning, ConfigError
    from cmux.health.config import settings as load_settings

    cfg.data.ensure()
    try:
        settings = load_settings(cfg)
    except ConfigError as exc:
        raise_alert(cfg, f"{ALERT_PREFIX}the health monitor cannot start: {exc.message}")
        raise
    with locked(cfg.data.run_dir / "health.lock", blocking=False) as got:
        if not got:
            raise AlreadyRunning(
                "a health monitor already runs for this project", "see `cmux health`"
            )
        stop = {"now": False}

        def on_signal(signum: int, frame: FrameType | None) -> None:
            stop["now"] = True
            if _critical["depth"]:
                _critical["exit"] = True  # leave once the rollback is complete
                return
            raise SystemExit(0)

        old = signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGHUP, on_signal)
        try:
            # After the handlers, inside the `finally` that removes it.
            pidfile.write(pid_file(cfg.data))
            events.record(
                cfg.data, "health-start", None, pid=os.getpid(), checks=len(settings.checks)
            )
            HealthMonitor.for_config(cfg, settings).run_forever(lambda: stop["now"])
        finally:
            signal.signal(signal.SIGTERM, old)
            pidfile.remove(pid_file(cfg.data))
