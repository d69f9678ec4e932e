"""`cmux events` on several hosts: this host's log and the other hosts'
events from CMUX_EVENTS, one list in time order, each with its host
(cmux.cluster.view.merge_events, pure); and on one machine, nothing of the
cluster is imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from cmux.cluster.view import merge_events


def raw(**e: object) -> bytes:
    return json.dumps(e).encode()


def test_the_team_s_events_in_time_order_each_with_its_host() -> None:
    local = [
        {"ts": "2026-01-01T10:00:00.100Z", "event": "send", "agent": "w1"},
        {"ts": "2026-01-01T10:00:00.300Z", "event": "state", "agent": "supervisor"},
    ]
    remote = [
        raw(ts="2026-01-01T10:00:00.200Z", event="state", agent="w2", host="b"),
        raw(ts="2026-01-01T10:00:00.100Z", event="send", agent="w1", host="a"),  # a's own copy
        b"not json",
        raw(ts="2026-01-01T10:00:00.050Z", event="nohost"),  # not a node's: no host
        raw(ts="2026-01-01T10:00:00.400Z", event="deliver", agent="w3", host="c"),
    ]
    got = merge_events(local, remote, "a")
    assert [(e["event"], e["host"]) for e in got] == [
        ("send", "a"),
        ("state", "b"),
        ("state", "a"),
        ("deliver", "c"),
    ]
    assert [e["event"] for e in merge_events(local, remote, "a", last=2)] == ["state", "deliver"]
    assert merge_events([], [], "a") == []


def test_events_on_one_machine_imports_nothing_of_the_cluster(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from cmux.cli.mail import events_cmd\n"
        "from click.testing import CliRunner\n"
        "r = CliRunner().invoke(events_cmd, ['-n', '5'])\n"
        "assert r.exit_code == 0, r.output\n"
        "bad = [m for m in sys.modules if m.startswith(('cmux.cluster', 'nats'))]\n"
        "assert not bad, bad\n"
        "r = CliRunner().invoke(events_cmd, ['--host', 'b'])\n"
        "assert r.exit_code != 0 and 'needs a cluster' in str(r.exception or r.output)\n"
    )
    (tmp_path / "cmux.toml").write_text("[cmux]\nagent = 'shell'\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CMUX_")}
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={**env, "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
