"""The state logic of hook events: what each canonical hook event means for
the agent's registry record, whatever program sent it. The entry point
`cmux hook EVENT [ADAPTER]` is cmux/delivery/hooks.py, which first puts the
program's native event in these words (its dialect,
cmux/agents/adapters/events.py: Claude Code's names are the canonical ones)
and adds the mail handed over at Stop (cmux/delivery/handover.py).

The program runs the hook with the agent's environment (CMUX_AGENT,
CMUX_HOME) and a JSON object on stdin (session_id, transcript_path, cwd,
and fields per event). From these events the registry knows the state of
every agent whose program has hooks exactly:

    SessionStart      starting -> idle; records the session; the supervisor
                      (and a worker restarted without its conversation)
                      gets what the journal remembers (stdout joins its context)
    UserPromptSubmit  -> busy (also out of done/blocked: new work arrived;
                      not for a prompt of cmux's own notices only, such as
                      "your branch landed": the report stands)
    PreToolUse        -> busy (not out of done/blocked: the report stands)
    Notification      a permission question -> waiting, and the supervisor
                      (or the person) is told
    Stop              -> idle (done/blocked stay), unless mail waiting was
                      handed over as the agent's next input (delivery)
    StopFailure       the model API ended the turn with an error (fires
                      instead of Stop): a rate limit -> rate-limited, an
                      overloaded or failing API -> overloaded (its parent is
                      told; the watchdog asks it to continue after [claude]
                      retry_after), a key or login refused -> auth-error (the
                      person is told at once); another error -> idle
    SessionEnd        -> exited (unless the session was only cleared)

The hook runs on every tool call, so it imports only the standard library and
cmux's small core modules (no click, rich, libtmux or git), and it never
fails the agent: any error is written to state/hooks.log and the exit code is
still 0.
"""

from __future__ import annotations

# Only what every call needs is imported here: json, os, time. The rest
# (registry, mailbox, config) is imported by the events that change something;
# a PreToolUse of an agent already busy touches nothing but its registry file.
import json
import os
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cmux.agents.registry import State
    from cmux.config import Config
    from cmux.paths import DataRoot

EVENTS = (
    "SessionStart",
    "UserPromptSubmit",
    "PreToolUse",
    "Stop",
    "StopFailure",
    "Notification",
    "SessionEnd",
)
STICKY = frozenset({"done", "blocked"})  # declared by the agent; only new input ends them
LOG_NAME = "hooks.log"
LOG_MAX_BYTES = 1_000_000


class HookResult:
    """What the hook prints and what it did (the tests read ``actions``)."""

    def __init__(self) -> None:
        self.stdout = ""
        self.actions: list[str] = []
        self.handed = ""  # the mail text a turn-end hand-over gave, if any


def agent_file(home: str, name: str) -> str:
    """The agent's registry file (DataRoot.agent_file, without importing it)."""
    return os.path.join(home, "state", "agents", f"{name}.json")


def unchanged(event: str, payload: dict[str, Any], home: str, name: str) -> bool:
    """True when this call changes nothing: the common PreToolUse of a busy
    agent, read straight from its registry file (no lock, no write)."""
    if event not in ("PreToolUse", "UserPromptSubmit"):
        return False
    try:
        with open(agent_file(home, name), encoding="utf-8") as fh:
            rec = json.load(fh)
    except (OSError, ValueError):
        return False
    if not isinstance(rec, dict):
        return False
    sid, transcript = payload.get("session_id"), payload.get("transcript_path")
    if sid and rec.get("session_id") != sid:
        return False
    if transcript and rec.get("transcript") != transcript:
        return False
    state = rec.get("state")
    if event == "PreToolUse":
        return state == "busy" or state in STICKY
    return state == "busy"


def parse(raw: str) -> dict[str, Any]:
    if not raw.strip():
        return {}
    value = json.loads(raw)
    return value if isinstance(value, dict) else {}


def log(home: str, text: str) -> None:
    try:
        path = os.path.join(home, "state", LOG_NAME)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        try:
            if os.path.getsize(path) > LOG_MAX_BYTES:
                os.replace(path, path + ".1")
        except FileNotFoundError:
            pass
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(f"{stamp} pid={os.getpid()} {text.rstrip()}\n")
    except OSError:
        pass


# -- the events -----------------------------------------------------------------------


def begin(
    event: str,
    data: DataRoot,
    name: str,
    result: HookResult,
    env: Mapping[str, str] | None = None,
) -> bool:
    """Whether ``event`` is one to handle for ``name``: a known agent, a known
    event, of the agent's current incarnation (``CMUX_INCARNATION``: the
    SessionEnd of a process the tmux server's end is taking down can come
    after its successor started, with the same session id when that
    successor resumed its conversation); else ``result`` says why not."""
    from cmux.agents import registry

    if not registry.exists(data, name):
        result.actions.append("unknown agent")
        return False
    if event not in HANDLERS:
        result.actions.append(f"ignored event {event!r}")
        return False
    mine = (env or {}).get("CMUX_INCARNATION", "")
    if mine.isdigit() and registry.get(data, name).incarnation != int(mine):
        result.actions.append(f"from incarnation {mine}, not the current one")
        return False
    return True


