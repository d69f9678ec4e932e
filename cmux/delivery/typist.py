"""Typing text into a pane: the keyboard half of a delivery.

The typing rules: a single short line is typed with ``send-keys -l``; long
or multi-line text goes through a uniquely named paste buffer, so newlines
do not submit; Enter is pressed separately where a settle time is set, and
verified. The text is already sanitized (cmux/mail/render.py): nothing here
adds to it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from cmux.mail.render import TYPE_LIMIT
from cmux.tmux import Tmux

# Claude Code shows a multi-line paste as this placeholder on its prompt line,
# not as the text: while it is there, Enter was not taken.
PASTE_PLACEHOLDER = re.compile(r"\[Pasted text #\d+(?: \+\d+ lines)?\]$")


@dataclass
class Typed:
    via: str  # keys | paste
    enter_retries: int


# Where the program shows an input box (Claude Code): how long to watch for the
# text to be seen as sent, and how often Enter is pressed again meanwhile while
# the text sits in the box (a program slow to read its input takes a burst of
# keys as a paste, Enter included, just after a resumed conversation loads).
PENDING_TOTAL = 6.0
PENDING_WINDOW = 0.5
PENDING_RETRIES = 8


def type_into(
    tmux: Tmux,
    pane_id: str,
    text: str,
    *,
    buffer: str,
    settle: float = 0.0,
    probe: Callable[[str], str] | None = None,
    after_redraw: bool = False,
) -> Typed:
    """Type ``text`` into the pane, press Enter, and verify it was submitted.

    With no settle time the text and Enter go in one tmux call. Verification:
    if the cursor's line still ends with what we typed, Enter was not taken;
    press it again (at most twice). ``probe(tail)``, where the program has an
    input box (Claude Code), says where the end of the text is on its screen
    (``screen.typed_where``): until it is seen ``sent`` (PENDING_TOTAL at
    most), Enter is pressed again whenever the text has sat in the box for
    PENDING_WINDOW: the Enter was read as a new line. Enter is never pressed
    when the text is not seen in the box (a dialog may have replaced it).

    ``after_redraw``: Enter is pressed again only when the pane's screen has
    changed since the last Enter (the program read it, and the text stayed);
    an unchanged screen is a program that has not read its input yet, and an
    Enter more would reach it together with the first: two submissions.
    """
    multi = "\n" in text or "\t" in text or len(text) > TYPE_LIMIT
    via = "paste" if multi else "keys"
    together = settle <= 0
    screen = _Screen(tmux, pane_id, after_redraw)
    if together:
        screen.mark()
    if multi:
        tmux.paste(pane_id, text, buffer=buffer, enter=together)
    else:
        tmux.send_literal(pane_id, text, enter=together)
    if not together:
        time.sleep(settle)  # a deliberate pause between text and Enter, not a wait
        screen.enter()
    tail = text.rstrip().rsplit("\n", 1)[-1][-24:].strip()
    retries = 0
    if not tail:
        return Typed(via=via, enter_retries=0)

    def unsent() -> bool:
        line = tmux.cursor_line(pane_id).rstrip()
        return line.endswith(tail) or (multi and PASTE_PLACEHOLDER.search(line) is not None)

    window = max(settle * 3, 0.05)
    deadline = time.monotonic() + window
    unread_until = time.monotonic() + PENDING_TOTAL
    while unsent():
        if time.monotonic() < deadline:
            time.sleep(0.01)
            continue
        if retries == 2:
            break
        if screen.unread():
            if time.monotonic() >= unread_until:
                break  # never read: an Enter more would only be read with it
            time.sleep(0.05)
            continue
        retries += 1
        screen.enter()
        deadline = time.monotonic() + window
    if probe is not None:
        retries += _until_sent(screen, tail, probe)
    return Typed(via=via, enter_retries=retries)


class _Screen:
    """The pane's screen as it was at the last Enter (when ``on``): whether
    the program has drawn anything since, i.e. read what was sent."""

    def __init__(self, tmux: Tmux, pane_id: str, on: bool) -> None:
        self.tmux, self.pane_id, self.on = tmux, pane_id, on
        self.last: str | None = None

    def mark(self) -> None:
        if self.on:
            self.last = self.tmux.capture(self.pane_id)

    def enter(self) -> None:
        self.mark()
        self.tmux.send_keys(self.pane_id, "Enter")

    def unread(self) -> bool:
        return self.on and self.tmux.capture(self.pane_id) == self.last


def _until_sent(screen: _Screen, tail: str, probe: Callable[[str], str]) -> int:
    """Watch until the text is seen sent; press Enter again while it sits in
    the box (and, with ``after_redraw``, the program has read the last one).
    Returns how many times Enter was pressed."""
    tries = 0
    now = time.monotonic()
    end, next_enter = now + PENDING_TOTAL, now + PENDING_WINDOW
    while now < end:
        where = probe(tail)
        if where == "sent":
            break
        if where == "box" and now >= next_enter and tries < PENDING_RETRIES:
            if not screen.unread():
                tries += 1
                screen.enter()
            next_enter = now + PENDING_WINDOW
        time.sleep(0.03)
        now = time.monotonic()
    return tries
