"""The monitor window on several hosts: with the monitor's TeamFeed
(cmux/cluster/feed.py) it shows the other hosts' agents and draws again as
soon as one of their records changes, without asking NATS itself."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cmux.agents.registry import Agent


@dataclass
class FakeTeam:
    far: list[Agent] = field(default_factory=list)
    revision: int = 0
    connected: bool = True

    def agents(self, local: list[Agent]) -> list[Agent]:
        return local + self.far


def test_the_monitors_screen_draws_another_hosts_change_from_its_feed(tmp_path: Path) -> None:
    from cmux.config import load_config
    from cmux.monitor import StatusView
    from cmux.project import init
    from tests.helpers import make_repo

    root = make_repo(tmp_path / "p")
    init(root)
    with socket.socket() as s:  # nothing listens there: asking NATS would fail and say so
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    toml = root / "cmux.toml"
    toml.write_text(toml.read_text() + f'\n[cluster]\nnats = "nats://127.0.0.1:{port}"\n')
    drawn: list[tuple[str, list[dict[str, Any]]]] = []
    v = StatusView(load_config(root), draw=lambda header, rows: drawn.append((header, rows)))
    v.tty = True
    team = FakeTeam([Agent(name="w9", role="worker", state="busy", host="b")])
    v.team = team
    v.refresh(100.0)
    ((header, rows),) = drawn
    assert "not shown" not in header
    assert [(r["name"], r["host"], r["state"]) for r in rows] == [("w9", "b", "busy")]
    v.refresh(101.0)
    assert len(drawn) == 1  # nothing changed: not drawn again
    team.far = [replace(team.far[0], state="idle")]
    team.revision += 1
    v.refresh(102.0)
    assert len(drawn) == 2 and drawn[-1][1][0]["state"] == "idle"
    # The feed cut off from NATS: the window asks NATS as before, and says it did not answer.
    team.connected, team.revision = False, team.revision + 1
    v.refresh(103.0)
    assert "other hosts' agents not shown" in drawn[-1][0]
