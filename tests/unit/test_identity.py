"""cmux/identity.py and the policy of tools/workers, as pure functions and files."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest

from cmux import identity
from cmux.agents import profiles
from cmux.config import Config
from cmux.identity import IdentityError
from cmux.mail import store
from cmux.ops.agents import decide


def env(name: str, token: str) -> dict[str, str]:
    return {"CMUX_AGENT": name, "CMUX_AGENT_TOKEN": token}


def test_the_token_proves_the_name_and_only_its_hash_is_kept(cfg: Config) -> None:
    token = identity.issue(cfg.data, "w1")
    assert identity.caller(cfg, env("w1", token)) == "w1"
    stored = Path(identity.token_file(cfg.data, "w1"))
    assert token not in stored.read_text() and len(stored.read_text().strip()) == 64
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    other = identity.issue(cfg.data, "w2")
    for bad in (env("w2", token), env("w1", other), env("w1", ""), env("w1", "x" * 64)):
        with pytest.raises(IdentityError):
            identity.caller(cfg, bad)
    # A new incarnation's token replaces the old one.
    identity.issue(cfg.data, "w1")
    with pytest.raises(IdentityError, match="not the token of agent w1"):
        identity.caller(cfg, env("w1", token))


def test_no_name_is_the_person_but_a_token_without_a_name_is_not(cfg: Config) -> None:
    assert identity.caller(cfg, {}) == "human"
    assert identity.caller(cfg, {"CMUX_AGENT": ""}) == "human"
    with pytest.raises(IdentityError, match="cannot act as the person"):
        identity.caller(cfg, {"CMUX_AGENT_TOKEN": "abc"})
    # Another tmux server's pane says nothing about our agents.
    assert identity.caller(cfg, {"TMUX": "/tmp/tmux-0/default,1,0", "TMUX_PANE": "%1"}) == "human"


@pytest.mark.parametrize("name", ["human", "cmux", "deadletter", "W1", "a/b", "w1\nx", "", "1a"])
def test_cmux_agent_is_checked_as_a_name(cfg: Config, name: str) -> None:
    if not name:
        assert identity.check_name(name) is not None
        return
    with pytest.raises(IdentityError, match="CMUX_AGENT="):
        identity.caller(cfg, env(name, "0" * 64))


def test_the_store_refuses_mail_signed_with_another_name(
    cfg: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = identity.issue(cfg.data, "w1")
    monkeypatch.setenv("CMUX_AGENT", "w1")
    monkeypatch.setenv("CMUX_AGENT_TOKEN", token)
    for sender in ("supervisor", "human", "w2"):
        with pytest.raises(IdentityError, match="agent w1 cannot send as"):
            store.send(cfg, to="supervisor", body="hi", sender=sender)
    assert store.pending(cfg.data, "supervisor") == []
    store.send(cfg, to="supervisor", body="hi", sender="w1")
    store.send(cfg, to="supervisor", body="notice", sender="cmux")  # cmux's hooks in its env
    assert len(store.pending(cfg.data, "supervisor")) == 2


WORKER: dict[str, Any] = {"caller": "w1", "role": "worker"}
SUP: dict[str, Any] = {"caller": "supervisor", "role": "supervisor"}


@pytest.mark.parametrize(
    ("who", "cmd", "facts", "allowed"),
    [
        (WORKER, "list", {}, True),
        (WORKER, "spawn", {}, False),
        (WORKER, "kill", {"target": "w2", "target_parent": "supervisor"}, False),
        (WORKER, "approve", {"target": "w2", "target_parent": "w1"}, False),
        (WORKER, "deny", {"target": "w2", "target_parent": "supervisor"}, False),
        (SUP, "spawn", {}, True),
        (SUP, "spawn", {"command": True}, False),
        (SUP, "spawn", {"shell": True}, False),
        (SUP, "spawn", {"outside": "/"}, False),
        (SUP, "approve", {"target": "w1", "target_parent": "supervisor"}, True),
        (SUP, "approve", {"target": "x", "target_parent": "w9"}, False),
        (SUP, "kill", {"target": "supervisor", "target_parent": None}, False),
        (SUP, "list", {}, True),
        ({"caller": "human", "role": "human"}, "spawn", {"command": True, "shell": True}, True),
        ({"caller": "x", "role": "unknown"}, "spawn", {}, False),
    ],
)
def test_what_each_role_may_do_through_workers(
    who: dict[str, Any], cmd: str, facts: dict[str, Any], allowed: bool
) -> None:
    refused = decide(who["caller"], who["role"], cmd, **facts)
    assert (refused is None) is allowed, refused
    if refused:
        message, hint = refused
        assert message and hint


def test_allow_rules_are_per_role_and_no_broader_than_the_tools() -> None:
    worker = profiles.claude_settings("acceptEdits", "worker")["permissions"]["allow"]  # type: ignore[index]
    sup = profiles.claude_settings("acceptEdits", "supervisor")["permissions"]["allow"]  # type: ignore[index]
    assert "Bash(workers:*)" not in worker and "Bash(workers list:*)" in worker
    assert "Bash(workers:*)" in sup
    for allow in (worker, sup):
        assert {"Bash(mailbox:*)", "Bash(journal:*)"} <= set(allow)
    # An unknown role gets a worker's rules, never more.
    assert profiles.claude_settings("default", "intruder")["permissions"] == {"allow": worker}
