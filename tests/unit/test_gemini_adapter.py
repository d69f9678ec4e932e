"""The Gemini CLI adapter without the CLI: its launch (a GEMINI_CLI_HOME of
cmux's own, settings.json with cmux's hooks, the role and policy files), its
screens (captured from the real CLI 0.61.0 in tmux: tests/fixtures/screens/
gemini_*.txt), its transcript's tokens, its `cmux doctor` verdict and its
[gemini] config section. tests/e2e/test_gemini.py runs the real CLI."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Any

import pytest

from cmux.agents import profiles
from cmux.agents.adapters import base as adapters
from cmux.agents.adapters import capabilities, gemini
from cmux.agents.screen import Screen
from cmux.config import Config, Profile, load_config
from cmux.errors import ConfigError


def toml(path: Path) -> dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    return tomllib.loads(path.read_text())


SCREENS = Path(__file__).resolve().parents[1] / "fixtures" / "screens"


def screen(name: str) -> str:
    return (SCREENS / f"gemini_{name}.txt").read_text()


def with_gemini(cfg: Config, section: str) -> Config:
    toml = cfg.project_root / "cmux.toml"
    base = toml.read_text().split("\n[gemini]\n")[0]
    toml.write_text(base + "\n[gemini]\n" + section)
    return load_config(cfg.project_root)


def test_launch_uses_a_home_of_cmux_own_with_hooks_role_and_policy(cfg: Config) -> None:
    cfg = with_gemini(
        cfg,
        'command = "/opt/gemini --debug"\napproval_mode = "auto_edit"\n'
        'model = "gemini-2.5-flash"\nbase_url = "http://127.0.0.1:9/s/{agent}-{session}"\n',
    )
    prof = profiles.resolve(cfg, "gemini")
    assert prof.adapter == "gemini" and prof.builtin
    launch = profiles.build_launch(cfg, name="w1", role="worker", profile=prof, task="RUN: ls")
    sid = launch.session_id
    assert sid
    assert launch.argv == [
        "/opt/gemini", "--debug", "--session-id", sid, "--approval-mode", "auto_edit", "RUN: ls",
    ]  # fmt: skip
    home = Path(launch.env["GEMINI_CLI_HOME"])
    assert home == cfg.data.root / "state" / "settings" / "gemini" / "w1"
    assert launch.env["GOOGLE_GEMINI_BASE_URL"] == f"http://127.0.0.1:9/s/w1-{sid}"
    assert launch.env["CMUX_SESSION_ID"] == sid and launch.env["CMUX_AGENT"] == "w1"
    settings = json.loads((home / ".gemini" / "settings.json").read_text())
    security = settings["security"]
    assert security["auth"] == {"selectedType": "gemini-api-key"}
    assert security["folderTrust"] == {"enabled": False}
    # The CLI filters its commands' environment (GITHUB_SHA, redaction): what
    # cmux's tools need is allowed through, the identity token too.
    kept = set(security["environmentVariableRedaction"]["allowed"])
    assert {"CMUX_AGENT", "CMUX_AGENT_TOKEN", "CMUX_HOME", "CMUX_INCARNATION"} <= kept
    assert {k for k in launch.env if k.startswith("CMUX_")} <= kept
    assert settings["model"] == {"name": "gemini-2.5-flash"}
    assert settings["telemetry"] == {"enabled": False}
    assert set(settings["hooks"]) == set(gemini.HOOK_EVENTS)
    for event, [entry] in settings["hooks"].items():
        [hook] = entry["hooks"]
        argv = shlex.split(hook["command"])
        assert argv == [sys.executable, "-m", "cmux", "hook", event, "gemini"]
        assert hook["env"]["CMUX_AGENT"] == "w1"
        assert hook["env"]["CMUX_HOME"] == str(cfg.data.root)
    # The role is the CLI's global context file; cmux's tools run unasked.
    assert "worker" in (home / ".gemini" / "GEMINI.md").read_text().lower()
    policy = toml(home / ".gemini" / "policies" / "cmux.toml")
    [rule] = policy["rule"]
    assert rule["toolName"] == "run_shell_command" and rule["decision"] == "allow"
    assert rule["commandPrefix"] == ["mailbox", "journal", "workers list"]


def test_launch_defaults_and_a_task_that_looks_like_an_option(cfg: Config) -> None:
    prof = profiles.resolve(cfg, "gemini")
    assert prof.command == "gemini"
    launch = profiles.build_launch(
        cfg, name="supervisor", role="supervisor", profile=prof, task="-v is not a flag"
    )
    assert launch.argv[-1] == "--prompt-interactive=-v is not a flag"
    assert launch.argv[launch.argv.index("--approval-mode") + 1] == "default"
    assert "GOOGLE_GEMINI_BASE_URL" not in launch.env  # the CLI's own default endpoint
    home = Path(launch.env["GEMINI_CLI_HOME"])
    settings = json.loads((home / ".gemini" / "settings.json").read_text())
    assert "model" not in settings
    policy = toml(home / ".gemini" / "policies" / "cmux.toml")
    assert policy["rule"][0]["commandPrefix"] == ["mailbox", "journal", "workers"]
    # Nothing was written to the user's ~/.gemini (HOME is the test's own).
    assert not (Path.home() / ".gemini").exists()


def test_the_gemini_section_is_checked(cfg: Config) -> None:
    for bad in ('approval_mode = "always"', 'base_url = "ftp://x"', 'modle = "x"'):
        with pytest.raises(ConfigError) as exc:
            with_gemini(cfg, bad + "\n")
        assert "[gemini]" in exc.value.message


def test_capabilities_and_registry() -> None:
    caps = capabilities.of("gemini")
    assert caps.hooks and caps.reports_start and caps.screen_checked
    assert caps.settle > 0 and caps.interrupt_key == "Escape"
    assert adapters.get("gemini").name == "gemini"


# -- the screen -------------------------------------------------------------------------


def test_the_permission_dialog_and_its_keys() -> None:
    program = adapters.get("gemini")
    reading = program.read_screen(screen("permission"))
    assert reading.screen == Screen.PERMISSION and reading.dialog
    assert reading.options == {
        1: "Allow once",
        2: "Allow for this session",
        3: "No, suggest changes (esc)",
    }
    assert reading.detail.startswith("1. Allow once | Shell")
    assert "sleep 2" in reading.detail
    assert program.answer_key(reading, True) == "Enter"
    assert program.answer_key(reading, False) == "Escape"


@pytest.mark.parametrize(
    ("name", "expected"),
    [("busy", Screen.BUSY), ("idle", Screen.IDLE), ("idle_after_deny", Screen.IDLE)],
)
def test_busy_and_idle_screens(name: str, expected: Screen) -> None:
    program = adapters.get("gemini")
    reading = program.read_screen(screen(name))
    assert reading.screen == expected
    assert program.answer_key(reading, True) is None
    assert program.answer_key(reading, False) is None


def test_nothing_is_read_while_cmux_hooks_run() -> None:
    """While a hook runs the CLI shows a spinner naming it; the Notification
    hook of a question runs before the question is drawn, so that screen is
    neither busy (the monitor would end ``waiting``) nor idle."""
    reading = adapters.get("gemini").read_screen(screen("hooks_running"))
    assert reading.screen == Screen.UNKNOWN


def test_where_typed_text_is() -> None:
    program = adapters.get("gemini")
    # In the box, not yet sent (the conversation above shows past prompts with
    # the same ">" mark: only the box's place below the last rule counts).
    assert program.typed_where(screen("typed"), "typed words here") == "box"
    assert program.typed_where(screen("typed"), "touch b.txt") == "sent"
    assert program.typed_where(screen("idle"), "typed words here") == "sent"
    assert program.typed_where(screen("idle"), "never typed") == "unknown"
    assert program.typed_where(screen("permission"), "sleep 2") == "unknown"


def test_claude_patterns_do_not_read_gemini_screens_as_dialogs() -> None:
    from cmux.agents import screen as claude_screen

    for name in ("busy", "idle", "typed", "idle_after_deny"):
        assert not claude_screen.classify(screen(name)).dialog


# -- tokens -----------------------------------------------------------------------------


def test_tokens_count_each_message_id_once(tmp_path: Path) -> None:
    from cmux.agents.cost import Tokens, transcript_tokens

    path = tmp_path / "session-2026-12-01T17-00-abcdef12.jsonl"
    g1 = {"input": 100, "output": 7, "cached": 5, "thoughts": 3, "tool": 0, "total": 110}
    rows = [
        {"sessionId": "abcdef12", "projectHash": "x", "startTime": "t", "kind": "main"},
        {"id": "u1", "type": "user", "content": [{"text": "hi"}]},
        {"id": "g1", "type": "gemini", "content": "", "tokens": None},
        {"id": "g1", "type": "gemini", "tokens": g1},
        {"id": "g1", "type": "gemini", "toolCalls": [{}], "tokens": g1},
        {"$set": {"lastUpdated": "t"}},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n{not json\n")
    program = adapters.get("gemini")
    tokens, offset, recent = program.read_tokens(path, base=Tokens())
    assert (tokens.input, tokens.cache_read, tokens.output, tokens.messages) == (95, 5, 10, 1)
    assert offset == path.stat().st_size and recent == ["g1"]
    # Through cost.py's cache: a later line of the same id is not counted again,
    # a new message is, and a partly written line waits.
    cache: dict[str, Any] = {}
    assert transcript_tokens(path, cache, program).total == 110
    g2 = {"input": 120, "output": 9, "cached": 0, "thoughts": 0, "tool": 0, "total": 129}
    with open(path, "a") as fh:
        fh.write(json.dumps({"id": "g1", "type": "gemini", "tokens": g1}) + "\n")
        fh.write(json.dumps({"id": "g2", "type": "gemini", "tokens": g2}) + "\n")
        fh.write('{"id": "g3", "type": "gem')
    total = transcript_tokens(path, cache, program)
    assert (total.input, total.cache_read, total.output, total.messages) == (215, 5, 19, 2)
    assert gemini.read_usage(tmp_path / "missing.jsonl")[0].total == 0


# -- cmux doctor ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("output", "status"),
    [
        ("0.61.0", "ok"),
        ("0.70.2\n", "ok"),
        ("0.40.1", "warn"),
        ("0.12.0", "fail"),
        ("nightly", "warn"),
        (None, "warn"),
    ],
)
def test_doctor_verdict_on_the_version(output: str | None, status: str) -> None:
    from cmux.doctor import judge_program

    program = adapters.get("gemini")
    assert program.version_args == ("--version",)
    verdict, detail, fix = judge_program(
        "/bin/gemini", output, program.hooks_since, program.tested_version
    )
    assert verdict == status
    if status == "fail":
        assert "hooks" in detail and "0.61.0" in fix
    profile = Profile("gemini", "gemini", builtin=True, adapter="gemini")
    assert "npm install -g @google/gemini-cli" in program.install_hint(profile, "gemini")


def test_doctor_checks_gemini_when_cmux_toml_configures_it(
    cfg: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os
    import stat

    from cmux import doctor

    bindir = tmp_path / "bin"
    bindir.mkdir()
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.chdir(cfg.project_root)
    assert "agent gemini" not in {c.name for c in doctor.run_checks()}  # not configured

    with_gemini(cfg, 'approval_mode = "yolo"\n')
    missing = {c.name: c for c in doctor.run_checks()}["agent gemini"]
    assert missing.status == "warn" and "npm install -g @google/gemini-cli" in missing.fix

    fake = bindir / "gemini"
    for version, status in (("0.12.0", "fail"), ("0.61.0", "ok")):
        fake.write_text(f'#!/bin/sh\n[ "$1" = --version ] && echo {version}\n')
        fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
        check = {c.name: c for c in doctor.run_checks()}["agent gemini"]
        assert check.status == status, check
        if status == "fail":
            assert "hooks" in check.detail and "npm install -g @google/gemini-cli" in check.fix


def test_a_missing_gemini_says_how_to_install_it(cfg: Config) -> None:
    from cmux.errors import UsageError

    cfg = with_gemini(cfg, 'command = "no-such-gemini-here"\n')
    with pytest.raises(UsageError) as exc:
        profiles.require_binary(profiles.resolve(cfg, "gemini"))
    assert "Gemini CLI is not installed" in exc.value.message
    assert "npm install -g @google/gemini-cli" in (exc.value.hint or "")


def test_the_monitor_reads_a_gemini_screen_with_its_own_patterns(cfg: Config) -> None:
    """A busy Gemini agent's question does not make it waiting from the screen
    (its Notification hook says so, before the question is drawn, and a
    question still drawn just after `cmux approve` must not say it again); a
    waiting one whose question went (answered in the pane) is idle or busy."""
    from cmux.agents import registry
    from cmux.agents import screen as screens
    from cmux.agents.registry import Agent

    registry.save(cfg.data, Agent(name="supervisor", role="supervisor", profile="shell"))
    rec = Agent(name="w1", role="worker", profile="gemini", adapter="gemini", parent="supervisor")
    registry.save(cfg.data, rec)
    registry.transition(cfg.data, "w1", "busy", reason="test", strict=False)
    busy = registry.get(cfg.data, "w1")
    assert screens.observe(cfg, None, busy, screen("permission")) is None  # type: ignore[arg-type]
    assert registry.get(cfg.data, "w1").state == "busy"
    registry.transition(cfg.data, "w1", "waiting", reason="test", strict=False)
    waiting = registry.get(cfg.data, "w1")
    assert screens.observe(cfg, None, waiting, screen("hooks_running")) is None  # type: ignore[arg-type]
    change = screens.observe(cfg, None, waiting, screen("idle_after_deny"))  # type: ignore[arg-type]
    assert change is not None and change.new == "idle"


def test_a_comeback_resumes_its_session_by_id_with_no_first_prompt(cfg: Config) -> None:
    """`--resume ID` (not --session-id, which the CLI refuses for a session
    that exists), the same id in the base URL, no task: the chat has it."""
    cfg = with_gemini(cfg, 'base_url = "http://127.0.0.1:9/s/{session}"\n')
    prof = profiles.resolve(cfg, "gemini")
    assert adapters.get("gemini").resumes
    sid = "0b7e0000-0000-4000-8000-00000000abcd"
    launch = profiles.build_launch(
        cfg, name="supervisor", role="supervisor", profile=prof, task="RUN: ls", resume_session=sid
    )
    assert launch.argv == ["gemini", "--resume", sid, "--approval-mode", "default"]
    assert launch.session_id == sid == launch.env["CMUX_SESSION_ID"]
    assert launch.env["GOOGLE_GEMINI_BASE_URL"] == f"http://127.0.0.1:9/s/{sid}"


def test_its_spinner_ticking_is_no_change_for_the_stuck_watchdog() -> None:
    """While the CLI retries a refusing API by itself (or waits on a slow one)
    only its spinner line moves: the seconds and the phrase. The stuck
    watchdog compares fingerprints, which leave that line out."""
    import re

    from cmux.agents.screen import fingerprint

    busy = screen("busy")
    later = re.sub(r"\(esc to cancel, \d+s", "(esc to cancel, 59s", busy)
    later = later.replace("⠋", "⠙").replace("Thinking...", "This is taking a bit longer...")
    assert later != busy and fingerprint(later) == fingerprint(busy)
    assert fingerprint(busy + "\n ✓ Shell ls\n") != fingerprint(busy)
