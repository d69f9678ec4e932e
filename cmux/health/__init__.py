"""Health monitor, rollback and watchdogs: the safety net that never destroys work.

- ``config``   reads and validates ``[health]`` from cmux.toml.
- ``checks``   runs one check: a command with a timeout, or a URL that must answer 2xx.
- ``rollback`` the git work: last-good, rescue branches, stashes, the reset.
- ``monitor``  the pure decisions (when to restart, when to roll back, the
               budget) and the loop that acts on them (``cmux health --daemon``).
- ``watchdog`` the once-a-second look at the agents that the monitor window runs.

docs/HEALTH.md describes the behaviour for people.
"""
