"""What each adapter can do, as plain flags: the table the lower layers ask.

In the base layer (it imports nothing of cmux): the mailbox's read receipts
(layer 3), the router's policy and the monitor's screen reading ask it about
an agent's adapter instead of comparing profile names.

An agent's adapter is the one its record names (``Agent.adapter``, set at
spawn); a record from before adapters is placed by its profile name
(``adapter_for_profile``).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Protocol

    class _HasProfile(Protocol):  # what ``for_agent`` reads of a registry record
        @property
        def profile(self) -> str: ...
        @property
        def adapter(self) -> str: ...


class Capabilities:
    """Plain flags (no dataclass: cmux.config imports this on every start)."""

    __slots__ = (
        "hooks",
        "interrupt_key",
        "reenter_after_redraw",
        "reports_start",
        "repress_dropped_answer",
        "screen_checked",
        "screen_read",
        "settle",
    )

    def __init__(
        self,
        *,
        hooks: bool = False,
        reports_start: bool = False,
        screen_checked: bool = False,
        screen_read: bool = True,
        settle: float = 0.0,
        interrupt_key: str = "C-c",
        reenter_after_redraw: bool = False,
        repress_dropped_answer: bool = False,
    ) -> None:
        # Its hooks report busy/idle/waiting exactly, prove a message was read
        # (read receipts) and take mail at turn end (mail to a busy agent waits).
        self.hooks = hooks
        # It reports its own start (hooks, or the demo's own report): its first
        # state is ``starting``, else ``idle`` as soon as it runs.
        self.reports_start = reports_start
        # Its screen is read for a dialog before mail is typed.
        self.screen_checked = screen_checked
        # The monitor reads its screen for states and dialogs (the fallback).
        self.screen_read = screen_read
        # Seconds between typed text and its Enter.
        self.settle = settle
        # The key that stops what it is doing (`cmux interrupt`, the watchdog).
        self.interrupt_key = interrupt_key
        # Enter is pressed again (the text still in the box) only once its
        # screen changed since the last Enter: a program slow to read its
        # input takes two Enters read together as two submissions of the text.
        self.reenter_after_redraw = reenter_after_redraw
        # `cmux approve`/`deny` press the answer key once more when the dialog
        # stays exactly as it was (screen.press_again): only for a program
        # known to drop a key at its dialog's first frame, since a key that
        # took but was slow to redraw would otherwise go in twice.
        self.repress_dropped_answer = repress_dropped_answer

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.__slots__)
        return f"Capabilities({shown})"


CLAUDE = "claude"
CODEX = "codex"
GEMINI = "gemini"
DEMO = "demo"
SHELL = "shell"
COMMAND = "command"  # a one-off `--command`
PROGRAM = "program"  # a [profiles.X] program cmux knows nothing of

CAPABILITIES: dict[str, Capabilities] = {
    CLAUDE: Capabilities(
        hooks=True, reports_start=True, screen_checked=True, settle=0.05, interrupt_key="Escape"
    ),
    # The Gemini CLI: its input box takes a burst of keys with an Enter in it
    # as text (docs/AGENTS.md), so Enter goes after a pause; Escape cancels.
    # Under load (a CLI not reading for seconds), a second Enter read in the
    # same burst as the first submitted the mail twice: Enter again only
    # after it drew something.
    GEMINI: Capabilities(
        hooks=True,
        reports_start=True,
        screen_checked=True,
        settle=0.3,
        interrupt_key="Escape",
        reenter_after_redraw=True,
    ),
    # Codex takes keys less than 8 ms apart for a paste and an Enter within
    # 120 ms of one for a new line (docs/AGENTS.md): its Enter waits longer.
    # It reads and drops a key that comes within a frame of its approval
    # prompt's first draw (strace, 0.171.0): the answer is pressed again.
    CODEX: Capabilities(
        hooks=True,
        reports_start=True,
        screen_checked=True,
        settle=0.3,
        interrupt_key="Escape",
        repress_dropped_answer=True,
    ),
    DEMO: Capabilities(reports_start=True, screen_read=False),
    SHELL: Capabilities(screen_read=False),
    COMMAND: Capabilities(screen_read=False),
    PROGRAM: Capabilities(),
}
NAMES = tuple(CAPABILITIES)


def adapter_for_profile(profile: str) -> str:
    """The adapter of a profile name when nothing else says: a built-in
    profile is its own adapter, any other a plain program."""
    return profile if profile in CAPABILITIES else PROGRAM


def of(adapter: str) -> Capabilities:
    """The flags of ``adapter``; an unknown name (a record written by a newer
    cmux) is a plain program."""
    return CAPABILITIES.get(adapter) or CAPABILITIES[PROGRAM]


def adapter_of(agent: _HasProfile) -> str:
    return agent.adapter or adapter_for_profile(agent.profile)


def for_agent(agent: _HasProfile) -> Capabilities:
    """The flags of a registry record's adapter."""
    return of(adapter_of(agent))
