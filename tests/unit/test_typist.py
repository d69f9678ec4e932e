"""The typist's check that Enter was taken, against a pane that drops the first Enter."""

from __future__ import annotations

import time
from typing import Any, cast

from cmux.delivery.typist import type_into
from cmux.tmux import Tmux


class ClaudePane:
    """A Claude Code prompt: a paste shows as a placeholder; the first Enter is lost."""

    def __init__(self) -> None:
        self.line = "❯ "
        self.enters = 0

    def paste(self, pane_id: str, text: str, *, buffer: str, enter: bool = False) -> None:
        self.line = f"❯ [Pasted text #1 +{text.count(chr(10))} lines] "

    def send_literal(self, pane_id: str, text: str, *, enter: bool = False) -> None:
        self.line = f"❯ {text}"

    def send_keys(self, pane_id: str, *keys: str) -> None:
        self.enters += 1
        if self.enters > 1:  # the second Enter submits
            self.line = "❯ "

    def cursor_line(self, pane_id: str) -> str:
        return self.line


def typed(pane: Any, text: str) -> Any:
    return type_into(cast(Tmux, pane), "%1", text, buffer="b", settle=0.01)


def test_a_paste_whose_enter_was_lost_is_entered_again() -> None:
    pane = ClaudePane()
    result = typed(pane, "[cmux mail x from human kind=message] one\nRUN: two\nRUN: three")
    assert result.via == "paste" and result.enter_retries == 1
    assert pane.line == "❯ "


def test_typed_keys_whose_enter_was_lost_are_entered_again() -> None:
    pane = ClaudePane()
    result = typed(pane, "[cmux mail x from human kind=message] hello")
    assert result.via == "keys" and result.enter_retries == 1
    assert pane.line == "❯ "


class SlowGeminiPane:
    """A Gemini CLI that drew the paste, then read nothing for ``stall``
    seconds (a loaded machine): the Enters sent meanwhile come in one read,
    and each submits the text its last drawing still holds."""

    def __init__(self, stall: float, ignore_first: bool = False) -> None:
        self.box = ""  # the text in its input box, as drawn
        self.pending = 0  # Enters sent, not read yet
        self.sent: list[str] = []  # the prompts it submitted
        self.until = time.monotonic() + stall
        self.ignore_first = ignore_first  # an Enter read with the paste is ignored
        self.drawn = not ignore_first

    def paste(self, pane_id: str, text: str, *, buffer: str, enter: bool = False) -> None:
        self.box = text

    def send_keys(self, pane_id: str, *keys: str) -> None:
        self.pending += 1

    def _read(self) -> None:
        if not self.pending or time.monotonic() < self.until:
            return
        if not self.drawn:  # the paste and its Enter in one read: text drawn, Enter ignored
            self.drawn, self.pending = True, 0
            return
        self.sent += [self.box] * self.pending if self.box else []
        self.box, self.pending = "", 0

    def screen(self) -> str:
        self._read()
        shown = self.box if self.drawn else ""
        return "\n".join([*self.sent, "─" * 10, f"> {shown}"])

    def capture(self, pane_id: str) -> str:
        return self.screen()

    def cursor_line(self, pane_id: str) -> str:
        return self.screen().rsplit("\n", 1)[-1]

    def probe(self, tail: str) -> str:
        box = self.screen().rsplit("─" * 10, 1)[-1]
        return "box" if tail in box else ("sent" if self.sent else "unknown")


MAIL = "[cmux mail x from human kind=message]\nRUN: mailbox send supervisor hi"


def gemini_typed(pane: SlowGeminiPane, *, after_redraw: bool) -> Any:
    return type_into(
        cast(Tmux, pane),
        "%1",
        MAIL,
        buffer="b",
        settle=0.01,
        probe=pane.probe,
        after_redraw=after_redraw,
    )


def test_a_program_slow_to_read_its_enter_gets_no_second_one_and_submits_once() -> None:
    pane = SlowGeminiPane(stall=1.0)
    result = gemini_typed(pane, after_redraw=True)
    assert pane.sent == [MAIL] and result.enter_retries == 0
    # Without waiting for a redraw, the Enters pressed again reach it with the
    # first one: the mail is submitted more than once (the failure seen).
    pane = SlowGeminiPane(stall=1.0)
    gemini_typed(pane, after_redraw=False)
    assert len(pane.sent) > 1


def test_an_enter_read_and_ignored_is_pressed_again_after_the_redraw() -> None:
    pane = SlowGeminiPane(stall=0.2, ignore_first=True)
    result = gemini_typed(pane, after_redraw=True)
    assert pane.sent == [MAIL] and result.enter_retries == 1
