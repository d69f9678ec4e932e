"""Turning a message into what an agent sees (typed by the router, or handed
over by the Stop hook: the same text either way).

Control characters and escape sequences never reach a pane (the stored body
is untouched); a single short line stays on the header's line; a body too
large to type is written to a file and referenced (typing itself is
cmux/delivery/typist.py). Every delivery starts with one header line an
agent can read:

    [cmux mail <id> from <sender> kind=<kind>]
"""

from __future__ import annotations

import os
import re

from cmux.fsutil import atomic_write
from cmux.mail import maildir
from cmux.mail.message import Message, check_paths
from cmux.paths import DataRoot
from cmux.text import sanitize

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


def large_body_file(data: DataRoot, msg: Message) -> str:
    """Where a body too large to type is written. The path is built from the
    message's ``to`` and ``id`` only after both are checked against the schema,
    so no field can point it outside the recipient's mailbox."""
    check_paths(msg)
    return maildir.large_file(data, msg.to, msg.id)


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
        if not os.path.exists(path):
            atomic_write(path, msg.body)
        size = len(msg.body.encode())
        return f"{head} {size} bytes, too long to type here: read it with `cat {path}`"
    if "\n" not in body and len(head) + 1 + len(body) <= TYPE_LIMIT:
        return f"{head} {body}"
    return f"{head}\n{body}"
