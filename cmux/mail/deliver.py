"""Turning a message into what an agent sees, and typing it into a pane.

The typing rules: control characters and escape sequences never
reach a pane; a single short line is typed with ``send-keys -l``; long or
multi-line text goes through a uniquely named paste buffer; a body too large
to type is written to a file and referenced. Enter is pressed separately and
verified. Every delivery starts with one header line an agent can read:

    [cmux mail <id> from <sender> kind=<kind>]
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

from cmux.fsutil import atomic_write
from cmux.mail.message import Message, check_paths
from cmux.paths import DataRoot
from cmux.text import sanitize
from cmux.tmux import Tmux

TYPE_LIMIT = 400  # longer than this is pasted rather than typed
INLINE_LIMIT = 32 * 1024  # larger than this is delivered by reference to a file


_NOT_IN_HEADER = re.compile(r"[\s\[\]]")


def token(text: str, limit: int = 128) -> str:
    """One header word: sanitized, and no whitespace or brackets, so that no
    field can end the header early or start a second line. (Loading already
    refuses such ids and names; this holds even if a message skips that.)"""
    return _NOT_IN_HEADER.sub("_", sanitize(text))[:limit] or "_"


def header(msg: Message) -> str:
    """The one line that heads a delivery; every field in it is sanitized."""
    subject = f" subject={sanitize(msg.subject)[:80]!r}" if msg.subject else ""
    who = token(msg.sender, 32)
    return f"[cmux mail {token(msg.id)} from {who} kind={token(msg.kind, 16)}{subject}]"


def large_body_file(data: DataRoot, msg: Message) -> Path:
    """Where a body too large to type is written. The path is built from the
    message's ``to`` and ``id`` only after both are checked against the schema,
    so no field can point it outside the recipient's mailbox."""
    check_paths(msg)
    return data.mailbox(msg.to) / "large" / f"{msg.id}.txt"


# Profiles whose pane runs a shell or any program, with no model reading it:
# what is typed there is executed.
SHELL_PROFILES = ("shell", "command")


def render(msg: Message, data: DataRoot, profile: str | None = None) -> str:
    """The text an agent with ``profile`` receives for ``msg`` (sanitized).

    Invariant: into a shell-type agent, cmux's own mail (notices, alerts)
    arrives with every line a shell comment (``# ``), so no line of it is a
    command the shell runs. Mail from a person or an agent is typed as it is
    (a shell agent executes its mail: README, mailbox/README.md).
    """
    text = _render(msg, data)
    if profile in SHELL_PROFILES and msg.sender == "cmux":
        return "\n".join(f"# {line}" for line in text.split("\n"))
    return text


def _render(msg: Message, data: DataRoot) -> str:
    body = sanitize(msg.body).strip("\n")
    head = header(msg)
    if len(body.encode()) > INLINE_LIMIT:
        path = large_body_file(data, msg)
        if not path.exists():
            atomic_write(path, msg.body)
        size = len(msg.body.encode())
        return f"{head} {size} bytes, too long to type here: read it with `cat {path}`"
    if "\n" not in body and len(head) + 1 + len(body) <= TYPE_LIMIT:
        return f"{head} {body}"
    return f"{head}\n{body}"


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
    window = max(settle * 3, 0.05)
    deadline = time.monotonic() + window
    while tmux.cursor_line(pane_id).rstrip().endswith(tail):
        if time.monotonic() < deadline:
            time.sleep(0.01)
            continue
        if retries == 2:
            break
        retries += 1
        tmux.send_keys(pane_id, "Enter")
        deadline = time.monotonic() + window
    return Typed(via=via, enter_retries=retries)
