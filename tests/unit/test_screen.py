"""Screen reading against screens captured from the real Claude Code CLI
(2.1.197, tmux 200x50; tests/fixtures/screens/)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest

from cmux.agents import screen
from cmux.agents.registry import Agent, State
from cmux.agents.screen import Screen
from cmux.config import Config

SCREENS = Path(__file__).resolve().parents[1] / "fixtures" / "screens"


def captured(name: str) -> str:
    return (SCREENS / f"{name}.txt").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("idle", Screen.IDLE),
        ("idle_default", Screen.IDLE),
        ("idle_after_deny", Screen.IDLE),
        ("busy", Screen.BUSY),
        ("busy_default", Screen.BUSY),
        ("busy_tool_running", Screen.BUSY),
        ("permission", Screen.PERMISSION),
        ("permission_acceptedits", Screen.PERMISSION),
        ("trust_dialog", Screen.TRUST),
        ("api_key", Screen.API_KEY),
        ("bypass_warning", Screen.BYPASS_WARNING),
        ("onboarding", Screen.ONBOARDING),
    ],
)
def test_every_captured_screen_is_read_right(name: str, expected: Screen) -> None:
    assert screen.classify(captured(name)).screen is expected


def test_every_fixture_is_covered() -> None:
    names = {p.stem for p in SCREENS.glob("*.txt")}
    assert names >= {"idle", "busy", "permission", "trust_dialog", "api_key", "onboarding"}


@pytest.mark.parametrize("name", ["permission", "trust_dialog", "api_key", "bypass_warning"])
def test_dialogs_are_dialogs(name: str) -> None:
    assert screen.dialog(captured(name))
    assert screen.state_for(captured(name)) == "waiting"


@pytest.mark.parametrize("name", ["idle", "idle_default", "busy", "busy_default"])
def test_working_screens_are_not_dialogs(name: str) -> None:
    assert screen.dialog(captured(name)) is None


def test_permission_dialog_details_and_answers() -> None:
    reading = screen.classify(captured("permission_acceptedits"))
    assert "python3" in reading.detail
    assert reading.options[1] == "Yes"
    # yes is the plain yes, never "don't ask again"; no is "No"
    assert screen.answer_key(reading, True) == "1"
    assert screen.answer_key(reading, False) == "3"


def test_trust_api_key_and_bypass_answers_pick_the_right_option() -> None:
    trust = screen.classify(captured("trust_dialog"))
    assert (screen.answer_key(trust, True), screen.answer_key(trust, False)) == ("1", "2")
    key = screen.classify(captured("api_key"))
    # The default (highlighted) answer is No: yes must press 1, not Enter.
    assert (screen.answer_key(key, True), screen.answer_key(key, False)) == ("1", "2")
    bypass = screen.classify(captured("bypass_warning"))
    assert (screen.answer_key(bypass, True), screen.answer_key(bypass, False)) == ("2", "1")


def test_no_answer_for_screens_without_a_question() -> None:
    for name in ("idle", "busy", "onboarding"):
        assert screen.answer_key(screen.classify(captured(name)), True) is None


def test_dialog_words_in_the_conversation_do_not_count() -> None:
    # The model wrote the words of a permission question; the input box below
    # is what the pane shows now.
    lines = captured("idle").rstrip("\n").split("\n")
    rule_at = max(i for i, ln in enumerate(lines) if ln.startswith("────"))
    box_top = max(i for i, ln in enumerate(lines[:rule_at]) if ln.startswith("────"))
    fake = ["● Do you want to proceed?", "  ❯ 1. Yes", "    2. No"]
    text = "\n".join(lines[:box_top] + fake + lines[box_top:])
    assert screen.classify(text).screen is Screen.IDLE


def test_a_prompt_in_the_history_is_not_the_input_box() -> None:
    # busy_default shows earlier prompts (❯ RUN: ...) above a spinner.
    assert screen.classify(captured("busy_default")).screen is Screen.BUSY


def test_blank_and_unknown_screens() -> None:
    assert screen.classify("").screen is Screen.UNKNOWN
    assert screen.classify("$ ls\nREADME.md\n$ ").screen is Screen.UNKNOWN
    assert screen.state_for("$ ") is None


def test_exited_wrapper_line() -> None:
    text = captured("idle") + "\n[cmux] w1 exited with code 0\n"
    assert screen.classify(text).screen is Screen.EXITED


def test_spinner_without_status_line_is_busy() -> None:
    assert screen.classify("✻ Thinking… (12s · ↓ 1.6k tokens)\n").screen is Screen.BUSY
    # The line left after a turn is not a spinner.
    assert screen.classify("✻ Baked for 3s\n").screen is Screen.UNKNOWN


# -- the fallback watcher -------------------------------------------------------------------


class FakeTmux:
    """Screens by pane id; records the keys pressed."""

    def __init__(self, screens: dict[str, str]) -> None:  # used where a Tmux goes
        self.screens = screens
        self.keys: list[tuple[str, tuple[str, ...]]] = []
        self.captures = 0

    def capture(self, pane_id: str, **_: object) -> str:
        self.captures += 1
        return self.screens[pane_id]

    def send_keys(self, pane_id: str, *keys: str) -> None:
        self.keys.append((pane_id, keys))


@pytest.fixture
def cfg(cfg: Config, monkeypatch: pytest.MonkeyPatch) -> Config:
    """The shared project (tests/unit/conftest.py), seen as an agent sees it."""
    monkeypatch.setenv("CMUX_HOME", str(cfg.data.root))
    return cfg


def agent(cfg: Config, name: str, state: State, profile: str = "claude", pane: str = "%1") -> Agent:
    from cmux.agents import registry
    from cmux.mail import store

    a = Agent(name=name, profile=profile, state=state, pane_id=pane)
    registry.save(cfg.data, a)
    store.ensure(cfg.data, name)
    return a


def test_watch_sees_a_permission_dialog_before_the_hook_and_tells_once(cfg: Config) -> None:
    from cmux.agents import registry
    from cmux.mail import store

    agent(cfg, "w1", "busy")
    tmux: Any = FakeTmux({"%1": captured("permission")})
    [change] = screen.watch(cfg, tmux)
    assert (change.old, change.new, change.told) == ("busy", "waiting", "supervisor")
    rec = registry.get(cfg.data, "w1")
    assert rec.state == "waiting" and "touch" in rec.last_event
    [note] = store.read_all(cfg.data, "supervisor")
    assert "workers approve w1" in note.body
    assert screen.watch(cfg, tmux) == []
    assert len(store.read_all(cfg.data, "supervisor")) == 1


def test_watch_notices_a_dialog_answered_in_the_pane(cfg: Config) -> None:
    from cmux.agents import registry

    agent(cfg, "w1", "waiting")
    [change] = screen.watch(cfg, cast(Any, FakeTmux({"%1": captured("idle_after_deny")})))
    assert change.new == "idle" and registry.get(cfg.data, "w1").state == "idle"


def test_watch_leaves_hooked_agents_idle_and_busy_to_the_hooks(cfg: Config) -> None:
    agent(cfg, "w1", "busy")
    agent(cfg, "w2", "idle", pane="%2")
    tmux: Any = FakeTmux({"%1": captured("idle"), "%2": captured("busy")})
    assert screen.watch(cfg, tmux) == []
    assert tmux.captures == 1  # an idle Claude agent's screen is not even read


def test_hookless_agents_get_their_state_from_the_screen(cfg: Config) -> None:
    agent(cfg, "w1", "idle", profile="myclaude")
    tmux: Any = FakeTmux({"%1": captured("busy")})
    [change] = screen.watch(cfg, tmux)
    assert (change.old, change.new) == ("idle", "busy")
    tmux.screens["%1"] = captured("idle")
    assert screen.watch(cfg, tmux)[0].new == "idle"


def test_a_starting_agent_at_the_trust_dialog_waits_or_is_trusted(cfg: Config) -> None:
    from cmux.agents import registry

    agent(cfg, "w1", "starting")
    tmux: Any = FakeTmux({"%1": captured("trust_dialog")})
    [change] = screen.watch(cfg, tmux)
    assert change.new == "waiting" and tmux.keys == []
    registry.transition(cfg.data, "w1", "idle")
    registry.transition(cfg.data, "w1", "killed")
    agent(cfg, "w2", "starting", pane="%2")
    tmux.screens["%2"] = captured("trust_dialog")
    (cfg.project_root / "cmux.toml").write_text(
        (cfg.project_root / "cmux.toml")
        .read_text()
        .replace("[claude]\n", "[claude]\ntrust = true\n")
    )
    from cmux.config import load_config

    trusting = load_config(cfg.project_root)
    [change] = screen.watch(trusting, tmux)
    assert change.pressed == "1" and tmux.keys == [("%2", ("1",))]
    assert registry.get(cfg.data, "w2").state == "starting"


# -- cmux approve: a key the agent dropped is pressed once more ------------------------------


class DroppingPane(FakeTmux):
    """A pane at a permission dialog that ignores the first ``drop`` keys (as
    the Codex TUI does with a key that comes right at its prompt's first
    frame), then shows ``then`` ``redraw`` seconds after a key it takes; an
    ``on_key`` callback stands for a hook the key sets off."""

    def __init__(self, drop: int, redraw: float = 0.0, on_key: Any = None) -> None:
        super().__init__({"%1": captured("permission")})
        self.drop, self.redraw, self.on_key = drop, redraw, on_key
        self.took_at: float | None = None

    def has_session(self, _name: str) -> bool:
        return True

    def send_keys(self, pane_id: str, *keys: str) -> None:
        import time

        super().send_keys(pane_id, *keys)
        if len(self.keys) > self.drop and self.took_at is None:
            self.took_at = time.monotonic()
            if self.on_key:
                self.on_key()

    def capture(self, pane_id: str, **kw: object) -> str:
        import time

        if self.took_at is not None and time.monotonic() - self.took_at >= self.redraw:
            self.screens[pane_id] = captured("busy")
        return super().capture(pane_id, **kw)


@pytest.fixture
def quick_again(monkeypatch: pytest.MonkeyPatch) -> float:
    """A short grace, and the answer pressed again for the program on these
    screens (Claude Code's dialogs, drawn by the fake pane), as it is for
    Codex (capabilities: repress_dropped_answer)."""
    from cmux.agents.adapters import capabilities

    monkeypatch.setattr(screen, "PRESS_AGAIN_AFTER", 0.3)
    monkeypatch.setattr(capabilities.CAPABILITIES["claude"], "repress_dropped_answer", True)
    return 0.3


def test_a_dropped_key_is_pressed_once_more_and_the_dialog_answered(
    cfg: Config, quick_again: float
) -> None:
    from cmux import events
    from cmux.agents import registry

    agent(cfg, "w1", "waiting")
    pane = DroppingPane(drop=1)
    done = screen.answer(cfg, "w1", yes=True, tmux=cast(Any, pane))
    assert pane.keys == [("%1", ("1",)), ("%1", ("1",))]
    assert done.state == "busy" and registry.get(cfg.data, "w1").state == "busy"
    [approved] = [e for e in events.read(cfg.data)[0] if e["event"] == "approve"]
    assert approved["presses"] == 2


def test_a_key_that_took_is_never_pressed_again(cfg: Config, quick_again: float) -> None:
    agent(cfg, "w1", "waiting")
    # The agent takes the key and redraws late, but inside the grace.
    pane = DroppingPane(drop=0, redraw=quick_again / 2)
    screen.answer(cfg, "w1", yes=True, tmux=cast(Any, pane))
    assert pane.keys == [("%1", ("1",))]


def test_a_hook_after_the_key_means_it_took_even_with_the_dialog_still_drawn(
    cfg: Config, quick_again: float
) -> None:
    from cmux.agents import registry
    from cmux.errors import AgentError

    agent(cfg, "w1", "waiting")

    def hook() -> None:
        registry.transition(cfg.data, "w1", "busy", reason="PostToolUse hook")

    # Taken (the hook moved the state), but the screen never redraws.
    pane = DroppingPane(drop=0, redraw=60, on_key=hook)
    with pytest.raises(AgentError, match="still on screen after pressing 1\n"):
        screen.answer(cfg, "w1", yes=True, tmux=cast(Any, pane), timeout=quick_again * 3)
    assert pane.keys == [("%1", ("1",))]


def test_a_dialog_that_ignores_both_presses_is_an_error_after_two_keys_only(
    cfg: Config, quick_again: float
) -> None:
    from cmux.errors import AgentError

    agent(cfg, "w1", "waiting")
    no = screen.answer_key(screen.classify(captured("permission")), yes=False)
    pane = DroppingPane(drop=99)
    with pytest.raises(AgentError, match=f"after pressing {no} twice") as err:
        screen.answer(cfg, "w1", yes=False, tmux=cast(Any, pane), timeout=quick_again * 4)
    assert pane.keys == [("%1", (str(no),))] * 2
    assert "cmux attach" in str(err.value.hint)


def test_a_program_not_known_to_drop_keys_gets_one_press_only(
    cfg: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Claude Code does not drop a dialog's key: a dialog still drawn is an
    error to look at, never a second key that could land in its input box."""
    from cmux.agents.adapters import capabilities
    from cmux.errors import AgentError

    assert not capabilities.CAPABILITIES["claude"].repress_dropped_answer
    assert capabilities.CAPABILITIES["codex"].repress_dropped_answer
    monkeypatch.setattr(screen, "PRESS_AGAIN_AFTER", 0.3)
    agent(cfg, "w1", "waiting")
    pane = DroppingPane(drop=99)
    with pytest.raises(AgentError, match="after pressing 1\n"):
        screen.answer(cfg, "w1", yes=True, tmux=cast(Any, pane), timeout=1.2)
    assert pane.keys == [("%1", ("1",))]
