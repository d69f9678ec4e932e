"""What a Codex CLI pane shows, read from a captured screen (the Codex adapter's
screen: cmux/agents/screen.py is Claude Code's).

Checked against the real CLI 0.171.0 in inline mode (``--no-alt-screen``,
docs/AGENTS.md "Approval prompt" and "Screen"): the composer is a ``›`` line at
the bottom with a status line below it; while a turn runs a ``• Working (Ns •
esc to interrupt)`` line sits above the composer; an approval prompt replaces
the composer:

    Would you like to run the following command?
    ...
    › 1. Yes, proceed (y)
      2. Yes, and don't ask again for commands that start with `...` (p)
      3. No, and tell Codex what to do differently (esc)
      Press enter to confirm or esc to cancel

``y`` approves it, Esc denies it (and ends the turn without a Stop hook).
Only the bottom of the screen counts, and a question counts only with its
options below it, so a model that writes the question is not a dialog.
"""

from __future__ import annotations

import re

from cmux.agents.screen import Reading, Screen

BOTTOM_LINES = 24
# Screens that wait for an answer (mail is held while one is up).
DIALOGS = frozenset({Screen.PERMISSION, Screen.TRUST, Screen.ONBOARDING})
DIALOG_VALUES = frozenset(d.value for d in DIALOGS)

_QUESTION = re.compile(
    r"Would you like to (?:run the following command|make the following edits|"
    r"grant|allow|apply)\b|Allow Codex to\b"
)
_OPTION = re.compile(r"^\s*(?:›\s*)?(\d)\.\s+(.+?)\s*$")
_CONFIRM = re.compile(r"Press enter to confirm or esc to cancel")
# [guess] the folder-trust question (not seen: cmux trusts the project in config.toml).
_TRUST = re.compile(
    r"Do you trust the contents of this directory|allow Codex to work in this folder"
)
# Hooks that are not trusted (never with --dangerously-bypass-hook-trust).
_HOOK_REVIEW = re.compile(r"Hooks need review")
_BUSY = re.compile(r"esc to interrupt", re.IGNORECASE)
_COMPOSER = re.compile(r"^›(?:\s|$)")
# Below the composer: the status line (`<model> <mode> · <cwd> · <thread title>`,
# the title being the first prompt) and the key hints; never typed text.
_STATUS = re.compile(r"^\s+\S+(?: \S+)? · .* · |for shortcuts|f2 to view")
_EXITED = re.compile(r"^\[cmux\] \S+ exited with code (-?\d+)\s*$")

# The keys: a plain yes (never "don't ask again"), and Esc for no.
YES_KEY = "y"
NO_KEY = "Escape"


def _lines(text: str) -> list[str]:
    lines = [ln.rstrip() for ln in text.replace("\r", "").split("\n")]
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


def _options(lines: list[str]) -> dict[int, str]:
    out: dict[int, str] = {}
    for ln in lines:
        m = _OPTION.match(ln)
        if m:
            out[int(m.group(1))] = m.group(2)
    return out


def _last(pattern: re.Pattern[str], lines: list[str]) -> int | None:
    for i in range(len(lines) - 1, -1, -1):
        if pattern.search(lines[i]):
            return i
    return None


def _composer(lines: list[str]) -> int | None:
    """The index of the composer line (the last ``›`` line that is not a
    numbered option), or None."""
    for i in range(len(lines) - 1, -1, -1):
        if _COMPOSER.match(lines[i]) and not _OPTION.match(lines[i]):
            return i
    return None


def classify(text: str) -> Reading:
    """Read a captured Codex screen (``capture-pane -p``, no escapes)."""
    lines = _lines(text)
    if not lines:
        return Reading(Screen.UNKNOWN)
    if _EXITED.match(lines[-1].strip()):
        return Reading(Screen.EXITED, detail=lines[-1].strip())
    bottom = lines[-BOTTOM_LINES:]
    q = _last(_QUESTION, bottom)
    if q is not None:
        tail = bottom[q:]
        options = _options(tail)
        if 1 in options and (any(_CONFIRM.search(ln) for ln in tail) or len(options) > 1):
            return Reading(Screen.PERMISSION, options, detail=_detail(tail))
    if _HOOK_REVIEW.search("\n".join(bottom)):
        return Reading(Screen.ONBOARDING, _options(bottom), detail="Codex asks to review hooks")
    t = _last(_TRUST, bottom)
    if t is not None and 1 in _options(bottom[t:]):
        return Reading(Screen.TRUST, _options(bottom[t:]))
    c = _composer(bottom)
    # The `• Working (Ns • esc to interrupt)` line sits just above the composer.
    above = len(bottom) if c is None else c
    if any(_BUSY.search(ln) for ln in bottom[max(0, above - 6) :]):
        return Reading(Screen.BUSY)
    if c is not None:
        return Reading(Screen.IDLE)
    return Reading(Screen.UNKNOWN)


def _detail(tail: list[str]) -> str:
    """What the approval prompt is about: its command (``$ ...``) or reason."""
    body = [ln.strip() for ln in tail if ln.strip()]
    command = next((ln for ln in body if ln.startswith("$ ")), "")
    reason = next((ln for ln in body if ln.startswith("Reason:")), "")
    return " | ".join(p for p in (body[0], command, reason) if p)


def typed_where(text: str, needle: str) -> str:
    """Where typed text ending in ``needle`` is: ``box`` (still in the
    composer), ``sent`` (above it, in the conversation, and not in it) or
    ``unknown`` (no composer: a dialog took its place, or not drawn yet).
    The composer is the last ``›`` line and the lines of a multi-line text
    below it (not the status line, which shows the first prompt as title)."""
    lines = _lines(text)
    if not needle:
        return "unknown"
    bottom = lines[-BOTTOM_LINES:]
    c = _composer(bottom)
    if c is None or classify(text).screen == Screen.PERMISSION:
        return "unknown"
    if any(needle in ln for ln in bottom[c:] if not _STATUS.search(ln)):
        return "box"
    return (
        "sent" if any(needle in ln for ln in lines[: len(lines) - len(bottom) + c]) else "unknown"
    )


DESCRIPTION = {
    Screen.PERMISSION: "an approval prompt",
    Screen.TRUST: "Codex's folder trust question",
    Screen.ONBOARDING: "Codex's hook review",
}


def describe(reading: Reading) -> str:
    return DESCRIPTION.get(reading.screen) or f"its {reading.screen.value} screen"


def answer_key(reading: Reading, yes: bool) -> str | None:
    """The key that answers the dialog on screen: ``y`` / Esc for an approval
    prompt; the digit of the Yes / No option of the trust question."""
    if reading.screen == Screen.PERMISSION:
        return YES_KEY if yes else NO_KEY
    if reading.screen == Screen.TRUST:
        n = reading.option("Yes") if yes else reading.option("No")
        return str(n) if n is not None else None
    return None
