"""The typist's check that Enter was taken, against a pane that drops the first Enter."""

from __future__ import annotations

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
