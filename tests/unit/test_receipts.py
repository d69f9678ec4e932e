"""Read receipts: a message is read only once a hook event that comes after
the model's answer proves the model was given it (cmux/mail/receipts.py)."""

from __future__ import annotations

import io
import json
import os
from typing import Any

import pytest

from cmux.agents import registry
from cmux.agents.registry import Agent
from cmux.config import Config
from cmux.delivery import hooks
from cmux.mail import claims, maildir, receipts, store
from cmux.mail.render import header

SID = "11111111-2222-3333-4444-555555555555"


@pytest.fixture
def agent(cfg: Config) -> Config:
    for name in ("supervisor", "w1"):
        store.ensure(cfg.data, name)
        registry.save(cfg.data, Agent(name=name, profile="claude", state="idle"))
    return cfg


def hook(cfg: Config, event: str, **extra: Any) -> None:
    body = {"session_id": SID, "hook_event_name": event, **extra}
    env = {"CMUX_HOME": str(cfg.data.root), "CMUX_AGENT": "w1", "CMUX_ROLE": "worker"}
    hooks.run(event, io.StringIO(json.dumps(body)), io.StringIO(), env)


def deliver(cfg: Config, body: str) -> str:
    """Send to w1 and mark it delivered, as the router does after typing it."""
    msg = store.send(cfg, to="w1", body=body, sender="supervisor")
    [loaded] = claims.take(cfg.data, "w1")
    claims.mark_delivered(loaded.path)
    return msg.id


def reads(cfg: Config) -> list[dict[str, Any]]:
    lines = cfg.data.events_file.read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["event"] == "read"]


def test_ids_in_headers() -> None:
    text = "[cmux mail 18ed-a from w2 kind=done]\nok\n\n[cmux mail 18ed-b from human kind=message]"
    assert receipts.ids_in(text) == ["18ed-a", "18ed-b"]
    assert receipts.ids_in("no mail here") == []


def test_decide() -> None:
    d = receipts.decide
    assert d(100.0, {}, 219.0, 120.0, True) is None
    assert d(100.0, {}, 221.0, 120.0, True) == "redeliver"
    assert d(100.0, {}, 221.0, 120.0, False) is None  # busy: it may still come to it
    assert d(100.0, {"redelivered": 1.0}, 221.0, 120.0, True) == "report"
    assert d(100.0, {"read": 1.0}, 999.0, 120.0, True) is None
    assert d(100.0, {"redelivered": 1.0, "reported": 2.0}, 999.0, 120.0, True) is None


def test_typed_mail_is_read_only_after_the_models_answer(agent: Config) -> None:
    cfg = agent
    msg_id = deliver(cfg, "please rebase")
    assert receipts.unread(cfg.data, "w1")[0][0] == msg_id
    m = store.find(cfg.data, "w1", msg_id)
    assert m is not None
    hook(cfg, "UserPromptSubmit", prompt=header(m) + "\nplease rebase")
    assert reads(cfg) == []  # submitted, not yet answered
    assert receipts.state_of(cfg.data, "w1", msg_id, "claude") == "delivered"
    hook(cfg, "PreToolUse", tool_name="Bash")  # the model answered with a tool call
    [read] = reads(cfg)
    assert (read["id"], read["via"]) == (msg_id, "prompt")
    assert receipts.unread(cfg.data, "w1") == []
    assert receipts.state_of(cfg.data, "w1", msg_id, "claude") == "read"
    hook(cfg, "Stop")
    assert len(reads(cfg)) == 1  # once


def test_a_failed_turn_proves_nothing(agent: Config) -> None:
    cfg = agent
    msg_id = deliver(cfg, "hello")
    m = store.find(cfg.data, "w1", msg_id)
    assert m is not None
    hook(cfg, "UserPromptSubmit", prompt=header(m) + "\nhello")
    hook(cfg, "StopFailure", error="rate_limit")
    hook(cfg, "Stop")
    assert reads(cfg) == []
    assert [i for i, _ in receipts.unread(cfg.data, "w1")] == [msg_id]


def test_mail_handed_over_at_stop_is_read_at_the_next_event(agent: Config) -> None:
    cfg = agent
    registry.transition(cfg.data, "w1", "busy")
    msg = store.send(cfg, to="w1", body="also update the docs", sender="supervisor")
    hook(cfg, "Stop", stop_hook_active=False)  # hands it over
    assert reads(cfg) == []
    assert store.find(cfg.data, "w1", msg.id) is not None
    hook(cfg, "PreToolUse", tool_name="Edit")
    [read] = reads(cfg)
    assert (read["id"], read["via"]) == (msg.id, "stop-hook")


def test_redeliver_puts_a_delivered_message_back_once(agent: Config) -> None:
    cfg = agent
    msg_id = deliver(cfg, "are you there?")
    assert claims.redeliver(cfg.data, "w1", msg_id) is True
    assert os.listdir(maildir.new_dir(cfg.data, "w1")) == [msg_id + ".json"]
    assert claims.redeliver(cfg.data, "w1", msg_id) is False  # not delivered now
    assert receipts.unread(cfg.data, "w1") == []  # pending again, not delivered


def test_a_torn_receipts_line_is_skipped(agent: Config) -> None:
    cfg = agent
    msg_id = deliver(cfg, "x")
    receipts.mark_read(cfg.data, "w1", [msg_id], "prompt")
    with open(maildir.receipts_file(cfg.data, "w1"), "a") as fh:
        fh.write('{"id": "half')
    assert receipts.load(cfg.data, "w1")[msg_id]["via"] == "prompt"
