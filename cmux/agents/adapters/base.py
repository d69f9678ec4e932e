"""The adapter shape: what cmux knows of one agent program, in one place.

An adapter says how to launch its program (argv, env, the first prompt, a
settings/config file of cmux's own per agent, never the user's), which hook
events it sends and what they mean to cmux, where its transcript is (tokens,
read receipts), which dialogs its screen shows and which keys answer them,
and the plain capability flags the lower layers need
(cmux.agents.adapters.capabilities). ``get`` finds an adapter by name.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from cmux.agents.adapters import capabilities
from cmux.agents.adapters.capabilities import Capabilities
from cmux.errors import ConfigError, UsageError

if TYPE_CHECKING:
    from cmux.agents.cost import Tokens
    from cmux.agents.registry import Agent
    from cmux.agents.screen import Reading
    from cmux.config import Config, Profile

# Every agent command runs under this wrapper: the pane stays (remain-on-exit)
# and its exit status is the agent's, 128+N when a signal ended the agent.
# tmux gives a new pane the PATH of the client that asked for it, so tools/ is
# put in front here rather than through `-e PATH=...`.
_WRAPPER = (
    'PATH="$CMUX_TOOLS:$PATH"; export PATH; "$@"; code=$?; '
    'printf "\\n[cmux] %s exited with code %s\\n" "$CMUX_AGENT" "$code"; exit $code'
)


@dataclass
class Launch:
    """What to run in the agent's pane."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    type_task: str | None = None  # text the router types in once it is ready
    session_id: str | None = None

    def wrapped(self) -> list[str]:
        return ["sh", "-c", _WRAPPER, "cmux-agent", *self.argv]


def role_prompt(role: str) -> str:
    # A path beside this package, not importlib.resources (~10 ms to import
    # on every spawn); the roles ship as package data next to the code.
    return (Path(__file__).resolve().parents[2] / "roles" / f"{role}.md").read_text(
        encoding="utf-8"
    )


