"""Mail operations: send, report (done, blocked, status), read, the inbox, ls.

Imported on ``tools/mailbox send``: nothing is imported at module level,
not even ``typing`` (~15 ms of a new process); each function imports what it
needs (mailbox/README.md is the protocol; cmux/mail/ the only code that
touches the Maildir).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from cmux.agents.registry import State
    from cmux.config import Config
    from cmux.mail.message import Message

REPORTS = ("done", "blocked", "status")


def send(
    cfg: Config,
    *,
    to: str,
    body: str,
    sender: str,
    subject: str = "",
    reply_to: str | None = None,
) -> Message:
    """Store a message from ``sender`` (checked by the store: an agent signs
    only as itself) for ``to``; returning means it is stored."""
    from cmux.mail import store

    return store.send(cfg, to=to, body=body, sender=sender, subject=subject, reply_to=reply_to)


def report_to(cfg: Config, me: str) -> str:
    """Who ``me``'s reports go to: its parent (``supervisor`` when unknown),
    and the person for the supervisor."""
    from cmux.agents import registry
    from cmux.errors import UnknownAgent

    try:
        agent = registry.get(cfg.data, me)
    except UnknownAgent:
        return "supervisor" if me != "supervisor" else "human"
    if agent.role == "supervisor":
        return "human"
    return agent.parent or "supervisor"


def report(cfg: Config, me: str, kind: str, body: str) -> Message:
    """``mailbox done/blocked/status``: mail of that kind to ``report_to``.

    Done and blocked from an agent also move its record to that state (the
    first line of the body as the reason) and write a journal entry; a report
    from someone cmux has no record of is sent all the same.
    """
    from cmux.mail import store

    if me != "human" and kind == "done":
        _push(cfg, me)  # before the report: whoever reads it finds the branch on trunk
    msg = store.send(cfg, to=report_to(cfg, me), body=body, sender=me, kind=kind)
    marks: dict[str, State] = {"done": "done", "blocked": "blocked"}
    if me != "human" and kind in marks:
        _mark(cfg, me, marks[kind], body)
    if me != "human" and kind == "done":
        _auto_merge(cfg, me)
    return msg


def _push(cfg: Config, me: str) -> None:
    """A worker in a clone of the trunk on another host (its record names the
    trunk): its branch is pushed there. A failed push is an event and a note
    on its record; the report goes all the same."""
    from cmux.agents import registry
    from cmux.errors import CmuxError

    try:
        agent = registry.get(cfg.data, me)
    except CmuxError:
        return
    if not agent.trunk:
        return
    from cmux import events
    from cmux.remote.there import push_branch

    try:
        push_branch(cfg, agent)
    except CmuxError as exc:
        events.record(cfg.data, "push-failed", me, reason=exc.message)
        registry.update(cfg.data, me, note=f"push to trunk failed: {exc.message[:120]}")


def _auto_merge(cfg: Config, me: str) -> None:
    """``[merge] auto``: a worktree worker's done queues its branch; a
    refusal to queue (nothing committed) is an event, never a failed report."""
    if not cfg.section("merge").get("auto"):
        return
    from cmux import events
    from cmux.agents import registry
    from cmux.errors import CmuxError

    try:
        if not registry.get(cfg.data, me).branch:
            return
        from cmux.ops.merge import enqueue

        enqueue(cfg, me)
    except CmuxError as exc:
        events.record(cfg.data, "merge-not-queued", me, reason=exc.message)


def _mark(cfg: Config, me: str, kind: State, body: str) -> None:
    from cmux.agents import registry
    from cmux.errors import UnknownAgent

    first = body.strip().splitlines()[0][:80]
    try:
        registry.transition(cfg.data, me, kind, reason=first, strict=False)
    except UnknownAgent:
        return
    from cmux.journal import note

    note(cfg.data, agent=me, title=f"{kind}: {first}", body=body, tags=[kind])


def read(
    cfg: Config, me: str, *, everything: bool = False, only: str | None = None
) -> list[Message]:
    """``me``'s new mail, now marked read; with ``everything`` (or ``only``,
    an id) every message of the box, read or not, and nothing is marked."""
    from cmux.mail import claims, store

    if everything or only:
        msgs = store.read_all(cfg.data, me)
        if only:
            msgs = [m for m in msgs if m.id == only]
        return msgs
    return claims.receive(cfg.data, me)


def inbox(cfg: Config, *, everything: bool = False, peek: bool = False) -> list[Message]:
    """The person's mail: new messages, marked read; ``everything`` also the
    read ones; ``peek`` the new ones without marking them. The caller has
    checked that it is the person (identity.require_person)."""
    from cmux.mail import claims, store

    if peek:
        return store.unread(cfg.data, "human")
    if everything:
        return store.read_all(cfg.data, "human")
    return claims.receive(cfg.data, "human")


def boxes(cfg: Config) -> list[dict[str, Any]]:
    """Every mailbox one can write to: ``name``, its counts (``pending`` ...)
    and ``held_reason`` (None when its mail is not held)."""
    from cmux.mail import store

    names = store.recipients(cfg.data)
    counts = store.counts(cfg.data, names)
    unread = unread_counts(cfg, names)
    return [
        {
            "name": n,
            **counts[n],
            "unread": unread.get(n),
            "held_reason": store.hold_reason(cfg.data, n),
        }
        for n in names
    ]


def unread_counts(cfg: Config, names: list[str]) -> dict[str, int | None]:
    """Delivered but not yet read by the model, per agent whose program can
    prove reading (cmux/mail/receipts.py); None for the others (no receipt)."""
    from cmux.agents import registry
    from cmux.agents.adapters import capabilities
    from cmux.errors import UnknownAgent
    from cmux.mail import receipts

    out: dict[str, int | None] = {}
    for n in names:
        try:
            adapter = capabilities.adapter_of(registry.get(cfg.data, n))
        except UnknownAgent:
            out[n] = None
            continue
        out[n] = len(receipts.unread(cfg.data, n)) if receipts.has_receipts(adapter) else None
    return out


def trail(cfg: Config, msg_id: str) -> dict[str, Any]:
    """Everything known of one message: its fields, where it is now, each
    step from the event log (sent, claimed, held and why, delivered how,
    read by what proof, delivered again), and the replies to it."""
    from cmux import events
    from cmux.agents import registry
    from cmux.agents.adapters import capabilities
    from cmux.errors import UnknownAgent, UsageError
    from cmux.mail import receipts, store
    from cmux.mail.message import valid_id

    if not valid_id(msg_id):
        raise UsageError(
            f"{msg_id[:80]!r} is not a message id", "ids look like 18ed29802bc622de-4400-91ee53"
        )
    found = None
    for box in store.recipients(cfg.data):
        msg = store.find(cfg.data, box, msg_id)
        if msg is not None:
            found = msg
            break
    log, _ = events.read(cfg.data)
    steps = [
        e
        for e in log
        if e.get("id") == msg_id
        or (e.get("event") == "deadletter" and str(e.get("file", "")).startswith(msg_id))
    ]
    if found is None and not steps:
        raise UsageError(
            f"no message {msg_id} in any mailbox or in the event log", "see `cmux events`"
        )
    to = found.to if found else str(steps[0].get("agent") or "")
    sent = next((e["ts"] for e in steps if e.get("event") == "send"), "")
    delivered = next((e["ts"] for e in steps if e.get("event") == "deliver"), None)
    holds = [
        e
        for e in log
        if e.get("event") == "hold"
        and e.get("agent") == to
        and sent
        and str(e.get("ts", "")) >= sent
        and (delivered is None or str(e.get("ts", "")) <= delivered)
    ]
    try:
        adapter = capabilities.adapter_of(registry.get(cfg.data, to))
    except UnknownAgent:
        adapter = ""
    if any(e.get("event") == "read" for e in steps):
        state = "read"
    elif any(e.get("event") == "deadletter" for e in steps):
        state = "deadletter"
    elif delivered is not None:
        state = receipts.state_of(cfg.data, to, msg_id, adapter)
    elif any(e.get("event") == "claim" for e in steps):
        state = "claimed"
    else:
        state = "sent"
    replies = [
        m.as_dict()
        for box in store.recipients(cfg.data)
        for m in store.read_all(cfg.data, box)
        if m.reply_to == msg_id
    ]
    # The sender notes "send" just after the file is in new/, so the router
    # can log its claim first: the send heads the trail whatever the clocks say.
    steps = sorted([*steps, *holds], key=lambda e: (e.get("event") != "send", str(e.get("ts", ""))))
    return {
        "id": msg_id,
        "to": to,
        "state": state,
        "message": found.as_dict() if found else None,
        "steps": steps,
        "replies": replies,
    }
