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


def type_into(tmux: Tmux, pane_id: str, text: str, *, buffer: str, settle: float = 0.0) -> Typed:
    """Type ``text`` into the pane, press Enter, and verify it was submitted.

    With no settle time the text and Enter go in one tmux call. Verification:
    if the cursor's line still ends with what we typed, Enter was not taken;
    press it again (at most twice).
    """
    multi = "\n" in text or "\t" in text or len(text) > TYPE_LIMIT
    via = "paste" if multi else "keys"
    together = settle <= 0
    if multi:
        tmux.paste(pane_id, text, buffer=buffer, enter=together)
    else:
        tmux.send_literal(pane_id, text, enter=together)
    if not together:
        time.sleep(settle)  # a deliberate pause between text and Enter, not a wait
        tmux.send_keys(pane_id, "Enter")
    tail = text.rstrip().rsplit("\n", 1)[-1][-24:].strip()
    retries = 0
    if not tail:
        return Typed(via=via, enter_retries=0)

    def unsent() -> bool:
        line = tmux.cursor_line(pane_id).rstrip()
        return line.endswith(tail) or (multi and PASTE_PLACEHOLDER.search(line) is not None)

    window = max(settle * 3, 0.05)
    deadline = time.monotonic() + window
    while unsent():
        if time.monotonic() < deadline:
            time.sleep(0.01)
            continue
        if retries == 2:
            break
        retries += 1
        tmux.send_keys(pane_id, "Enter")
        deadline = time.monotonic() + window
    return Typed(via=via, enter_retries=retries)
