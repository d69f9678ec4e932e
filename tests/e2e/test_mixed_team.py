"""One team of three programs: a Claude Code supervisor, a Codex worker and a
Gemini worker, in one session, one mailbox, one journal (issue 14).

Each program is the real CLI from npm against its own scripted model server
on 127.0.0.1 (tests/e2e/model_server.py, codex_server.py, gemini_server.py):
`RUN:` lines in what an agent is told become its shell calls. The person
does what the README says: `cmux start --agent claude`, then
`cmux spawn w1 --agent codex` and `cmux spawn w2 --agent gemini`.

The Gemini worker's task mails the Codex worker an instruction and reports
done; the Codex worker, told so by that mail, mails the Gemini worker back
and reports done. What a user checks: every mail reached its model exactly
once, both reports reached the supervisor's model, and `cmux status` and
`cmux cost` show all three programs.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import codex_server, gemini_server
from tests.e2e.conftest import Team, started
from tests.helpers import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.codex, pytest.mark.gemini]

GEMINI_KEY = "gemini-cmux-e2e-0000000000000000"
Mixed = tuple[Team, codex_server.CodexServer, gemini_server.GeminiServer]


def _binary(var: str, what: str) -> Path:
    value = os.environ.get(var, "")
    if not value:
        pytest.skip(f"mixed team: {var} is not set (bin/test installs the {what} into .cache/)")
    path = Path(value)
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.skip(f"mixed team: {var}={value} is not an executable file")
    return path


@pytest.fixture
def mixed(team: Team) -> Iterator[Mixed]:
    """The Claude team of tests/e2e/conftest.py, with [codex] and [gemini]
    pointed at their own scripted servers."""
    codex = _binary("CMUX_TEST_CODEX", "Codex CLI")
    gemini = _binary("CMUX_TEST_GEMINI", "Gemini CLI")
    with codex_server.CodexServer() as cs, gemini_server.GeminiServer() as gs:
        toml = team.project.root / "cmux.toml"
        toml.write_text(
            toml.read_text()
            + f'\n[codex]\ncommand = "{codex}"\nmodel = "{codex_server.MODEL}"\n'
            + f'base_url = "{cs.base_url}"\nenv_key = "{codex_server.API_KEY_ENV}"\n'
            + f'\n[gemini]\ncommand = "{gemini}"\nmodel = "{gemini_server.MODEL}"\n'
            + f'base_url = "{gs.url}/s/{{session}}"\n'
        )
        team.project.env.update(
            {
                codex_server.API_KEY_ENV: codex_server.API_KEY,
                "GEMINI_API_KEY": GEMINI_KEY,
                # Any address but loopback goes to a dead proxy.
                "HTTPS_PROXY": "http://127.0.0.1:9",
                "HTTP_PROXY": "http://127.0.0.1:9",
                "ALL_PROXY": "http://127.0.0.1:9",
                "NO_PROXY": "127.0.0.1,localhost",
            }
        )
        yield team, cs, gs
        for name in ("w1", "w2"):
            try:
                pane = team.agent(name)["pane_id"]
                print(f"--- {name} ---\n" + team.project.tmux("capture-pane", "-p", "-t", pane))
            except Exception as exc:
                print(f"--- {name}: no screen ({exc})")


def _session(team: Team, name: str) -> str:
    from cmux.agents import registry

    sid = registry.get(team.project.config().data, name).session_id
    assert sid, f"{name} has no session id"
    return str(sid)


@pytest.mark.timeout(150)
def test_claude_codex_and_gemini_exchange_mail_and_both_report(
    mixed: Mixed,
) -> None:
    team, cs, gs = mixed
    started(team)
    p = team.project
    p.ok("spawn", "w1", "--agent", "codex", "--task", "SAY: ready for mail")
    team.wait_state("w1", "idle", timeout=60)
    back = "RUN: mailbox send w2 pong-from-codex && mailbox done codex-report"
    task = f"RUN: mailbox send w1 '{back}'\nRUN: mailbox done gemini-report"
    p.ok("spawn", "w2", "--agent", "gemini", "--task", task)

    # Both reports reached the supervisor's mailbox and then its model.
    def reports() -> dict[str, dict[str, Any]]:
        got = {m["from"]: m for m in team.project.mail_to("supervisor") if m["kind"] == "done"}
        return got if set(got) == {"w1", "w2"} else {}

    done = wait_until(reports, timeout=90, interval=0.3, what="both reports in the mailbox")
    assert "codex-report" in str(done["w1"]["body"])
    assert "gemini-report" in str(done["w2"]["body"])
    team.wait_seen(
        "supervisor",
        "codex-report",
        "gemini-report",
        str(done["w1"]["id"]),
        str(done["w2"]["id"]),
        timeout=60,
    )

    # The workers' mail to each other reached each model exactly once.
    [to_w1] = [m for m in team.project.mail_to("w1") if m["from"] == "w2"]
    wait_until(
        lambda: [m for m in team.project.mail_to("w2") if m["from"] == "w1"],
        timeout=30,
        what="w1's mail to w2",
    )
    [to_w2] = [m for m in team.project.mail_to("w2") if m["from"] == "w1"]
    assert "pong-from-codex" in str(to_w2["body"])
    wait_until(
        lambda: f"[cmux mail {to_w2['id']} " in gs.texts(_session(team, "w2")),
        timeout=40,
        what="w1's mail in w2's conversation",
    )
    assert cs.texts(_session(team, "w1")).count(f"[cmux mail {to_w1['id']} ") >= 1
    for name, msg in (("w1", to_w1), ("w2", to_w2)):
        delivered = [e for e in team.events("deliver", name) if e.get("id") == msg["id"]]
        assert len(delivered) == 1, (name, delivered)

    # One session: status shows each agent with its program; cost counts all three.
    status = p.status()
    assert {n: status[n]["profile"] for n in ("supervisor", "w1", "w2")} == {
        "supervisor": "claude",
        "w1": "codex",
        "w2": "gemini",
    }

    def cost() -> dict[str, Any]:
        agents = {a["name"]: a for a in p.ok("cost", "--json").json()["agents"]}
        return agents if all(agents.get(n, {}).get("total", 0) > 0 for n in status) else {}

    wait_until(cost, timeout=30, what="tokens of all three in cmux cost")
