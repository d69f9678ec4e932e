"""Stored text made safe for a pane or a person's terminal.

Mail bodies, journal files, tasks, event fields and check output are written
by agents, by programs and by hand; any of them may hold escape sequences
(OSC 52 writes the clipboard, OSC 0 the window title, CSI moves the cursor and
rewrites what is on the screen) or control characters. Everything cmux shows
of such text, typed into a pane or printed to a terminal, goes through
``sanitize`` first: no escape sequences, no control characters but newline
and tab. JSON output is exact instead (``json_text``): control characters
become ``\\u`` escapes there, so the value a program reads back is unchanged.

Only ``re`` is imported: this runs on the send path and in every tool call.
"""

from __future__ import annotations

import re

# CSI, OSC (ended by BEL or ST), DCS/SOS/PM/APC strings, and two-byte escapes.
_ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"
    r"|\x1b[PX^_][^\x1b]*(?:\x1b\\)?"
    r"|\x1b[@-Z\\-_]"
    r"|\x1b"
)
# C0 but tab and newline, DEL, and C1 (0x9b is CSI, 0x9d OSC, on many terminals).
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# What json.dumps(ensure_ascii=False) leaves raw: DEL and C1.
_JSON_RAW = re.compile(r"[\x7f-\x9f]")


def sanitize(text: str) -> str:
    """What may reach a pane or a terminal: no escape sequences, no control
    characters but newline and tab; CR and CRLF become newline. Idempotent."""
    text = _ESCAPES.sub("", text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _CONTROLS.sub("", text)


def one_line(text: str) -> str:
    """``sanitize``, with each line break and tab a space: for a table cell
    or a line of a listing, where a newline would forge a new row."""
    return sanitize(text).replace("\n", " ").replace("\t", " ")


def json_text(text: str) -> str:
    """A JSON document (from json.dumps) safe to print: the DEL and C1
    characters it left raw become ``\\u00XX`` escapes, which decode to the
    same value. (Outside strings JSON is ASCII, so only strings change.)"""
    return _JSON_RAW.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
