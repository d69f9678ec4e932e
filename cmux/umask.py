"""The umask cmux runs under, and the person's, for what cmux starts.

The data root is private to its owner: every cmux process (the cmux command,
the Claude Code hook, tools/*, the daemons, all started through one of these)
calls ``private_umask`` first, so whatever it creates there (the search
index, the daemons' logs, lock files) is the owner's alone. What cmux starts
to act on the project (the tmux server and so the agents, git, health checks)
gets ``user_umask`` back, so project files keep their usual modes.

Only ``os``: the hook's quick path imports this and little else.
"""

from __future__ import annotations

import os

_ENV = "CMUX_USER_UMASK"  # the umask of the person, kept for children


def private_umask() -> None:
    """Make what this process creates its owner's alone (umask 077).

    The person's own umask is kept in the environment for ``user_umask``,
    once: a cmux started by cmux inherits the first one.
    """
    old = os.umask(0o077)
    os.environ.setdefault(_ENV, f"{old:03o}")


def user_umask() -> int:
    """The person's umask, for a child that works on the project (-1, which
    subprocess reads as "leave it", when cmux never changed it)."""
    try:
        return int(os.environ.get(_ENV, ""), 8)
    except ValueError:
        return -1
