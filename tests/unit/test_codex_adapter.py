"""The Codex adapter without the CLI: its config files, its screen (screens
captured from the real Codex CLI 0.171.0 in tmux, tests/fixtures/screens/codex_*),
its tokens from a rollout transcript, and `cmux doctor`'s verdict."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

from cmux.agents.adapters import base as adapters
from cmux.agents.adapters import capabilities, codex, codex_screen
from cmux.agents.cost import Tokens
from cmux.agents.screen import Screen
from cmux.config import Config

SCREENS = Path(__file__).resolve().parents[1] / "fixtures" / "screens"


def captured(name: str) -> str:
    return (SCREENS / f"{name}.txt").read_text(encoding="utf-8")


def test_codex_is_a_hooked_adapter_whose_enter_waits_past_the_paste_window() -> None:
    adapter = adapters.get("codex")
    assert adapter.name == capabilities.CODEX == "codex"
    caps = capabilities.of("codex")
    assert caps.hooks and caps.reports_start and caps.screen_checked
    assert caps.settle > 0.12  # Codex's paste burst: an Enter within 120 ms is a new line
    assert caps.interrupt_key == "Escape"


def test_config_toml_points_codex_at_the_configured_provider_with_the_role() -> None:
    text = codex.config_toml(
        {"base_url": "http://127.0.0.1:5/v1", "env_key": "MY_KEY", "model": "gpt-x"},
        role="worker",
        trusted=["/p/root", "/p/root/.cmux/worktrees/w1", "/p/root"],
        writable=["/p/root/.cmux"],
        token='t"ok\\en',
    )
    cfg = tomllib.loads(text)
    assert cfg["model"] == "gpt-x" and cfg["model_provider"] == "cmux"
    provider = cfg["model_providers"]["cmux"]
    assert provider["base_url"] == "http://127.0.0.1:5/v1"
    assert (provider["wire_api"], provider["env_key"]) == ("responses", "MY_KEY")
    assert cfg["features"]["hooks"] is True
    assert cfg["developer_instructions"].startswith("# Your role: a cmux worker")
    assert cfg["allow_login_shell"] is False  # /etc/profile would reset PATH
    assert cfg["shell_environment_policy"]["set"] == {"CMUX_AGENT_TOKEN": 't"ok\\en'}
    assert cfg["sandbox_workspace_write"]["writable_roots"] == ["/p/root/.cmux"]
    assert set(cfg["projects"]) == {"/p/root", "/p/root/.cmux/worktrees/w1"}
    assert all(p["trust_level"] == "trusted" for p in cfg["projects"].values())


def test_config_toml_defaults_to_openai() -> None:
    cfg = tomllib.loads(codex.config_toml({}, role="supervisor", trusted=[], writable=[], token=""))
    assert "model" not in cfg
    assert cfg["model_providers"]["cmux"]["base_url"] == "https://api.openai.com/v1"
    assert cfg["model_providers"]["cmux"]["env_key"] == "OPENAI_API_KEY"


def test_every_hook_calls_cmux_hook_with_its_event_and_the_adapter() -> None:
    hooks = codex.hooks_json()["hooks"]
    assert tuple(hooks) == codex.HOOK_EVENTS
    assert {"PermissionRequest", "PostToolUse", "Stop"} <= set(hooks)
    for event, [entry] in hooks.items():
        [hook] = entry["hooks"]
        assert hook["type"] == "command"
        assert shlex.split(hook["command"]) == [
            sys.executable,
            "-m",
            "cmux",
            "hook",
            event,
            "codex",
        ]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("codex_idle", Screen.IDLE),
        ("codex_after_deny", Screen.IDLE),
        ("codex_typed", Screen.IDLE),
        ("codex_busy", Screen.BUSY),
        ("codex_permission", Screen.PERMISSION),
    ],
)
def test_captured_codex_screens_are_read_right(name: str, expected: Screen) -> None:
    assert adapters.get("codex").read_screen(captured(name)).screen is expected


def test_the_approval_prompt_is_answered_y_or_escape_and_says_what_it_runs() -> None:
    adapter = adapters.get("codex")
    reading = adapter.read_screen(captured("codex_permission"))
    assert reading.dialog and reading.screen.value in adapter.dialogs()
    assert reading.options[1] == "Yes, proceed (y)"
    assert "$ echo approved > approved.txt" in reading.detail
    assert (adapter.answer_key(reading, True), adapter.answer_key(reading, False)) == (
        "y",
        "Escape",
    )
    assert adapter.describe(reading) == "an approval prompt"
    idle = adapter.read_screen(captured("codex_idle"))
    assert adapter.answer_key(idle, True) is None


def test_the_question_in_the_conversation_is_not_a_dialog() -> None:
    """A model that writes the question (no options below it) shows no dialog."""
    text = captured("codex_idle").replace(
        "• Noted.", "• Would you like to run the following command? I can do it."
    )
    assert codex_screen.classify(text).screen is Screen.IDLE


def test_claude_patterns_do_not_read_a_codex_approval_as_idle_or_vice_versa() -> None:
    claude = adapters.get("claude")
    assert claude.read_screen(captured("codex_permission")).screen is not Screen.PERMISSION
    assert codex_screen.classify(captured("permission")).screen is not Screen.PERMISSION


def test_typed_text_is_seen_in_the_composer_then_sent() -> None:
    adapter = adapters.get("codex")
    assert adapter.typed_where(captured("codex_typed"), "hello there typed") == "box"
    assert adapter.typed_where(captured("codex_idle"), "hello there typed") == "sent"
    assert adapter.typed_where(captured("codex_idle"), "never typed") == "unknown"
    # The status line shows the first prompt as the thread's title: not the composer.
    assert adapter.typed_where(captured("codex_typed"), "RUN: echo approved > approved.txt") in (
        "sent",
    )
    assert adapter.typed_where(captured("codex_permission"), "approved.txt") == "unknown"


def _rollout(path: Path, totals: list[dict[str, int] | None]) -> None:
    lines = [{"type": "session_meta", "payload": {"id": "s1"}}]
    for t in totals:
        info = {"total_token_usage": t, "last_token_usage": t} if t else None
        lines.append({"type": "event_msg", "payload": {"type": "token_count", "info": info}})
        lines.append({"type": "response_item", "payload": {"type": "message"}})
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))


def test_tokens_are_the_last_running_total_with_cached_input_apart(tmp_path: Path) -> None:
    t = tmp_path / "rollout-2026-12-01T00-00-00-s1.jsonl"
    first = {"input_tokens": 30, "cached_input_tokens": 5, "output_tokens": 7, "total_tokens": 37}
    second = {
        "input_tokens": 80,
        "cached_input_tokens": 10,
        "output_tokens": 14,
        "total_tokens": 94,
    }
    _rollout(t, [None, first, second])
    tokens, offset, _ = codex.read_rollout(t)
    assert tokens == Tokens(input=70, output=14, cache_creation=0, cache_read=10, messages=2)
    assert tokens.total == 94 and offset == t.stat().st_size
    # Read on from an offset: nothing new keeps what was known.
    again, _, _ = codex.read_rollout(t, offset=offset, base=tokens)
    assert again == tokens
    with open(t, "a") as fh:
        third = {**second, "input_tokens": 100, "total_tokens": 114}
        fh.write(
            json.dumps(
                {
                    "type": "event_msg",
                    "payload": {"type": "token_count", "info": {"total_token_usage": third}},
                }
            )
            + "\n"
        )
        fh.write('{"type": "event_msg", "payl')  # a line still being written
    more, end, _ = codex.read_rollout(t, offset=offset, base=tokens)
    assert (more.input, more.cache_read, more.messages, more.total) == (90, 10, 3, 114)
    assert end < t.stat().st_size


def test_cmux_cost_reads_a_codex_agents_transcript_through_its_adapter(tmp_path: Path) -> None:
    from cmux.agents import cost, registry
    from cmux.agents.registry import Agent
    from cmux.paths import DataRoot

    data = DataRoot(tmp_path / "data")
    data.ensure()
    t = tmp_path / "rollout-x-s1.jsonl"
    usage = {"input_tokens": 30, "cached_input_tokens": 5, "output_tokens": 7, "total_tokens": 37}
    _rollout(t, [usage])
    agent = Agent(name="w1", role="worker", profile="codex", adapter="codex", state="idle")
    agent.transcript = str(t)
    registry.save(data, agent, event=None)
    assert cost.usage(data, [agent])["w1"] == Tokens(25, 7, 0, 5, 1)
    # Cached: the same again without rereading, and more once the file grows.
    assert cost.usage(data, [agent])["w1"].total == 37


@pytest.mark.parametrize(
    ("version", "status"),
    [("codex-cli 0.171.0", "ok"), ("codex-cli 0.150.2", "warn"), ("codex-cli 0.124.0", "fail")],
)
def test_doctor_judges_the_codex_version_against_the_hooks_cmux_needs(
    version: str, status: str
) -> None:
    from cmux.doctor import judge_program

    adapter = adapters.get("codex")
    got, detail, _ = judge_program(
        "/bin/codex", version, adapter.hooks_since, adapter.tested_version
    )
    assert got == status, detail


def _with_codex(cfg: Config, section: str) -> Config:
    from cmux.config import load_config

    toml = Path(cfg.project_root) / "cmux.toml"
    plain = toml.read_text().split("\n[codex]\n")[0]
    toml.write_text(plain + "\n[codex]\n" + section)
    return load_config(cfg.project_root)


def test_codex_is_a_built_in_profile_whose_command_is_codex_s_section(cfg: Config) -> None:
    from cmux.agents import profiles

    assert profiles.resolve(cfg, "codex").command == "codex"
    cfg = _with_codex(cfg, 'command = "/opt/codex/bin/codex"\napproval_policy = "never"\n')
    prof = profiles.resolve(cfg, "codex")
    assert (prof.command, prof.adapter, prof.builtin) == ("/opt/codex/bin/codex", "codex", True)


def test_a_wrong_codex_setting_is_an_error_naming_the_key(cfg: Config) -> None:
    from cmux.errors import ConfigError

    with pytest.raises(ConfigError, match=r"approval_policy.*on-request"):
        _with_codex(cfg, 'approval_policy = "sometimes"\n')
    with pytest.raises(ConfigError, match="sandboxx"):
        _with_codex(cfg, 'sandboxx = "read-only"\n')


def test_launch_writes_the_agents_own_codex_home_and_passes_the_task(cfg: Config) -> None:
    from cmux.agents import profiles

    cfg = _with_codex(
        cfg, 'approval_policy = "never"\nsandbox = "read-only"\nargs = ["-c", "x=1"]\n'
    )
    launch = profiles.build_launch(
        cfg, name="w1", role="worker", profile=profiles.resolve(cfg, "codex"), task="-n fix it"
    )
    home = cfg.data.settings_dir / "codex" / "w1"
    assert launch.env["CODEX_HOME"] == str(home)
    assert (home / "config.toml").is_file() and (home / "hooks.json").is_file()
    assert oct((home / "config.toml").stat().st_mode & 0o777) == "0o600"
    assert launch.argv[:3] == ["codex", "--no-alt-screen", "--dangerously-bypass-hook-trust"]
    assert launch.argv[3:9] == [
        "--ask-for-approval",
        "never",
        "--sandbox",
        "read-only",
        "-c",
        "x=1",
    ]
    assert launch.argv[-2:] == ["--", "-n fix it"]  # a task that looks like an option
    assert launch.session_id is None  # Codex picks it; SessionStart reports it
    text = (home / "config.toml").read_text()
    assert launch.env["CMUX_AGENT_TOKEN"] in text
    assert str(cfg.project_root) in text


def test_a_worktree_workers_git_dirs_are_writable_but_not_hooks_or_config(tmp_path: Path) -> None:
    from tests.helpers import git, make_repo

    repo = make_repo(tmp_path / "repo")
    wt = tmp_path / "wt"
    git(repo, "worktree", "add", "-q", "-b", "cmux/w1", str(wt))
    common = (repo / ".git").resolve()
    dirs = codex.worktree_git_dirs(wt)
    assert dirs == [
        str(common / "worktrees" / "wt"),
        str(common / "objects"),
        str(common / "refs"),
        str(common / "logs"),
    ]
    assert not any(d.endswith(("hooks", "config")) or d == str(common) for d in dirs)
    assert codex.worktree_git_dirs(repo) == []  # a .git directory: not a worktree
    assert codex.worktree_git_dirs(tmp_path / "missing") == []


def test_a_comeback_resumes_the_session_its_hooks_reported(cfg: Config) -> None:
    """`codex resume ID` with the same options, no task: the conversation has it."""
    from cmux.agents import profiles

    assert adapters.get("codex").resumes
    sid = "019a0000-0000-7000-8000-00000000abcd"
    launch = profiles.build_launch(
        cfg,
        name="supervisor",
        role="supervisor",
        profile=profiles.resolve(cfg, "codex"),
        task="RUN: not again",
        resume_session=sid,
    )
    assert launch.argv[:4] == [
        "codex",
        "resume",
        "--no-alt-screen",
        "--dangerously-bypass-hook-trust",
    ]
    assert launch.argv[-2:] == ["--", sid]
    assert "RUN: not again" not in launch.argv
    assert launch.session_id == sid
    assert launch.env["CODEX_HOME"] == str(cfg.data.settings_dir / "codex" / "supervisor")


def test_a_codex_agent_launched_without_a_prompt_is_up_when_its_composer_shows(
    cfg: Config,
) -> None:
    """Codex runs SessionStart with the first turn: a supervisor (no task) or a
    resumed conversation is idle from its screen; a worker with a task, and a
    fresh comeback (its notice is a prompt), wait for the hook."""
    from cmux.agents import registry
    from cmux.agents import screen as screens
    from cmux.agents.registry import Agent

    idle = captured("codex_idle")
    cases = [
        (Agent(name="supervisor", role="supervisor", profile="codex"), "idle"),
        (Agent(name="w1", role="worker", profile="codex", task="x", resume="conversation"), "idle"),
        (Agent(name="w2", role="worker", profile="codex", task="RUN: ls"), "starting"),
        (Agent(name="w3", role="worker", profile="codex", task="x", resume="fresh"), "starting"),
    ]
    for rec, want in cases:
        registry.save(cfg.data, rec)
        screens.observe(cfg, None, registry.get(cfg.data, rec.name), idle)  # type: ignore[arg-type]
        assert registry.get(cfg.data, rec.name).state == want, rec.name
    # Claude Code's SessionStart comes at start: its screen never ends starting.
    registry.save(cfg.data, Agent(name="c1", role="worker", profile="claude"))
    assert adapters.get("claude").idle_ends_start(registry.get(cfg.data, "c1")) is False
