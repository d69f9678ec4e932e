"""Site-packages on demand, for processes started with ``python -S``.

tools/mailbox starts Python without the site module (it costs every agent's
call about 6 ms); the few paths that need a library installed in
site-packages (gitpython for the merge queue's auto-queue at ``mailbox
done``, tomli on Python 3.10) call :func:`ensure` first. Elsewhere it does
nothing.
"""

from __future__ import annotations

import sys


def ensure() -> None:
    """Add site-packages to ``sys.path`` if this process started without them."""
    if sys.flags.no_site and "site" not in sys.modules:
        import site

        site.main()
