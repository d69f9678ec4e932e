"""Text that comes from outside: standard input, a file, a command-line argument.

Every reader of such text goes through here, so bytes that are not UTF-8 are
always refused the same way: a UsageError that says where the first bad byte
is, before anything is stored. Text is taken exactly as sent (bytes decoded,
no newline translation).

Light on imports: tools/mailbox and tools/journal use it on every call.
"""

from __future__ import annotations

import sys

from cmux.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path


def where_bad(data: bytes, exc: UnicodeDecodeError) -> str:
    """'byte 12 (line 2, column 3) is 0xff': where decoding failed."""
    start = exc.start
    line = data.count(b"\n", 0, start) + 1
    column = start - (data.rfind(b"\n", 0, start) + 1) + 1
    return f"byte {start} (line {line}, column {column}) is {data[start]:#04x}"


def decode(data: bytes, what: str) -> str:
    """``data`` as UTF-8 text, or a UsageError naming ``what`` and the byte."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(
            f"{what} is not valid UTF-8: {where_bad(data, exc)}; nothing was stored",
            "send text in UTF-8 (convert it with `iconv -t UTF-8`)",
        ) from None


def stdin_text(what: str = "standard input") -> str:
    """All of standard input as text (see :func:`decode`)."""
    return decode(sys.stdin.buffer.read(), what)


def file_text(path: str | Path, what: str) -> str:
    """A file's content as text; a UsageError if it cannot be read or decoded."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.strerror}") from None
    return decode(data, f"{what} {path}")


def arg_text(value: str, what: str) -> str:
    """A command-line argument: Python keeps bytes that were not UTF-8 as lone
    surrogates; refuse them as :func:`decode` refuses bad bytes."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        try:
            data = value.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            raise UsageError(
                f"{what} is not valid text: character {exc.start} is a lone surrogate"
            ) from None
        return decode(data, what)
    return value


def text_or_stdin(value: str, what: str) -> str:
    """``-`` reads standard input; anything else is the text itself."""
    return stdin_text(what) if value == "-" else arg_text(value, what)
