"""The Stop-hook handover: a Claude agent's mail, handed over at the end of
its turn as its next input, instead of typed into a working pane.

``at_stop`` claims what waits (one message at a time through the store, bad
entries going to deadletter on the way), answers Claude Code with
``{"decision": "block", "reason": <the mail, as the router would type it>}``
(the decision word is the program's: cmux/agents/adapters/events.py)
and marks each message delivered right then. Whether it may is the policy's
(cmux/delivery/policy.py: ``hand_over_at_stop``, the loop guard); the count of
hand-overs in a row is kept in ``state/hooks/<name>.chain``.

Invariant: nothing claimed here is left behind in cur/: a message that
cannot be rendered goes back to new/ for the router.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cmux.agents.hookstate import HookResult
    from cmux.mail.message import Message
    from cmux.paths import DataRoot


def at_stop(
    payload: dict[str, Any], data: DataRoot, name: str, result: HookResult, adapter: str = "claude"
) -> bool:
    """At a Stop: hand waiting mail over when the policy allows; True when
    it did (the agent goes on, busy). Otherwise the chain count is reset and
    the agent's Stop (its state) is for the caller to handle.

    Whether this turn was itself a hand-over comes from the payload
    (``stop_hook_active``) where the program says so truthfully, else from
    cmux's own count (reset by a real new prompt)."""
    from cmux.agents.adapters import events
    from cmux.delivery import policy

    home = str(data.root)
    if events.chain_in_payload(adapter):
        chained = bool(payload.get("stop_hook_active"))
        count = chain_count(home, name) if chained else 0
    else:
        count = chain_count(home, name)
        chained = count > 0
    allowed = policy.hand_over_at_stop(chained, count)
    if allowed and handover(data, name, result, adapter):
        set_chain(home, name, count + 1)
        if not events.chain_in_payload(adapter):
            # Its next prompt hook is this mail (Gemini CLI: a BeforeAgent with
            # the reason as its prompt): a continuation, not a new turn.
            remember_handed(home, name, str(result.handed))
        return True
    if not allowed:
        result.actions.append("loop guard: mail left for the router")
    reset_chain(home, name)
    return False


def mail_waiting(home: str, name: str) -> bool:
    """Anything in the agent's new/ (without importing the store)."""
    from cmux.mail import maildir

    return maildir.waiting(home, name)


def handover(data: DataRoot, name: str, result: HookResult, adapter: str = "claude") -> bool:
    """Claim waiting mail and answer with it as the agent's next input.

    One message at a time through the store (bad entries go to deadletter on
    the way); a message that cannot be rendered goes back to new/ for the
    router, so nothing claimed here is left behind in cur/.
    """
    if not mail_waiting(str(data.root), name):
        return False  # the common case, without importing the mailbox
    from cmux.agents.hookstate import log, move
    from cmux.delivery.policy import MAX_HANDOVER_MESSAGES
    from cmux.mail import claims, maildir

    texts, taken = [], []
    for loaded in claims.take(data, name, limit=MAX_HANDOVER_MESSAGES):
        try:
            texts.append(render(data, loaded.msg))
        except Exception as exc:
            log(str(data.root), f"Stop {name}: {loaded.msg.id} left for the router: {exc}")
            claims.requeue(data, name, loaded.path)
            continue
        taken.append(loaded)
    if not taken:
        return False
    text = "\n\n".join(texts)
    result.handed = text
    from cmux.agents.adapters.events import continue_output

    result.stdout = json.dumps(continue_output(adapter, text), ensure_ascii=False) + "\n"
    for loaded in taken:
        try:
            claims.mark_delivered(loaded.path)
        except FileNotFoundError:
            pass  # put back by a router meanwhile: delivered again (at least once)
        maildir.note(
            data,
            "deliver",
            name,
            id=loaded.msg.id,
            sender=loaded.msg.sender,
            kind=loaded.msg.kind,
            via="stop-hook",
        )
    from cmux.mail import receipts

    # Read once the model answers this hand-over (the next hook event).
    receipts.expect(str(data.root), name, [t.msg.id for t in taken], "stop-hook")
    result.actions.append(f"handed over {len(taken)} message(s)")
    move(data, name, "busy", f"mail from {taken[0].msg.sender} handed over at Stop", result)
    return True


def render(data: DataRoot, msg: Message) -> str:
    """The same text the router would type for ``msg`` (no profile: a Claude agent)."""
    from cmux.mail.render import render as render_mail

    return render_mail(msg, data)


# -- the loop guard's counter -----------------------------------------------------------


def _chain_file(home: str, name: str) -> str:
    return os.path.join(home, "state", "hooks", f"{name}.chain")


def chain_count(home: str, name: str) -> int:
    try:
        with open(_chain_file(home, name), encoding="utf-8") as fh:
            return int(fh.read().strip() or 0)
    except (OSError, ValueError):
        return 0


def set_chain(home: str, name: str, n: int) -> None:
    path = _chain_file(home, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(f"{n}\n")


def reset_chain(home: str, name: str) -> None:
    for path in (_chain_file(home, name), _handed_file(home, name)):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


# -- a program that sends its continuation as a prompt ------------------------------------
# The Gemini CLI runs its prompt hook (BeforeAgent) again for the turn an
# AfterAgent "deny" continued, with the mail as its prompt. Taken for a new
# prompt it would reset the loop guard's count (and mark the mail read before
# the model saw it), so the hand-over's digest is kept until that prompt comes.


def _handed_file(home: str, name: str) -> str:
    return os.path.join(home, "state", "hooks", f"{name}.handed")


def _digest(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def remember_handed(home: str, name: str, text: str) -> None:
    path = _handed_file(home, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(_digest(text) + "\n")


def continued(home: str, name: str, prompt: str) -> bool:
    """Whether ``prompt`` is the mail the last hand-over gave (then it is the
    same turn going on, and the record of it is used up); False for a prompt
    of the agent's own or a person's."""
    path = _handed_file(home, name)
    try:
        with open(path, encoding="utf-8") as fh:
            want = fh.read().strip()
    except FileNotFoundError:
        return False
    if want != _digest(prompt):
        return False
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    return True