class Adapter:
    """One agent program. This base is a program cmux knows nothing of: its
    command line from the profile, the task as an argument, typed in or not
    at all (the profile's ``task``), no hooks, no transcript, the screen read
    for its state."""

    name: str = capabilities.PROGRAM
    # The hook events its settings install (each calls `cmux hook EVENT`).
    hook_events: ClassVar[tuple[str, ...]] = ()
    # Whether it can continue an agent's conversation when it is brought back.
    resumes: bool = False
    # Whether its hooks report every permission question before the screen
    # shows it (then the screen never moves the agent to waiting).
    hooks_announce_questions: ClassVar[bool] = False
    # For `cmux doctor`: how the program prints its version, the first
    # version with the hooks cmux relies on ("" when it has none) and the
    # version cmux's end-to-end tier runs.
    version_args: ClassVar[tuple[str, ...]] = ("--version",)
    hooks_since: ClassVar[str] = ""
    tested_version: ClassVar[str] = ""

    @property
    def caps(self) -> Capabilities:
        return capabilities.of(self.name)

    def launch(
        self,
        cfg: Config,
        *,
        name: str,
        role: str,
        profile: Profile,
        task: str,
        env: dict[str, str],
        resume_session: str | None = None,
        prompt: str | None = None,
        memory: bool = False,
    ) -> Launch:
        """What to run for one agent of this program."""
        launch = Launch(argv=shlex.split(profile.command), env=env)
        if task and profile.task == "arg":
            launch.argv.append(task)
        elif task and profile.task == "type":
            launch.type_task = task
        return launch

    def missing(self, profile: Profile, exe: str) -> UsageError:
        """The error for a profile whose program is not on PATH."""
        return UsageError(
            f"the program of profile {profile.name!r} was not found: {exe!r}",
            f"install it, or fix [profiles.{profile.name}] command in cmux.toml",
        )

    def install_hint(self, profile: Profile, exe: str) -> str:
        """What `cmux doctor` says to do when the program is missing."""
        return f"install {exe} or fix [profiles.{profile.name}] in cmux.toml"

    def transcript(self, agent: Agent) -> Path | None:
        """Where the agent's current transcript is, when no hook said."""
        return None

    def idle_ends_start(self, agent: Agent) -> bool:
        """Whether its idle screen, while ``agent`` is starting, means it is
        up: for a program whose start hook waits for a first prompt that this
        launch of ``agent`` did not give (else the hook says so, exactly)."""
        return False

    def read_tokens(
        self, path: Path, *, offset: int = 0, recent: list[str] | None = None, base: Tokens
    ) -> tuple[Tokens, int, list[str]]:
        """The tokens of transcript ``path`` once read on from byte ``offset``
        (``base``: what was counted up to there; ``recent``: the message ids
        last seen, for programs that write a message twice); returns them, the
        offset read up to and the ids. This base reads Claude Code's format
        (cmux/agents/cost.py): usage per assistant message, added up."""
        from cmux.agents.cost import read_transcript

        more, end, seen = read_transcript(path, offset=offset, recent=recent)
        return base + more, end, seen

    # The screen. This base reads it with the patterns of cmux/agents/screen.py
    # (Claude Code's, which also fit the programs cmux knows nothing of); an
    # adapter whose program draws other screens overrides all four.

    def read_screen(self, text: str) -> Reading:
        """What a captured screen of this program shows."""
        from cmux.agents.screen import classify

        return classify(text)

    def typed_where(self, text: str, needle: str) -> str:
        """Where typed text ending in ``needle`` is: ``box`` (typed, not yet
        submitted), ``sent`` or ``unknown`` (cmux/agents/screen.typed_where)."""
        from cmux.agents.screen import typed_where

        return typed_where(text, needle)

    def dialogs(self) -> frozenset[str]:
        """The dialogs its screen shows (cmux.agents.screen.Screen values)."""
        from cmux.agents.screen import DIALOGS

        return frozenset(d.value for d in DIALOGS)

    def describe(self, reading: Reading) -> str:
        """The dialog or screen ``reading`` shows, in words, for a notice."""
        from cmux.agents.screen import DESCRIPTION

        return DESCRIPTION.get(reading.screen) or f"its {reading.screen.value} screen"

    def answer_key(self, reading: Reading, yes: bool) -> str | None:
        """The key that answers the dialog ``reading`` shows yes (approve) or
        no (deny); None when this program shows no such dialog."""
        from cmux.agents.screen import answer_key

        return answer_key(reading, yes)


_ADAPTERS: dict[str, Adapter] = {}
# The agent programs with a built-in profile and a cmux.toml section of their
# own ([claude], [codex], [gemini]).
PROGRAMS = ("claude", "codex", "gemini")


def register(adapter: Adapter) -> Adapter:
    _ADAPTERS[adapter.name] = adapter
    return adapter


def _load() -> None:
    # Each adapter module registers itself when imported; one may already be.
    from cmux.agents.adapters import claude, codex, gemini, plain  # noqa: F401


def get(name: str) -> Adapter:
    """The adapter called ``name``; ConfigError naming the known ones if none is."""
    _load()
    try:
        return _ADAPTERS[name]
    except KeyError:
        known = ", ".join(sorted(_ADAPTERS))
        raise ConfigError(
            f"unknown agent adapter {name!r}", f"use one of: {known} (adapter = ... in cmux.toml)"
        ) from None


def names() -> tuple[str, ...]:
    _load()
    return tuple(sorted(_ADAPTERS))


def for_profile(profile: Profile) -> Adapter:
    """The adapter of a resolved profile."""
    return get(profile.adapter)


def for_agent(agent: Agent) -> Adapter:
    """The adapter of a registry record (an old record: by its profile name)."""
    return get(capabilities.adapter_of(agent))
