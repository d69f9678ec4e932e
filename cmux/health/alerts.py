"""Telling people: the alert line, mail from cmux, and the health notifier.

The alert is one line in ``state/alert`` (:func:`alert_file` is the only
place that names it): `cmux status` and the monitor window show it, and
raising it also mails the human once. Whoever raises it starts the line with
their prefix (``health: ``, ``watchdog: ``), so each clears only its own;
``cmux health --clear-alert`` clears any. Every raise and clear is an event.

:class:`Notifier` is what the health monitor needs of the world to tell
people; :class:`CmuxNotifier` is a real project's (mailbox, alert file,
journal, event log); tests pass fakes.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Protocol

from cmux import events, journal
from cmux.config import Config
from cmux.errors import CmuxError, UnknownRecipient
from cmux.fsutil import atomic_write
from cmux.paths import HUMAN, DataRoot

log = logging.getLogger(__name__)

ALERT_PREFIX = "health: "  # the health monitor's alerts


def alert_file(data: DataRoot) -> Path:
    return data.state_dir / "alert"


def read_alert(data: DataRoot) -> str | None:
    """The alert file's text as it is, or None when no alert is up."""
    try:
        return alert_file(data).read_text()
    except FileNotFoundError:
        return None


def alert_active(data: DataRoot, prefix: str) -> bool:
    """Whether an alert raised by ``prefix``'s owner is up."""
    text = read_alert(data)
    return text is not None and text.startswith(prefix)


def raise_alert(cfg: Config, text: str) -> None:
    """The one-line alert `cmux status` and the monitor window show, and a
    message for the human (`cmux inbox`). The same line twice tells once."""
    line = " ".join(text.split())
    current = read_alert(cfg.data)
    if current is not None and current.strip() == line:
        return  # already up, already told
    atomic_write(alert_file(cfg.data), line + "\n")
    events.record(cfg.data, "alert", None, text=line)
    tell(cfg, HUMAN, "cmux needs you", text)


def clear_alert(data: DataRoot, prefix: str | None = None) -> bool:
    """Remove the alert (only one that starts with ``prefix``, if given)."""
    current = read_alert(data)
    if current is None:
        return False
    if prefix is not None and not current.startswith(prefix):
        return False
    alert_file(data).unlink(missing_ok=True)
    events.record(data, "alert-cleared", None, text=current.strip())
    return True


def tell(cfg: Config, to: str, subject: str, body: str) -> str | None:
    """Mail ``to`` from cmux, falling back to the human; returns who got it."""
    from cmux.mail import store

    for rcpt in dict.fromkeys((to, HUMAN)):
        try:
            store.send(cfg, to=rcpt, body=body, sender="cmux", kind="notice", subject=subject)
            return rcpt
        except UnknownRecipient:
            continue
        except CmuxError:
            log.exception("could not mail %s", rcpt)
            return None
    log.warning("nobody to tell: %s", subject)
    return None


class Notifier(Protocol):
    def tell(self, to: str, subject: str, body: str) -> None: ...
    def alert(self, text: str) -> None: ...
    def clear_alert(self) -> None: ...
    def journal(self, title: str, body: str, tags: list[str]) -> None: ...
    def event(self, name: str, **fields: Any) -> None: ...


class CmuxNotifier:
    """Mailbox, alert file, journal and event log of a real project. The
    health monitor's alerts carry ``ALERT_PREFIX``; it clears only those."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg

    def tell(self, to: str, subject: str, body: str) -> None:
        tell(self.cfg, to, subject, body)

    def alert(self, text: str) -> None:
        raise_alert(self.cfg, ALERT_PREFIX + text)

    def clear_alert(self) -> None:
        clear_alert(self.cfg.data, ALERT_PREFIX)

    def journal(self, title: str, body: str, tags: list[str]) -> None:
        journal.note(self.cfg.data, agent="cmux", title=title, body=body, tags=tags)

    def event(self, name: str, **fields: Any) -> None:
        events.record(self.cfg.data, name, None, **fields)
