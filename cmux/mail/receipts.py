"""Read receipts: proof that the model saw a message, past "delivered".

A message's states: sent (in new/), claimed (cur/), delivered (cur/ with
``:2,S``: typed and Enter taken, or handed over at Stop), then **read**: the
agent's own record proves the text reached the model. For a Claude agent
that proof comes from its hooks (cmux/delivery/hooks.py): a message typed in
is in the prompt of its UserPromptSubmit, and one handed over at Stop is in
the Stop hook's answer; either becomes *read* at the next hook event of that
session (a tool call, a Stop, a notification), which can only come after the
model answered a request that held it. A turn that fails (StopFailure) proves
nothing. Where no proof is possible (a shell, a profile without hooks) a
message stays ``delivered (no receipt)``, never read.

On disk, per mailbox (cmux/mail/maildir.py spells the paths):

    mailbox/<agent>/receipts       one JSON line per id: read, redelivered,
                                   reported (appended, never rewritten)
    state/hooks/<agent>.unconfirmed  ids in the current turn, not yet proven

A delivered file's mtime is the time of its delivery (``claims.mark_delivered``
touches it), so a watchdog can tell a message delivered but unread for
``[mail] read_timeout`` seconds: it is delivered again once (same id), and if
still unread its sender and the person are told (cmux/health/watchdog.py).
"""

from __future__ import annotations

import json
import os
import time

from cmux.agents.adapters import capabilities
from cmux.fsutil import append_line
from cmux.mail import maildir

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cmux.paths import DataRoot

DEFAULT_READ_TIMEOUT = 120.0
MARK = "[cmux mail "  # how a message's header starts in what an agent is shown


def has_receipts(adapter: str) -> bool:
    """Whether an agent of ``adapter`` (capabilities.adapter_of its record)
    gives read receipts: only hooks can prove a message was read."""
    return capabilities.of(adapter).hooks


def ids_in(text: str) -> list[str]:
    """The ids of the cmux mail headers in ``text`` (a prompt, a handover)."""
    out: list[str] = []
    start = 0
    while True:
        i = text.find(MARK, start)
        if i < 0:
            return out
        j = i + len(MARK)
        end = text.find(" ", j)
        if end > j:
            out.append(text[j:end])
        start = j


def load(data: DataRoot, agent: str) -> dict[str, dict[str, object]]:
    """What the receipts file says of each id: {id: {"read": ts, "via": ...,
    "redelivered": ts, "reported": ts}} (later lines add to earlier ones)."""
    out: dict[str, dict[str, object]] = {}
    try:
        with open(maildir.receipts_file(data, agent), encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except (FileNotFoundError, NotADirectoryError):
        return out
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            continue  # a torn last line, or junk: never a reason to fail
        if isinstance(rec, dict) and isinstance(rec.get("id"), str):
            entry = out.setdefault(rec["id"], {})
            ev = rec.get("ev")
            if isinstance(ev, str):
                entry[ev] = rec.get("ts")
                if ev == "read":
                    entry["via"] = rec.get("via")
    return out


def _append(data: DataRoot, agent: str, msg_id: str, ev: str, **extra: object) -> None:
    line = json.dumps({"id": msg_id, "ev": ev, "ts": round(time.time(), 3), **extra})
    append_line(maildir.receipts_file(data, agent), line)


def mark_read(data: DataRoot, agent: str, ids: list[str], via: str) -> list[str]:
    """Record ``ids`` as read by ``agent`` (proof ``via``); returns those that
    were not read before (each gets a ``read`` event)."""
    if not ids:
        return []
    known = load(data, agent)
    fresh = [i for i in dict.fromkeys(ids) if "read" not in known.get(i, {})]
    for msg_id in fresh:
        _append(data, agent, msg_id, "read", via=via)
        maildir.note(data, "read", agent, id=msg_id, via=via)
    return fresh


def mark(data: DataRoot, agent: str, msg_id: str, ev: str) -> None:
    """Record ``redelivered`` or ``reported`` for ``msg_id``."""
    _append(data, agent, msg_id, ev)


def delivered(data: DataRoot, agent: str) -> list[tuple[str, float]]:
    """(id, time of delivery) of every message delivered to ``agent``."""
    cur = maildir.cur_dir(data, agent)
    try:
        names = os.listdir(cur)
    except FileNotFoundError:
        return []
    out = []
    tail = maildir.SUFFIX + maildir.SEEN
    for name in names:
        if name.endswith(tail):
            try:
                out.append((name[: -len(tail)], os.lstat(os.path.join(cur, name)).st_mtime))
            except FileNotFoundError:
                continue
    return sorted(out)


def unread(data: DataRoot, agent: str) -> list[tuple[str, float]]:
    """Delivered and not (yet) read, oldest first."""
    known = load(data, agent)
    return [(i, t) for i, t in delivered(data, agent) if "read" not in known.get(i, {})]


def state_of(data: DataRoot, agent: str, msg_id: str, adapter: str) -> str:
    """``read``, ``delivered`` or ``delivered (no receipt)`` for a delivered id."""
    if not has_receipts(adapter):
        return "delivered (no receipt)"
    return "read" if "read" in load(data, agent).get(msg_id, {}) else "delivered"


def decide(
    delivered_at: float, marks: dict[str, object], now: float, timeout: float, idle: bool
) -> str | None:
    """For a delivered message: ``redeliver`` (unread ``timeout`` seconds
    after delivery while its agent is idle, the first time), ``report`` (the
    same after it was delivered again), or None. Pure."""
    if "read" in marks or "reported" in marks or not idle:
        return None
    if now - delivered_at < timeout:
        return None
    return "report" if "redelivered" in marks else "redeliver"


# -- the current turn's ids, until a later hook event proves the model saw them ------------


def _unconfirmed_file(home: str, agent: str) -> str:
    return os.path.join(home, "state", "hooks", f"{agent}.unconfirmed")


def expect(home: str, agent: str, ids: list[str], via: str) -> None:
    """Remember ``ids`` as given to the model in this turn (``via`` prompt or
    stop-hook); :func:`confirm` marks them read at the next event."""
    if not ids:
        return
    path = _unconfirmed_file(home, agent)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write("".join(f"{via} {i}\n" for i in ids))


def confirm(data: DataRoot, agent: str) -> list[str]:
    """A hook event after a model answer: what was expected is read now."""
    path = _unconfirmed_file(str(data.root), agent)
    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except FileNotFoundError:
        return []
    os.unlink(path)
    by_via: dict[str, list[str]] = {}
    for line in lines:
        via, _, msg_id = line.partition(" ")
        if msg_id:
            by_via.setdefault(via, []).append(msg_id)
    done = []
    for via, ids in by_via.items():
        done += mark_read(data, agent, ids, via)
    return done


def forget(home: str, agent: str) -> None:
    """A turn that failed (StopFailure) or a new session: nothing was proven."""
    try:
        os.unlink(_unconfirmed_file(home, agent))
    except FileNotFoundError:
        pass
