"""Health monitor, rollback and watchdogs: the safety net that never destroys work.

- ``config``   reads and validates ``[health]`` from cmux.toml.
- ``checks``   runs one check: a command with a timeout, or a URL that must answer 2xx.
- ``rollback`` the git work: last-good, rescue branches, stashes, the reset.
- ``state``    the monitor's memory, ``state/health.json``, edited under a lock.
- ``policy``   the pure decision after each round (wait, restart, roll back, hold,
               budget spent).
- ``alerts``   the alert line (``state/alert``), mail from cmux, the notifier.
- ``daemon``   the monitor that acts on the decisions (``cmux health --daemon``).
- ``report``   the words of a rollback for the supervisor, the journal, a person.
- ``view``     what `cmux health` shows and does by hand (``--now``, ``--clear-alert``).
- ``watchdog`` the once-a-second look at the agents that the monitor window runs.

docs/HEALTH.md describes the behaviour for people.
"""
