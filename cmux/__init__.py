"""cmux: a supervisor and disposable coding agents in tmux.

The package is split by domain (see docs/ARCHITECTURE.md):
``tmux`` is the only module that talks to tmux, ``agents`` holds the
registry and lifecycle, ``mail`` the mailbox and router, ``journal`` the
long-term memory, ``health`` the monitor and rollback. ``cli`` is thin.
"""

__version__ = "0.1.0"
