"""Each agent program's hook dialect: its events, in cmux's words.

cmux's state logic (cmux/agents/hookstate.py) and the mail handed over at
turn end (cmux/delivery/handover.py) speak one set of *canonical* events,
named as Claude Code names them:

    SessionStart       the program is up (or resumed) and takes input
    UserPromptSubmit   a prompt was submitted (payload ``prompt``)
    PreToolUse         it is working (payload ``tool_name``)
    Notification       it asks a question; ``notification_type`` =
                       "permission_prompt" means it waits for approval
    Stop               its turn is over; what it prints can hand mail over
    StopFailure        its turn ended on a model API error (payload ``error``)
    SessionEnd         it is gone

A program's hook calls ``cmux hook NATIVE_EVENT ADAPTER``; its ``Dialect``
maps the native event (and, where the shapes differ, the payload) onto one of
those, and says how its turn-end hook continues the turn with mail.

Invariant: a native event the dialect does not name is ignored (None), never
guessed at. This module imports nothing (it runs on every hook call).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    Normalizer = Callable[[str, dict[str, Any]], dict[str, Any]]

CANONICAL = (
    "SessionStart",
    "UserPromptSubmit",
    "PreToolUse",
    "Notification",
    "Stop",
    "StopFailure",
    "SessionEnd",
)
PERMISSION = "permission_prompt"  # the ``notification_type`` of an approval question


class Dialect:
    """One program's hook events (plain class: imported on every hook call)."""

    __slots__ = ("chain_in_payload", "continue_decision", "events", "normalize")

    def __init__(
        self,
        events: dict[str, str],
        *,
        continue_decision: str = "block",
        chain_in_payload: bool = True,
        normalize: Normalizer | None = None,
    ) -> None:
        # native event name -> canonical event name
        self.events = events
        # At turn end, {"decision": <this>, "reason": <mail>} makes the
        # program take the mail as its next input instead of stopping.
        self.continue_decision = continue_decision
        # Whether its turn-end payload says truthfully (``stop_hook_active``)
        # that this turn was itself continued by the hook; when not, cmux
        # counts hand-overs in a row itself (the loop guard still holds).
        self.chain_in_payload = chain_in_payload
        # (native event, payload) -> the payload in the canonical shape.
        self.normalize = normalize


def _gemini(event: str, payload: dict[str, Any]) -> dict[str, Any]:
    """The Gemini CLI's payloads in the canonical shape: its approval question
    (``Notification`` of type ``ToolPermission``, with ``details.command``)
    is a permission prompt; its other notifications are not."""
    if event != "Notification":
        return payload
    if payload.get("notification_type") != "ToolPermission":
        return {**payload, "notification_type": str(payload.get("notification_type") or "other")}
    details = payload.get("details")
    details = details if isinstance(details, dict) else {}
    what = details.get("command") or details.get("title") or ""
    message = str(payload.get("message") or "Gemini asks to run a tool")
    if what and str(what) not in message:
        message = f"{message}: {what}"
    return {**payload, "notification_type": PERMISSION, "message": message}


def _codex_payload(event: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Codex's PermissionRequest (``tool_name``, ``tool_input.command``,
    ``tool_input.description``: the model's justification) as a permission
    Notification. It fires as the approval prompt shows, before any answer;
    cmux's handler prints nothing, so the prompt stays for a person."""
    if event != "PermissionRequest":
        return payload
    tool = payload.get("tool_input")
    tool = tool if isinstance(tool, dict) else {}
    what = str(tool.get("command") or payload.get("tool_name") or "a tool")
    why = str(tool.get("description") or "")
    message = f"Codex asks to run {what}" + (f" ({why})" if why else "")
    return {**payload, "notification_type": PERMISSION, "message": message}


DIALECTS: dict[str, Dialect] = {
    "claude": Dialect({e: e for e in CANONICAL}),
    # The Gemini CLI (cmux/agents/adapters/gemini.py; docs/AGENTS.md, checked
    # with 0.61.0). BeforeTool fires before its approval question and AfterTool
    # after the tool ran: both mean working. AfterAgent is its turn end; a
    # "deny" there goes on with the reason as the next prompt (a BeforeAgent
    # follows, cmux/delivery/handover.py ``continued``), and its
    # stop_hook_active stays false, so cmux counts hand-overs itself.
    "gemini": Dialect(
        {
            "SessionStart": "SessionStart",
            "BeforeAgent": "UserPromptSubmit",
            "BeforeTool": "PreToolUse",
            "AfterTool": "PreToolUse",
            "Notification": "Notification",
            "AfterAgent": "Stop",
            "SessionEnd": "SessionEnd",
        },
        continue_decision="deny",
        chain_in_payload=False,
        normalize=_gemini,
    ),
    # The Codex CLI (docs/AGENTS.md, "Hooks"): Claude's names, plus
    # PermissionRequest (waiting) and PostToolUse (working again: an approved
    # command ran). Stop continues the turn with "block"; its payload's
    # stop_hook_active is truthful. No Notification, no StopFailure.
    "codex": Dialect(
        {
            "SessionStart": "SessionStart",
            "UserPromptSubmit": "UserPromptSubmit",
            "PreToolUse": "PreToolUse",
            "PermissionRequest": "Notification",
            "PostToolUse": "PreToolUse",
            "Stop": "Stop",
            "SessionEnd": "SessionEnd",
        },
        normalize=_codex_payload,
    ),
}
DEFAULT = "claude"  # `cmux hook EVENT` without an adapter: what older settings files call


def dialect(adapter: str) -> Dialect | None:
    return DIALECTS.get(adapter or DEFAULT)


def canonical(
    adapter: str, event: str, payload: dict[str, Any]
) -> tuple[str | None, dict[str, Any]]:
    """The canonical event (None: not one cmux handles) and payload for a
    native ``event`` of ``adapter``'s program."""
    d = dialect(adapter)
    if d is None:
        return None, payload
    name = d.events.get(event)
    if name is None:
        return None, payload
    if d.normalize is not None:
        payload = d.normalize(event, payload)
    return name, payload


def continue_output(adapter: str, text: str) -> dict[str, str]:
    """What the turn-end hook prints (as JSON) to go on with ``text``."""
    d = dialect(adapter) or DIALECTS[DEFAULT]
    return {"decision": d.continue_decision, "reason": text}


def chain_in_payload(adapter: str) -> bool:
    d = dialect(adapter) or DIALECTS[DEFAULT]
    return d.chain_in_payload
