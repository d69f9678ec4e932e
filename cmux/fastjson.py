"""JSON for the send path, without importing the ``json`` package.

``import json`` costs a new process ~15 ms on a small machine, nearly all of
it ``re`` (json.decoder compiles its patterns at import) and what ``re``
pulls in (enum, functools, ...). What json.dumps and json.loads actually run
is the C accelerator ``_json``; this module calls it the way they do, so
``dumps(obj)`` is byte for byte ``json.dumps(obj, ensure_ascii=False)`` and
``loads(s)`` is ``json.loads(s)``. Anything the fast path does not handle
exactly as json would (an error, bytes in another encoding, a Python
without ``_json``) goes to ``json`` itself, so results and exceptions are
always json's.

Used where a new process reads or writes a little JSON and nothing else
needs ``re`` (tools/mailbox send: the message, its event line, the config
cache). Everything else uses ``json``.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

_c: Any
try:
    import _json as _c
except ImportError:  # pragma: no cover (a Python built without the accelerator)
    _c = None

_WHITESPACE = " \t\n\r"  # json.decoder.WHITESPACE


class _Fallback(Exception):
    """The fast path met something only ``json`` handles (or reports) right."""


def _no_default(o: object) -> Any:
    raise _Fallback


def dumps(obj: Any, *, default: Callable[[Any], Any] | None = None) -> str:
    """``json.dumps(obj, ensure_ascii=False, default=default)``."""
    if _c is not None:
        try:
            if isinstance(obj, str):
                return str(_c.encode_basestring(obj))
            # JSONEncoder(ensure_ascii=False, default=default).iterencode(obj,
            # _one_shot=True), as json.dumps builds it: markers for the check of
            # circular references, no indent, separators ": " and ", ", keys
            # unsorted, no keys skipped, NaN allowed.
            encode = _c.make_encoder(
                {},
                default or _no_default,
                _c.encode_basestring,
                None,
                ": ",
                ", ",
                False,
                False,
                True,
            )
            return "".join(encode(obj, 0))
        except (_Fallback, TypeError, ValueError, RecursionError):
            pass
    import json

    return json.dumps(obj, ensure_ascii=False, default=default)


class _Context:
    """What json.JSONDecoder() hands the C scanner (json.loads' defaults)."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int

    @staticmethod
    def parse_constant(name: str) -> float:
        return {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}[name]


_scanner: Any = None


def loads(s: str | bytes) -> Any:
    """``json.loads(s)``."""
    global _scanner
    if _c is not None:
        text: str | None = None
        if isinstance(s, str):
            text = s
        elif isinstance(s, (bytes, bytearray)) and s[:1] in (b"{", b"[") and s[1:2] != b"\0":
            # what json.detect_encoding calls UTF-8 (no BOM, no UTF-16/32 zero bytes)
            try:
                text = s.decode("utf-8", "surrogatepass")
            except UnicodeDecodeError:
                text = None
        if text is not None:
            if _scanner is None:
                _scanner = _c.make_scanner(_Context())
            start = len(text) - len(text.lstrip(_WHITESPACE))
            try:
                obj, end = _scanner(text, start)
            except (StopIteration, ValueError, RecursionError):
                pass
            else:
                if not text[end:].strip(_WHITESPACE):
                    return obj
    import json

    return json.loads(s)