def record_session(data: DataRoot, name: str, payload: dict[str, Any], result: HookResult) -> None:
    """Keep the registry's session id and transcript path current."""
    from cmux.agents import registry

    sid = payload.get("session_id")
    transcript = payload.get("transcript_path")
    if not isinstance(sid, str) or not sid:
        return
    agent = registry.get(data, name)
    changes: dict[str, Any] = {}
    if agent.session_id != sid:
        changes["session_id"] = sid
    if isinstance(transcript, str) and transcript and agent.transcript != transcript:
        changes["transcript"] = transcript
    if changes:
        registry.update(data, name, **changes)
        result.actions.append("session recorded")
    if "transcript" in changes:
        from cmux.agents import cost

        cost.remember_transcript(data, name, changes["transcript"])


def move(
    data: DataRoot,
    name: str,
    new: State,
    reason: str,
    result: HookResult,
    only_from: tuple[State, ...] | None = None,
) -> str:
    from cmux.agents import registry

    agent = registry.transition(data, name, new, reason=reason, strict=False, only_from=only_from)
    result.actions.append(f"-> {agent.state}")
    return agent.state


def _state(data: DataRoot, name: str) -> str:
    from cmux.agents import registry

    return registry.get(data, name).state


def on_session_start(
    payload: dict[str, Any], data: DataRoot, name: str, env: Mapping[str, str], result: HookResult
) -> None:
    source = str(payload.get("source") or "startup")
    # A session that starts (or resumes) is ready for input; one that was
    # cleared or compacted mid-work keeps its state.
    move(data, name, "idle", f"session {source}", result, only_from=("starting", "waiting"))
    # A worker started afresh because its conversation was lost (CMUX_MEMORY,
    # cmux/agents/resume.py) gets the journal's memory as the supervisor does.
    if env.get("CMUX_ROLE") == "supervisor" or name == "supervisor" or env.get("CMUX_MEMORY"):
        result.stdout = _start_context(data)
        if result.stdout:
            result.actions.append("start context")


def _start_context(data: DataRoot) -> str:
    from cmux.journal.context import start_context

    text: str = start_context(data)
    return text if text.endswith("\n") or not text else text + "\n"


def only_notices(prompt: str) -> bool:
    """Whether ``prompt`` is nothing but cmux's own notices (mail headed
    ``[cmux mail <id> from cmux kind=notice]``): news, not new work."""
    text = prompt.lstrip()
    heads = [ln for ln in text.splitlines() if ln.startswith("[cmux mail ")]
    return (
        text.startswith("[cmux mail ")
        and bool(heads)
        and all(" from cmux kind=notice" in ln for ln in heads)
    )


def on_user_prompt(
    payload: dict[str, Any], data: DataRoot, name: str, env: Mapping[str, str], result: HookResult
) -> None:
    if _state(data, name) in STICKY and only_notices(str(payload.get("prompt") or "")):
        result.actions.append("a notice from cmux: the report stands")
        return
    move(data, name, "busy", "a prompt was submitted", result)


def on_pre_tool(
    payload: dict[str, Any], data: DataRoot, name: str, env: Mapping[str, str], result: HookResult
) -> None:
    if _state(data, name) in STICKY:
        return
    tool = payload.get("tool_name") or "a tool"
    move(data, name, "busy", f"using {tool}", result)


def is_permission_notification(payload: dict[str, Any]) -> bool:
    kind = str(payload.get("notification_type") or "")
    if kind:
        return kind == "permission_prompt"
    message = str(payload.get("message") or "").lower()
    return "permission" in message


def on_notification(
    payload: dict[str, Any], data: DataRoot, name: str, env: Mapping[str, str], result: HookResult
) -> None:
    if not is_permission_notification(payload):
        result.actions.append("notification ignored")
        return
    message = str(payload.get("message") or "Claude needs your permission")
    before = _state(data, name)
    if move(data, name, "waiting", message, result) != "waiting" or before == "waiting":
        return
    try:
        to = tell_waiting(data, name, f"is waiting for permission: {message}")
        result.actions.append(f"told {to}")
    except Exception as exc:  # a notice that cannot be sent must not break the hook
        log(str(data.root), f"Notification {name}: could not tell anyone: {exc}")


