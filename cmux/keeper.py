"""The monitor pane's own process: it runs the monitor and restarts it when it dies.

``python -m cmux.keeper [--delay S] -- ARGV...`` runs ARGV (the monitor) as
its child and starts it again whenever it ends, however it ended: a kill -9
is seen by ``wait`` at once, whatever tmux's pane-died hook does. It imports
next to nothing, so there is little in it to fail.

Signals: SIGHUP (the pane is closing: ``cmux stop``, the session ended) ends
the child and the keeper. SIGTERM and SIGINT do not stop it: ``cmux stop`` is
the way to stop cmux, and a stray SIGTERM (to the monitor or to the keeper) is
a crash to mend, not an order. If the keeper itself is killed, its pane dies;
the pane-died hook and every ``cmux status``/``spawn``/``send`` start it again
(cmux/agents/deaths.py, mend_monitor).

The monitor is a :class:`cmux.daemons.Process`: the state machine and the
back-off rule the monitor applies to its own daemons. The keeper blocks in
``wait`` on its one child rather than polling, so an end is seen at once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

from cmux.daemons import Process


def main(argv: list[str]) -> int:
    delay = 0.0
    if argv[:1] == ["--delay"]:
        delay, argv = float(argv[1]), argv[2:]
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        print("usage: python -m cmux.keeper [--delay S] -- ARGV...", file=sys.stderr)
        return 2
    state: dict[str, object] = {"stopping": False, "child": None}

    def on_hup(signum: int, frame: object) -> None:
        state["stopping"] = True
        child = state["child"]
        if isinstance(child, subprocess.Popen) and child.poll() is None:
            child.terminate()

    def on_stray(signum: int, frame: object) -> None:
        name = signal.Signals(signum).name
        print(f"cmux: {name} ignored; `cmux stop` ends cmux", file=sys.stderr)
        _event("signal-ignored", daemon="keeper", signal=name)

    signal.signal(signal.SIGHUP, on_hup)
    signal.signal(signal.SIGTERM, on_stray)
    signal.signal(signal.SIGINT, on_stray)
    monitor = Process("monitor", argv)
    _pause(delay, state)
    while not state["stopping"]:
        child = monitor.start(subprocess.Popen, time.monotonic())
        state["child"] = child
        code = child.wait()
        if state["stopping"]:
            break
        wait = monitor.ended(code, time.monotonic())
        _event("daemon-died", daemon="monitor", code=code, restart_in=wait or None)
        print(f"cmux: the monitor ended (code {code}); starting it again", file=sys.stderr)
        _pause(wait, state)
    return 0


def _pause(seconds: float, state: dict[str, object]) -> None:
    until = time.monotonic() + seconds
    while not state["stopping"] and time.monotonic() < until:
        time.sleep(max(0.0, min(0.1, until - time.monotonic())))


def _event(event: str, **fields: Any) -> None:
    home = os.environ.get("CMUX_HOME")
    if not home:
        return
    try:
        from cmux import events
        from cmux.paths import DataRoot

        events.record(DataRoot(home), event, **fields)
    except Exception:  # the keeper must not die of a log line
        pass


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
