"""Read receipts where no model is needed: a shell agent's mail is
`delivered (no receipt)`, never read; an agent that should prove reading and
does not (a Claude record whose pane is only `cat`) gets it delivered again
once, then its sender and the person are told. Real tmux, router, monitor."""

from __future__ import annotations

import json

import pytest

from tests.helpers import Project, wait_until

pytestmark = pytest.mark.timeout(120)


def events(project: Project, kind: str, msg_id: str) -> list[dict[str, object]]:
    return [e for e in project.events() if e["event"] == kind and e.get("id") == msg_id]


def test_a_shell_agents_mail_has_no_receipt(project: Project) -> None:
    project.ok("start", "--command", "sleep 600", "--no-attach")
    project.ok("spawn", "w1", "--command", "cat", "--task", "x")
    sent = project.ok("send", "w1", "hello there", "--json").json()
    wait_until(lambda: events(project, "deliver", sent["id"]), what="delivery")
    trail = project.ok("mail", "show", sent["id"], "--json").json()
    assert trail["state"] == "delivered (no receipt)"
    assert [s["event"] for s in trail["steps"]][:1] == ["send"]
    assert "deliver" in [s["event"] for s in trail["steps"]]
    assert project.status()["w1"]["unread"] is None
    out = project.ok("mail", "show", sent["id"]).out
    assert "delivered (no receipt)" in out and "hello there" in out
    r = project.cmux("mail", "show", "18ed00000000dead-1-000000")
    assert r.code != 0 and "no message" in r.err


def test_unread_mail_is_delivered_again_once_then_reported(project: Project) -> None:
    with (project.root / "cmux.toml").open("a") as fh:
        fh.write("\n")
    toml = (project.root / "cmux.toml").read_text()
    (project.root / "cmux.toml").write_text(
        toml.replace("[mail]\n", "[mail]\nread_timeout = 1\n", 1)
    )
    project.ok("start", "--command", "sleep 600", "--no-attach")
    # A pane that looks like Claude Code's idle input box (so the router types
    # into it) and never runs a hook (so nothing proves the mail read).
    rule = "─" * 40
    box = f'sh -c \'printf "%s\\n" {rule} "❯ " {rule}; exec cat\''
    project.ok("spawn", "w1", "--command", box, "--task", "x")
    from cmux.agents import registry
    from cmux.paths import DataRoot

    # A record that says its program proves reading (as Claude's hooks do),
    # in a pane that never will.
    registry.update(DataRoot(project.data), "w1", profile="claude")
    sent = project.ok("send", "w1", "please answer", "--json").json()
    wait_until(lambda: len(events(project, "deliver", sent["id"])) >= 1, what="delivery")
    assert project.status()["w1"]["unread"] == 1
    wait_until(lambda: len(events(project, "deliver", sent["id"])) == 2, timeout=30, what="again")
    wait_until(
        lambda: [e for e in project.events() if e.get("kind") == "unread"], timeout=30, what="told"
    )
    inbox = project.ok("inbox", "--json").json()
    assert any(sent["id"] in m["body"] and "has not read" in m["body"] for m in inbox)
    trail = project.ok("mail", "show", sent["id"], "--json").json()
    assert trail["state"] == "delivered"
    assert [s["event"] for s in trail["steps"]].count("deliver") == 2
    assert len(events(project, "redeliver", sent["id"])) == 1
    # never a third time
    import time

    deadline = time.monotonic() + 4
    while time.monotonic() < deadline:
        assert len(events(project, "deliver", sent["id"])) == 2
        time.sleep(0.2)
    box = json.loads(project.ok("status", "--json").out)
    assert next(a for a in box if a["name"] == "w1")["unread"] == 1
