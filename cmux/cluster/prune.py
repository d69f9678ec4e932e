"""What the node daemon keeps, and for how long: the streams' limits, a
spool's ``sent/`` (the journal's ledgers: cmux/cluster/journal.py, compact).

The streams (:data:`STREAMS`, made or updated so by every node):

- CMUX_MAIL: a message stays until it is ``MAIL_MAX_AGE`` old (14 days),
  acked or not. The durable consumers track what each host took; what a
  host silent longer than that never took is gone with it (its agents were
  ``lost`` after ``[cluster] host_timeout``, long before). Its duplicate
  window is ``DUPLICATE_WINDOW``.
- CMUX_EVENTS: the other hosts' history that `cmux events` and the
  dashboard read: 7 days of it, at most a million events (each host keeps
  its own events.jsonl besides).
- CMUX_JOURNAL: everything, for ever. A host that joins late makes its
  durable consumer ``journal-<host>`` then, from the stream's first entry,
  so it gets the whole journal; markdown is small (a year of a busy team is
  tens of MB). Each host's own ledgers are compacted instead.

A spooled message moves from new/ to sent/ after JetStream's PubAck
(bridge.mark_sent). Nothing reads it there but :func:`bridge.mark_sent`
itself: a file in new/ whose name is already in sent/ was published before
a crash cut its move short, and is simply unlinked. `mail show`, `mail log`
and the reply depth read new/, cur/ and the event log, never sent/ (the
``cluster-sent`` event keeps the trail). So a sent file is only a receipt,
and it is dropped once older than ``[cluster] keep_sent`` hours (1 by
default; at least the stream's duplicate window, the schema refuses less):
a message republished after that is still dropped by the receiving store.

The rules, pure (:func:`due`, :func:`to_drop`), beside the one act
(:func:`prune_sent`). The age is read from the file's name (a message id
begins with its time of sending, bridge.id_time), so pruning needs a listdir
of each spool's sent/, no stat, and it runs at most every ``PRUNE_EVERY``
seconds, not per tick.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from cmux.cluster import bridge
from cmux.mail import maildir
from cmux.paths import DataRoot

DAY = 86400.0
DUPLICATE_WINDOW = 600.0  # seconds, of every stream
MAIL_MAX_AGE = 14 * DAY
EVENTS_MAX_AGE = 7 * DAY
EVENTS_MAX_MSGS = 1_000_000


@dataclass(frozen=True)
class Limits:
    max_age: float = 0.0  # seconds; 0: none
    max_msgs: int = -1  # -1: none
    duplicate_window: float = DUPLICATE_WINDOW


STREAMS = {
    bridge.MAIL_STREAM: Limits(max_age=MAIL_MAX_AGE),
    bridge.EVENTS_STREAM: Limits(max_age=EVENTS_MAX_AGE, max_msgs=EVENTS_MAX_MSGS),
    bridge.JOURNAL_STREAM: Limits(),
}

# [cluster] keep_sent by default: six duplicate windows. Only a crash between
# the link into sent/ and the unlink from new/ ever looks there, seconds
# later; and at the 500 msg/s of docs/PERFORMANCE.md an hour is 1.8M files.
KEEP_SENT_HOURS = 1.0
PRUNE_EVERY = 600.0  # seconds between two prunings by one node


def due(last: float | None, now: float, every: float = PRUNE_EVERY) -> bool:
    """Whether to prune now: never yet in this node, or ``every`` s since the last."""
    return last is None or now - last >= every


def to_drop(names: Iterable[str], now_ns: int, keep: float) -> list[str]:
    """The sent/ files older than ``keep`` seconds, by the time their id was
    made (bridge.id_time). A name that carries no such time (not made by
    cmux) is never dropped here: it is not ours to judge. Never less than
    the duplicate window is kept, whatever ``keep`` says."""
    cutoff = now_ns - int(max(keep, DUPLICATE_WINDOW) * 1e9)
    out = []
    for name in names:
        if not name.endswith(maildir.SUFFIX) or name.startswith("."):
            continue
        t = bridge.id_time(name)
        if t is not None and int(t, 16) < cutoff:
            out.append(name)
    return sorted(out)


def prune_sent(
    data: DataRoot, spools: Mapping[str, str] | Iterable[str], now_ns: int, keep: float
) -> int:
    """Drop the old files of each spool's sent/ (:func:`to_drop`); how many went."""
    dropped = 0
    for agent in spools:
        folder = maildir.sent_dir(data, agent)
        try:
            names = os.listdir(folder)
        except (FileNotFoundError, NotADirectoryError):
            continue
        for name in to_drop(names, now_ns, keep):
            try:
                os.unlink(os.path.join(folder, name))
                dropped += 1
            except OSError:  # gone meanwhile, or not a file (not ours to remove)
                pass
    return dropped
