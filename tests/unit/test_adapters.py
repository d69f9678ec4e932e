"""The adapter registry: a profile's adapter, an unknown name, the flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from cmux.agents import profiles
from cmux.agents.adapters import base as adapters
from cmux.agents.adapters import capabilities
from cmux.agents.registry import Agent
from cmux.config import Profile, load_config
from cmux.errors import ConfigError


def _cfg(tmp_path: Path, toml: str = "") -> object:
    (tmp_path / "cmux.toml").write_text(toml)
    return load_config(tmp_path)


def test_every_builtin_profile_is_its_own_adapter(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    for name in profiles.BUILTIN:
        prof = profiles.resolve(cfg, name)  # type: ignore[arg-type]
        assert prof.adapter == name
        assert adapters.for_profile(prof).name == name


def test_a_profile_entry_is_a_plain_program_unless_it_names_an_adapter(tmp_path: Path) -> None:
    cfg = _cfg(
        tmp_path,
        '[profiles.aider]\ncommand = "aider --yes"\n'
        '[profiles.mine]\ncommand = "my-claude --flag"\nadapter = "claude"\n',
    )
    aider = profiles.resolve(cfg, "aider")  # type: ignore[arg-type]
    mine = profiles.resolve(cfg, "mine")  # type: ignore[arg-type]
    assert aider.adapter == "program" and adapters.for_profile(aider).name == "program"
    assert mine.adapter == "claude" and adapters.for_profile(mine).name == "claude"
    launch = profiles.build_launch(
        cfg,  # type: ignore[arg-type]
        name="w1",
        role="worker",
        profile=mine,
        task="do it",
    )
    # Claude Code's launch with the entry's own command: settings of cmux's own, a session.
    assert launch.argv[:2] == ["my-claude", "--flag"]
    assert "--settings" in launch.argv and launch.session_id
    assert launch.argv[-1] == "do it"


def test_an_unknown_adapter_is_a_clear_config_error(tmp_path: Path) -> None:
    (tmp_path / "cmux.toml").write_text('[profiles.x]\ncommand = "x"\nadapter = "kodex"\n')
    with pytest.raises(ConfigError) as exc:
        load_config(tmp_path)
    assert "adapter" in exc.value.message and "kodex" in exc.value.message
    with pytest.raises(ConfigError) as exc:
        adapters.get("kodex")
    assert "kodex" in exc.value.message and "claude" in (exc.value.hint or "")


def test_the_registry_knows_every_adapter_the_flags_name() -> None:
    assert set(adapters.names()) == set(capabilities.NAMES)
    for name in capabilities.NAMES:
        assert adapters.get(name).caps is capabilities.of(name)


def test_capability_flags() -> None:
    claude = capabilities.of("claude")
    assert claude.hooks and claude.reports_start and claude.screen_checked
    assert claude.settle == 0.05 and claude.interrupt_key == "Escape"
    demo = capabilities.of("demo")
    assert not demo.hooks and demo.reports_start and not demo.screen_read
    for name in ("shell", "command"):
        caps = capabilities.of(name)
        assert not caps.hooks and not caps.reports_start and not caps.screen_read
    program = capabilities.of("program")
    assert not program.hooks and program.screen_read and not program.screen_checked
    assert program.settle == 0.0 and program.interrupt_key == "C-c"
    assert capabilities.of("from-a-newer-cmux") is program


def test_an_agent_record_names_its_adapter_or_its_profile_does() -> None:
    assert capabilities.adapter_of(Agent("w1", profile="claude")) == "claude"  # an old record
    assert capabilities.adapter_of(Agent("w1", profile="aider")) == "program"
    assert capabilities.adapter_of(Agent("w1", profile="mine", adapter="claude")) == "claude"
    assert capabilities.for_agent(Agent("w1", profile="mine", adapter="claude")).hooks
    assert adapters.for_agent(Agent("w1", profile="demo")).name == "demo"


def test_a_profile_built_by_hand_gets_its_adapter() -> None:
    assert Profile("claude", "claude", "arg", builtin=True).adapter == "claude"
    assert Profile("claude", "claude").adapter == "program"  # a [profiles.claude] entry
    assert Profile("x", "x", adapter="claude").adapter == "claude"
