"""What a Claude Code pane shows, read from a captured screen.

Every screen pattern cmux knows lives here, checked against screens captured
from the real CLI (tests/fixtures/screens/). Hooks are the truth about a
Claude agent's state; the screen is the fallback: for agents that run no
hooks, for the dialogs Claude Code shows before any hook runs (onboarding,
the API-key question, the folder trust dialog, the bypass-permissions
warning), and for the router, which never types into a pane showing a dialog.

Only the bottom of the screen counts: Claude Code draws its input box and its
dialogs last, below the conversation, so words from the conversation above
(a model that writes "Do you want to proceed?") are not mistaken for a dialog.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

from cmux.agents.adapters import base as adapters
from cmux.agents.adapters import capabilities

if TYPE_CHECKING:
    from cmux.agents.registry import Agent, State
    from cmux.config import Config
    from cmux.tmux import Tmux


class Screen(str, Enum):
    IDLE = "idle"
    BUSY = "busy"
    PERMISSION = "permission"  # a tool call waits for a yes or no
    TRUST = "trust"  # "Is this a project you created or one you trust?"
    API_KEY = "api-key"  # "Detected a custom API key ... use this API key?"
    BYPASS_WARNING = "bypass-warning"  # accepting --permission-mode bypassPermissions
    ONBOARDING = "onboarding"  # first run: theme, login, connectivity check
    EXITED = "exited"  # the agent's process ended (cmux's wrapper said so)
    UNKNOWN = "unknown"


# Screens that wait for a person's answer; mail is held while one is up.
DIALOGS = frozenset(
    {Screen.PERMISSION, Screen.TRUST, Screen.API_KEY, Screen.BYPASS_WARNING, Screen.ONBOARDING}
)
DESCRIPTION = {
    Screen.PERMISSION: "a permission dialog",
    Screen.TRUST: "the folder trust dialog",
    Screen.API_KEY: "the API key question",
    Screen.BYPASS_WARNING: "the bypass-permissions warning",
    Screen.ONBOARDING: "Claude Code's first-run screens",
}

BOTTOM_LINES = 30  # dialogs and the input box fit in this many lines

_RULE = re.compile(r"^\s*─{20,}\s*$")
_PROMPT = re.compile(r"^❯(\s|$)")
_OPTION = re.compile(r"^\s*(?:❯\s*)?(\d)\.\s+(.+?)\s*$")
_SPINNER = re.compile(r"^\s*\S\s+[A-Z][\w'-]*(?:\s\w+)*…\s+\(\d+[smh]")

_ONBOARDING = (
    re.compile(r"Unable to connect to Anthropic services"),
    re.compile(r"Choose the text style that looks best"),
    re.compile(r"Select login method"),
    re.compile(r"Let's get started"),
    re.compile(r"Security notes:"),
    re.compile(r"Use Claude Code's terminal setup"),
    re.compile(r"Paste code here if prompted"),
)
_API_KEY = (
    re.compile(r"Detected a custom API key"),
    re.compile(r"Do you want to use this API key\?"),
)
_TRUST = (
    re.compile(r"Yes, I trust this folder"),
    re.compile(r"Do you trust the files in this folder\?"),
    re.compile(r"Is this a project you created or one you trust"),
)
_BYPASS = (
    re.compile(r"running in Bypass Permissions mode"),
    re.compile(r"Yes, I accept"),
)
_PERMISSION_QUESTION = re.compile(
    r"Do you want to (?:proceed|make this edit|create|allow|run|delete|overwrite|fetch|use)\b"
    r"|requires approval|Allow this\b"
)
_BUSY_FOOTER = re.compile(r"esc to interrupt", re.IGNORECASE)
_EXITED = re.compile(r"^\[cmux\] \S+ exited with code (-?\d+)\s*$")


@dataclass(frozen=True)
class Reading:
    """What the screen shows, and the numbered options of a dialog."""

    screen: Screen
    options: dict[int, str] = field(default_factory=dict)
    detail: str = ""

    @property
    def dialog(self) -> bool:
        return self.screen in DIALOGS

    def option(self, *labels: str) -> int | None:
        """The number of the first option whose text starts with one of ``labels``."""
        for label in labels:
            for n, text in sorted(self.options.items()):
                if text == label or text.startswith(label):
                    return n
        return None


def _lines(text: str) -> list[str]:
    lines = [ln.rstrip() for ln in text.replace("\r", "").split("\n")]
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


def _after_last_rule(lines: list[str]) -> list[str]:
    for i in range(len(lines) - 1, -1, -1):
        if _RULE.match(lines[i]):
            return lines[i + 1 :]
    return lines


def _options(lines: list[str]) -> dict[int, str]:
    out: dict[int, str] = {}
    for ln in lines:
        m = _OPTION.match(ln)
        if m:
            out[int(m.group(1))] = m.group(2)
    return out


def _any(patterns: tuple[re.Pattern[str], ...], text: str) -> bool:
    return any(p.search(text) for p in patterns)


def classify(text: str) -> Reading:
    """Read a captured screen (``capture-pane -p``, no escapes)."""
    lines = _lines(text)
    if not lines:
        return Reading(Screen.UNKNOWN)
    if _EXITED.match(lines[-1].strip()):
        return Reading(Screen.EXITED, detail=lines[-1].strip())
    bottom = lines[-BOTTOM_LINES:]
    joined = "\n".join(bottom)
    tail = _after_last_rule(bottom)
    if _any(_API_KEY, joined):
        return Reading(Screen.API_KEY, _options(tail or bottom))
    if _any(_TRUST, joined):
        return Reading(Screen.TRUST, _options(tail or bottom))
    if _any(_BYPASS, joined) and _options(tail):
        return Reading(Screen.BYPASS_WARNING, _options(tail))
    # A permission dialog replaces the input box: it sits below the last rule.
    tail_text = "\n".join(tail)
    tail_options = _options(tail)
    if _PERMISSION_QUESTION.search(tail_text) and 1 in tail_options:
        question = next((ln.strip() for ln in tail if _PERMISSION_QUESTION.search(ln)), "")
        return Reading(Screen.PERMISSION, tail_options, detail=_permission_detail(tail, question))
    if _any(_ONBOARDING, "\n".join(lines)):
        return Reading(Screen.ONBOARDING)
    if any(_BUSY_FOOTER.search(ln) for ln in tail) or any(_SPINNER.match(ln) for ln in bottom):
        return Reading(Screen.BUSY)
    if _prompt_box(bottom):
        return Reading(Screen.IDLE)
    return Reading(Screen.UNKNOWN)


def _permission_detail(tail: list[str], question: str) -> str:
    """The tool and what it wants to do, as the dialog shows it (first lines)."""
    body = [ln.strip() for ln in tail if ln.strip()]
    head = []
    for ln in body:
        if ln == question or _OPTION.match(ln):
            break
        head.append(ln)
    return " | ".join(head[:3]) or question


def _prompt_box(lines: list[str]) -> bool:
    """The input box: a `❯` line between two rules, near the bottom."""
    rules = [i for i, ln in enumerate(lines) if _RULE.match(ln)]
    if len(rules) < 2:
        return False
    upper, lower = rules[-2], rules[-1]
    return any(_PROMPT.match(ln) for ln in lines[upper + 1 : lower])


# A line that animates while nothing happens: a spinner glyph and its verb
# ("✻ Beaming… (12s · ↓ 1.6k tokens)"), redrawn every fraction of a second;
# the Gemini CLI's ("⠇ Thinking... (esc to cancel, 57s)", its phrase changing
# too), which also stands while the CLI retries a refusing API by itself.
_ANIMATED = re.compile(r"^\s*\S\s+\S[^…]{0,60}…|\(esc to cancel, \d+[smh]")


def fingerprint(text: str) -> str:
    """The screen without what moves by itself (spinner lines): two captures
    with the same fingerprint show that nothing happened in between."""
    return "\n".join(ln for ln in _lines(text) if not _ANIMATED.search(ln))


def last_lines(text: str, n: int = 12) -> str:
    """The last ``n`` non-blank lines of a screen, for a notice."""
    return "\n".join([ln for ln in _lines(text) if ln.strip()][-n:])


def typed_where(text: str, needle: str) -> str:
    """Where typed text ending in ``needle`` is on the screen: ``box`` (still
    in the input box: typed, not submitted), ``sent`` (above the box, in the
    conversation, and not in the box) or ``unknown`` (not drawn yet, scrolled
    away, or no input box: a dialog took its place).

    Claude Code reads a burst of keys as a paste, and an Enter inside a paste
    as a new line: when it is slow to read its input (just after a resumed
    conversation loads) the text stays in the box with the cursor on a fresh
    line below it, so the cursor line alone does not show it was not sent.
    """
    lines = _lines(text)
    rules = [i for i, ln in enumerate(lines) if _RULE.match(ln)]
    if len(rules) < 2 or not needle:
        return "unknown"
    upper, lower = rules[-2], rules[-1]
    if lower < len(lines) - BOTTOM_LINES:
        return "unknown"
    if any(needle in ln for ln in lines[upper + 1 : lower]):
        return "box"
    return "sent" if any(needle in ln for ln in lines[:upper]) else "unknown"


def dialog(text: str) -> str | None:
    """What dialog the screen shows, in words (None when there is none)."""
    reading = classify(text)
    return DESCRIPTION.get(reading.screen) if reading.dialog else None


# The registry state a screen implies, for agents whose hooks do not tell.
STATE_FOR: dict[Screen, State] = {
    Screen.IDLE: "idle",
    Screen.BUSY: "busy",
    Screen.PERMISSION: "waiting",
    Screen.TRUST: "waiting",
    Screen.API_KEY: "waiting",
    Screen.BYPASS_WARNING: "waiting",
    Screen.ONBOARDING: "waiting",
}


def state_for(text: str) -> State | None:
    """The agent state a screen shows, or None when it cannot tell."""
    return STATE_FOR.get(classify(text).screen)


# -- answering a dialog ------------------------------------------------------------------

# The option a yes and a no pick in each dialog, by the option's text.
_YES = {
    Screen.PERMISSION: ("Yes",),
    Screen.TRUST: ("Yes, I trust", "Yes"),
    Screen.API_KEY: ("Yes",),
    Screen.BYPASS_WARNING: ("Yes, I accept", "Yes"),
}
_NO = {
    Screen.PERMISSION: ("No",),
    Screen.TRUST: ("No",),
    Screen.API_KEY: ("No",),
    Screen.BYPASS_WARNING: ("No",),
}


def answer_key(reading: Reading, yes: bool) -> str | None:
    """The key that answers the dialog on screen with yes or no (a digit).

    ``Yes`` means the plain yes (never "Yes, and don't ask again"). None when
    the screen shows no dialog that can be answered this way.
    """
    labels = (_YES if yes else _NO).get(reading.screen)
    if not labels:
        return None
    if reading.screen == Screen.PERMISSION and yes:
        n = next((k for k, v in sorted(reading.options.items()) if v == "Yes"), None)
    else:
        n = reading.option(*labels)
    return str(n) if n is not None else None


# -- cmux approve / cmux deny -------------------------------------------------------------

DRAW_GRACE = 3.0  # seconds a waiting agent's question may take to show
# Seconds a dialog may stay exactly as it was after its key before the key is
# pressed once more. The Codex TUI reads a key that comes within milliseconds
# of its approval prompt's first frame and does nothing with it (strace: the
# ``y`` read 13 ms after the prompt was drawn, the prompt unchanged after it);
# a key that took changes the screen at its next frame, well inside this.
PRESS_AGAIN_AFTER = 1.0


def press_again(presses: int, unchanged_for: float, state_moved: bool) -> bool:
    """Whether the answer key goes in once more: only after one press, only
    when the dialog has shown exactly the same for :data:`PRESS_AGAIN_AFTER`
    seconds since it, and only when no hook has moved the agent's state since
    (a hook after the key means the key took). Never a third press."""
    return presses == 1 and not state_moved and unchanged_for >= PRESS_AGAIN_AFTER


@dataclass
class Answered:
    name: str
    screen: Screen
    key: str
    detail: str
    state: str


def answer(
    cfg: Config,
    name: str,
    *,
    yes: bool,
    tmux: Tmux | None = None,
    by: str = "human",
    timeout: float = 5.0,
) -> Answered:
    """Answer the dialog in ``name``'s pane with yes or no, through the keyboard.

    The screen is read first: with no dialog on it nothing is typed and the
    error says what the pane shows. After the key, the dialog must go away
    within ``timeout`` seconds; for a program known to drop a key at its
    dialog's first frame (``repress_dropped_answer``: Codex), a key it dropped
    (the dialog exactly as it was a moment later, see :func:`press_again`) is
    pressed once more, never a key that took. A yes to a permission question makes the
    agent busy (the tool runs); a no ends its turn (Claude Code then waits for
    input, without a Stop hook), so it becomes idle.
    """
    import time

    from cmux import events
    from cmux.agents import registry
    from cmux.agents.server import require_running
    from cmux.errors import AgentError

    agent = registry.get(cfg.data, name)
    verb = "approve" if yes else "deny"
    if not agent.live or not agent.pane_id:
        raise AgentError(
            f"{name} is {agent.state}: there is nothing to {verb}",
            "`cmux status` shows the agents that are waiting",
        )
    tmux = require_running(cfg, tmux)
    adapter = adapters.for_agent(agent)  # its own dialogs and keys
    reading = adapter.read_screen(tmux.capture(agent.pane_id))
    # A hook can say ``waiting`` before the question is drawn (the Gemini
    # CLI runs its Notification hook first): give the screen a moment.
    drawn_by = time.monotonic() + (DRAW_GRACE if agent.state == "waiting" else 0.0)
    while not reading.dialog and time.monotonic() < drawn_by:
        time.sleep(0.1)
        reading = adapter.read_screen(tmux.capture(agent.pane_id))
    key = adapter.answer_key(reading, yes) if reading.dialog else None
    if key is None:
        shows = adapter.describe(reading)
        if reading.screen == Screen.ONBOARDING:
            raise AgentError(
                f"{name} shows {shows}, which cmux cannot answer",
                f"answer it in the pane: `cmux attach`, then go to window {name}",
            )
        raise AgentError(
            f"{name} shows no permission dialog to {verb} (its pane shows: {shows})",
            "`cmux status` shows which agents are waiting; `cmux attach` to look",
        )
    # When the state last changed before the key: after a yes, a hook that
    # reports the next question meanwhile is newer than this answer. A no is
    # final (no hook follows it: the turn ends), whatever a look at the screen
    # said in between.
    since = registry.get(cfg.data, name).since
    tmux.send_keys(agent.pane_id, key)
    repress = capabilities.for_agent(agent).repress_dropped_answer  # Codex only
    presses, pressed_at = 1, time.monotonic()
    deadline = pressed_at + timeout
    while True:
        after = adapter.read_screen(tmux.capture(agent.pane_id))
        if (after.screen, after.options, after.detail) != (
            reading.screen,
            reading.options,
            reading.detail,
        ):
            break
        if time.monotonic() > deadline:
            raise AgentError(
                f"{name}: the dialog is still on screen after pressing {key}"
                + (" twice" if presses > 1 else ""),
                f"`cmux attach` and answer it in window {name}",
            )
        unchanged = time.monotonic() - pressed_at
        # The registry is read only once a second press is due.
        due = presses == 1 and unchanged >= PRESS_AGAIN_AFTER
        moved = due and registry.get(cfg.data, name).since != since
        if repress and press_again(presses, unchanged, moved):
            tmux.send_keys(agent.pane_id, key)
            presses += 1
        time.sleep(0.05)
    new_state = agent.state
    if reading.screen == Screen.PERMISSION:
        new_state = registry.transition(
            cfg.data,
            name,
            "busy" if yes else "idle",
            reason=f"permission {'granted' if yes else 'refused'} by {by}",
            strict=False,
            if_since=since if yes else None,
        ).state
    events.record(
        cfg.data,
        verb,
        name,
        dialog=reading.screen.value,
        key=key,
        by=by,
        detail=reading.detail or None,
        presses=presses if presses > 1 else None,
    )
    return Answered(name, reading.screen, key, reading.detail, new_state)


def interrupt(
    cfg: Config, name: str, *, reason: str, tmux: Tmux | None = None, timeout: float = 5.0
) -> bool:
    """Stop what ``name`` is doing, as a person would: Escape for Claude Code,
    C-c for other programs.

    Claude Code ends its turn on Escape and waits for input without a Stop
    hook, so a busy (or stuck) Claude agent is idle once its screen no longer
    shows the busy footer (within ``timeout``): its record says so, and mail
    is typed to it again. Returns whether it was seen to stop (always True
    for a C-c); an agent without a live pane is left alone (False).
    """
    import time

    from cmux import events
    from cmux.agents import registry
    from cmux.agents.server import require_running

    agent = registry.get(cfg.data, name)
    if not agent.live or not agent.pane_id:
        return False
    tmux = require_running(cfg, tmux)
    caps = capabilities.for_agent(agent)
    adapter = adapters.for_agent(agent)
    # A hooked program waits for input after the key without a hook to say
    # so: its screen is watched for the busy footer.
    hooked = caps.hooks
    tmux.send_keys(agent.pane_id, caps.interrupt_key)
    stopped = not hooked
    deadline = time.monotonic() + timeout
    while hooked:
        if adapter.read_screen(tmux.capture(agent.pane_id)).screen != Screen.BUSY:
            stopped = True
            break
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
    if hooked and stopped and agent.state in ("busy", "stuck"):
        registry.transition(cfg.data, name, "idle", reason=f"interrupted: {reason}", strict=False)
    events.record(cfg.data, "interrupt", name, reason=reason, stopped=stopped)
    return stopped


# -- the fallback: states from the screen, once a monitor tick -------------------------------


@dataclass
class Change:
    name: str
    screen: Screen
    old: str
    new: str
    told: str | None = None
    pressed: str | None = None


def needs_a_look(agent: Agent) -> bool:
    """Whose screen is worth a capture this tick.

    Claude agents while starting (dialogs come before any hook runs), busy
    (a permission dialog shows here seconds before its Notification hook)
    and waiting (answered in the pane itself, with no hook to say so);
    agents of other profiles (no hooks) whenever they are live.
    """
    caps = capabilities.for_agent(agent)
    if not agent.live or not agent.pane_id or not caps.screen_read:
        return False
    if caps.hooks:
        return agent.state in ("starting", "busy", "waiting")
    return agent.state not in ("done", "blocked")


def observe(
    cfg: Config, tmux: Tmux, agent: Agent, text: str, *, trust: bool = False
) -> Change | None:
    """Bring ``agent``'s state in line with its screen ``text``; None if unchanged.

    A dialog makes it ``waiting`` and its parent (the person, for the
    supervisor) is told how to answer, once. With ``trust`` (``[claude]
    trust = true``) the folder trust dialog is answered yes instead. A
    hook-less agent's idle and busy come from the screen too; a hooked
    agent's only when it was waiting and the dialog went away, or when it is
    starting and its program's start hook waits for a prompt it was not given
    (``Adapter.idle_ends_start``: Codex).
    """
    from cmux import events
    from cmux.agents import hookstate, registry

    adapter = adapters.for_agent(agent)
    reading = adapter.read_screen(text)
    hooked = capabilities.for_agent(agent).hooks
    if reading.screen == Screen.TRUST and trust and hooked:
        key = adapter.answer_key(reading, True)
        if key and agent.pane_id:
            tmux.send_keys(agent.pane_id, key)
            events.record(cfg.data, "approve", agent.name, dialog="trust", key=key, by="cmux")
            return Change(agent.name, reading.screen, agent.state, agent.state, pressed=key)
    if reading.dialog:
        if agent.state == "waiting":
            return None
        if hooked and reading.screen == Screen.PERMISSION and adapter.hooks_announce_questions:
            # Its Notification hook comes before the question is drawn: the
            # hook said waiting; a question still drawn after the answer
            # (or after cmux approve) must not say it again.
            return None
        what = adapter.describe(reading)
        reason = f"shows {what}" + (f": {reading.detail}" if reading.detail else "")
        moved = registry.transition(cfg.data, agent.name, "waiting", reason=reason, strict=False)
        if moved.state != "waiting":
            return None
        told = None
        try:
            question = (
                f"is waiting for permission: {reading.detail or what}"
                if reading.screen == Screen.PERMISSION
                else f"shows {what} and cannot go on until it is answered"
            )
            told = hookstate.tell_waiting(cfg.data, agent.name, question, cfg)
        except Exception:  # telling is best effort; the state is what matters
            pass
        return Change(agent.name, reading.screen, agent.state, "waiting", told=told)
    new = STATE_FOR.get(reading.screen)
    if new is None or new == agent.state:
        return None
    if agent.state == "stuck" and new == "busy":
        return None  # still busy: only a change on its screen ends stuck (the watchdog)
    # Hooks tell busy and idle exactly; but some programs' start hook waits
    # for a first prompt that was not given.
    started = agent.state == "starting" and new == "idle" and adapter.idle_ends_start(agent)
    if hooked and agent.state != "waiting" and not started:
        return None
    if agent.state in ("done", "blocked"):
        return None
    # Only from the state this look began with: `cmux deny` may have said
    # idle meanwhile, and a passing frame must not undo it.
    moved = registry.transition(
        cfg.data,
        agent.name,
        new,
        reason=f"screen shows {reading.screen.value}",
        strict=False,
        only_from=(agent.state,),
    )
    if moved.state == agent.state:
        return None
    return Change(agent.name, reading.screen, agent.state, moved.state)


def watch(cfg: Config, tmux: Tmux, agents: list[Agent] | None = None) -> list[Change]:
    """One look at every screen that needs one (see ``needs_a_look``); for the
    monitor's tick. Costs nothing when no agent needs a look."""
    from cmux.agents import registry
    from cmux.errors import TmuxError

    pool = agents if agents is not None else registry.list_agents(cfg.data)
    todo = [a for a in pool if needs_a_look(a)]
    if not todo:
        return []
    trust = bool(cfg.section("claude").get("trust", False))
    changes = []
    for agent in todo:
        assert agent.pane_id
        try:
            text = tmux.capture(agent.pane_id)
        except TmuxError:
            continue
        change = observe(cfg, tmux, agent, text, trust=trust)
        if change:
            changes.append(change)
    return changes
