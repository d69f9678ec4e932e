"""The tools agents call (tools/mailbox, tools/journal, tools/workers).

They use argparse, not click or rich, to start quickly: an agent may call
them many times a minute. Identity comes from the environment cmux gives
every agent (CMUX_AGENT with its CMUX_AGENT_TOKEN, CMUX_HOME), checked by
cmux/identity.py; a person without it is `human`.

tools/mailbox starts Python with ``-S`` (no site-packages: what the tools
import is the standard library and cmux, found beside them), and nothing on
its send path imports ``typing``, ``re``, ``pathlib`` or ``json``: every
agent's call is a new process (docs/PERFORMANCE.md).
"""

from __future__ import annotations

import sys

from cmux.errors import CmuxError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


def identity(cfg: Any) -> str:
    """The caller's verified name (``human`` for a person); an agent name
    without its token raises IdentityError with what to do."""
    from cmux import identity as ident

    return ident.caller(cfg)


def run(fn: Callable[[], int | None], prog: str) -> None:
    """Call ``fn`` and turn cmux errors into a message and an exit code."""
    from cmux.umask import private_umask

    private_umask()
    try:
        rc = fn()
    except CmuxError as exc:
        sys.stderr.write(f"{prog}: error: {exc.message}\n")
        if exc.hint:
            sys.stderr.write(f"  hint: {exc.hint}\n")
        sys.exit(exc.exit_code)
    except BrokenPipeError:
        rc = 0
    except KeyboardInterrupt:
        rc = 130
    sys.exit(rc or 0)
