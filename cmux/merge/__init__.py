"""The merge queue: workers' branches land on trunk only after the checks pass.

- ``queue``: the queue on disk (``state/merge/queue.json``) and its states.
- ``policy``: the pure bisection of a batch (what to test next).
- ``config``: ``[merge]`` in cmux.toml.
- ``merger``: the daemon that builds, tests and lands (docs/MERGE.md).
"""