def tell_waiting(data: DataRoot, name: str, what: str, cfg: Config | None = None) -> str:
    """Tell whoever answers for ``name`` (its parent; the person for the
    supervisor) that it waits, and how to answer. Returns who was told."""
    from cmux.agents import registry
    from cmux.config import load_config
    from cmux.mail import store
    from cmux.paths import HUMAN

    agent = registry.get(data, name)
    to = agent.parent if agent.role != "supervisor" and agent.parent else HUMAN
    if to != HUMAN and not store.known(data, to):
        to = HUMAN
    how = f"`cmux approve {name}` or `cmux deny {name}`"
    if to != HUMAN:
        # An agent's PATH has tools/ but not necessarily `cmux`.
        how = f"`workers approve {name}` or `workers deny {name}`"
    body = f"{name} {what}. Answer with {how}; `cmux attach` shows the question."
    store.send(cfg or load_config(), to=to, body=body, sender="cmux", kind="notice")
    return to


def on_stop(
    payload: dict[str, Any], data: DataRoot, name: str, env: Mapping[str, str], result: HookResult
) -> None:
    """The turn is over (and no mail was handed over: cmux/delivery/hooks.py)."""
    if _state(data, name) not in STICKY:
        move(data, name, "idle", "finished its turn", result)


def on_session_end(
    payload: dict[str, Any], data: DataRoot, name: str, env: Mapping[str, str], result: HookResult
) -> None:
    reason = str(payload.get("reason") or "other")
    if reason == "clear":
        result.actions.append("session cleared")
        return
    move(data, name, "exited", f"session ended ({reason})", result)


# StopFailure's ``error`` (Claude Code 2.1.197 names these) -> the state it means.
API_ERRORS: dict[str, State] = {
    "rate_limit": "rate-limited",
    "overloaded": "overloaded",
    "server_error": "overloaded",  # a 529 past Claude Code's retries arrives as this
    "authentication_failed": "auth-error",
    "oauth_org_not_allowed": "auth-error",
    "billing_error": "auth-error",
}


def api_error_state(error: str, message: str = "") -> State | None:
    """The state a StopFailure (or an API error in the transcript) means, or
    None for an error that is not about being allowed to work (a bad request,
    a missing model, output too long: the turn simply ended)."""
    if error in API_ERRORS and error != "server_error":
        return API_ERRORS[error]
    text = message.lower()
    if "429" in text or "rate limit" in text:
        return "rate-limited"
    if "529" in text or "overloaded" in text:
        return "overloaded"
    if "401" in text or "invalid api key" in text:
        return "auth-error"
    return API_ERRORS.get(error)


def on_stop_failure(
    payload: dict[str, Any], data: DataRoot, name: str, env: Mapping[str, str], result: HookResult
) -> None:
    """The turn ended on an API error: the agent is alive but cannot work."""
    error = str(payload.get("error") or "unknown")
    message = " ".join(str(payload.get("last_assistant_message") or "").split())[:300]
    new = api_error_state(error, message)
    before = _state(data, name)
    if new is None:
        if before not in STICKY:
            move(data, name, "idle", f"its turn ended on an API error ({error})", result)
        return
    reason = f"the model API refused: {message or error}"
    if move(data, name, new, reason, result) != new or before == new:
        return
    try:
        to = tell_refused(data, name, new, message or error)
        result.actions.append(f"told {to}")
    except Exception as exc:  # a notice that cannot be sent must not break the hook
        log(str(data.root), f"StopFailure {name}: could not tell anyone: {exc}")


def tell_refused(data: DataRoot, name: str, state: str, message: str) -> str:
    """Tell who must know that ``name`` cannot work: its parent (the person for
    the supervisor) of a rate limit or an overloaded API, which cmux waits out;
    the person at once of a key or login the API refused. Returns who."""
    from cmux.agents import registry
    from cmux.config import load_config
    from cmux.mail import store
    from cmux.paths import HUMAN

    cfg = load_config()
    agent = registry.get(data, name)
    if state == "auth-error":
        to = HUMAN
        body = (
            f"{name} cannot work: the model API refused its key or login ({message}). "
            f"Fix the key (its API key variable, or the login in its pane: `cmux attach`, window "
            f"{name}); then type `continue` in its pane or send it a message."
        )
    else:
        to = agent.parent if agent.role != "supervisor" and agent.parent else HUMAN
        if to != HUMAN and not store.known(data, to):
            to = HUMAN
        wait = retry_after(cfg)
        body = (
            f"{name} is {state}: the model API refused its request ({message}). "
            f"cmux will ask it to continue in {int(wait)}s ([claude] retry_after); "
            "nothing to do unless it stays so."
        )
    store.send(cfg, to=to, body=body, sender="cmux", kind="notice")
    return to


DEFAULT_RETRY_AFTER = 300.0  # as HealthSettings.retry_after


def retry_after(cfg: Config) -> float:
    """``[claude] retry_after``: seconds before a rate-limited or overloaded
    agent is asked to continue."""
    return float(cfg.section("claude").get("retry_after", DEFAULT_RETRY_AFTER))


HANDLERS = {
    "SessionStart": on_session_start,
    "UserPromptSubmit": on_user_prompt,
    "PreToolUse": on_pre_tool,
    "Notification": on_notification,
    "Stop": on_stop,
    "StopFailure": on_stop_failure,
    "SessionEnd": on_session_end,
}
