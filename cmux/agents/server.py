"""The project's session on its private tmux server, as cmux.agents shares it.

What session.py (start, stop), spawn.py and deaths.py all need, kept below
them so that none of the three imports another in a circle: how cmux runs
itself in a pane (``cmux_argv``), the monitor window's name and command, the
environment every cmux pane gets, whether the session runs, and cmux's own
journal notes about an agent. The tmux handle always comes from
``Tmux.for_config`` (cmux/tmux.py is the only door to tmux).
"""

from __future__ import annotations

import sys

from cmux.config import Config
from cmux.errors import NotRunning
from cmux.tmux import Tmux

MONITOR = "monitor"


def cmux_argv(*args: str) -> list[str]:
    """How to run cmux itself from inside tmux (same interpreter, no PATH guess)."""
    return [sys.executable, "-m", "cmux", *args]


def monitor_argv(delay: float = 0.0) -> list[str]:
    """The monitor pane's command: the keeper, which runs the monitor and
    starts it again whenever it dies (see cmux/keeper.py)."""
    keeper = [sys.executable, "-m", "cmux.keeper"]
    if delay:
        keeper += ["--delay", f"{delay:g}"]
    return [*keeper, "--", *cmux_argv("monitor")]


def base_env(cfg: Config) -> dict[str, str]:
    """The environment of cmux's own panes (the monitor, the pane-died hook)."""
    return {
        "CMUX_HOME": str(cfg.data.root),
        "CMUX_PROJECT": str(cfg.project_root),
        "CMUX_SESSION": cfg.session_name,
        "CMUX_TMUX_SOCKET": cfg.socket_name,
    }


def is_running(cfg: Config, tmux: Tmux | None = None) -> bool:
    return (tmux or Tmux.for_config(cfg)).has_session(cfg.session_name)


def require_running(cfg: Config, tmux: Tmux | None = None) -> Tmux:
    """The Tmux of the running session; NotRunning (with what to do) if none runs."""
    tmux = tmux or Tmux.for_config(cfg)
    if not tmux.has_session(cfg.session_name):
        raise NotRunning(
            f"cmux is not running for {cfg.project_root}", "start it with `cmux start`"
        )
    return tmux


def journal_note(cfg: Config, agent: str, title: str, body: str, tags: list[str]) -> None:
    """cmux's own journal entry about ``agent``: signed ``cmux``, tagged with
    ``tags`` and the agent's name (spawns, kills, crashes)."""
    from cmux.journal import note

    note(cfg.data, agent="cmux", title=title, body=body, tags=[*tags, agent])
