"""`cmux hook EVENT`: what Claude Code's hooks call, for every agent cmux runs.

Claude Code runs the hook with the agent's environment (CMUX_AGENT,
CMUX_HOME) and a JSON object on stdin (session_id, transcript_path, cwd,
hook_event_name, and fields per event). From these events the registry
knows each Claude agent's state exactly:

    SessionStart      starting -> idle; records the session; the supervisor
                      gets what the journal remembers (stdout joins its context)
    UserPromptSubmit  -> busy (also out of done/blocked: new work arrived)
    PreToolUse        -> busy (not out of done/blocked: the report stands)
    Notification      a permission question -> waiting, and the supervisor
                      (or the person) is told
    Stop              mail waiting -> it is handed over as the agent's next
                      input ({"decision": "block"}), marked delivered; else
                      -> idle (done/blocked stay)
    SessionEnd        -> exited (unless the session was only cleared)

The hook runs on every tool call, so it imports only the standard library and
cmux's small core modules (no click, rich, libtmux or git), and it never
fails the agent: any error is written to state/hooks.log and the exit code is
still 0.
"""

from __future__ import annotations

# Only what every call needs is imported here: json, os, sys, time. The rest
# (registry, mailbox, config) is imported by the events that change something;
# a PreToolUse of an agent already busy touches nothing but its registry file.
import json
import os
import sys
import time
from collections.abc import Mapping
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cmux.agents.registry import State
    from cmux.config import Config
    from cmux.paths import DataRoot

EVENTS = (
    "SessionStart",
    "UserPromptSubmit",
    "PreToolUse",
    "Stop",
    "Notification",
    "SessionEnd",
)
STICKY = frozenset({"done", "blocked"})  # declared by the agent; only new input ends them
# Consecutive Stop hooks that hand over mail while the agent is still going on
# because of an earlier hand-over; past this the agent stops and the router
# delivers what is left through the keyboard.
MAX_CHAINED_HANDOVERS = 5
MAX_HANDOVER_MESSAGES = 20  # messages handed over in one Stop
LOG_NAME = "hooks.log"
LOG_MAX_BYTES = 1_000_000


class HookResult:
    """What the hook prints and what it did (the tests read ``actions``)."""

    def __init__(self) -> None:
        self.stdout = ""
        self.actions: list[str] = []


def main(argv: list[str] | None = None) -> int:
    """Entry point without click: ``python -m cmux.agents.claude_hooks EVENT``."""
    args = sys.argv[1:] if argv is None else argv
    event = args[0] if args else ""
    return run(event, sys.stdin, sys.stdout, os.environ)


def run(event: str, stdin: IO[str], stdout: IO[str], env: Mapping[str, str]) -> int:
    """Handle one hook call. Always returns 0: a hook must never break the agent."""
    home = env.get("CMUX_HOME", "")
    name = env.get("CMUX_AGENT", "")
    if not home or not name:
        return 0  # not an agent cmux started: nothing to do
    t0 = time.monotonic()
    try:
        payload = _parse(stdin.read())
        if unchanged(event, payload, home, name):
            result = HookResult()
            result.actions.append("unchanged")
        else:
            from pathlib import Path

            from cmux.paths import DataRoot

            result = handle(event, payload, DataRoot(Path(home)), name, env)
        if result.stdout:
            stdout.write(result.stdout)
            stdout.flush()
        if env.get("CMUX_HOOK_DEBUG"):
            ms = (time.monotonic() - t0) * 1000
            _log(home, f"{event} {name}: {', '.join(result.actions) or '-'} ({ms:.1f} ms)")
    except BaseException as exc:  # never let an exception reach Claude Code
        if not isinstance(exc, KeyboardInterrupt | SystemExit):
            import traceback

            _log(home, f"{event} {name}: {type(exc).__name__}: {exc}\n{traceback.format_exc()}")
    return 0


def agent_file(home: str, name: str) -> str:
    """The agent's registry file (DataRoot.agent_file, without importing it)."""
    return os.path.join(home, "state", "agents", f"{name}.json")


def mail_waiting(home: str, name: str) -> bool:
    """Anything in the agent's mailbox new/ (store.pending, without importing it)."""
    try:
        return any(
            not n.startswith(".") for n in os.listdir(os.path.join(home, "mailbox", name, "new"))
        )
    except OSError:
        return False


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
    if state != "busy":
        return False
    _reset_chain(home, name)
    return True


def _parse(raw: str) -> dict[str, Any]:
    if not raw.strip():
        return {}
    value = json.loads(raw)
    return value if isinstance(value, dict) else {}


def _log(home: str, text: str) -> None:
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


def handle(
    event: str, payload: dict[str, Any], data: DataRoot, name: str, env: Mapping[str, str]
) -> HookResult:
    from cmux.agents import registry

    result = HookResult()
    if not registry.exists(data, name):
        result.actions.append("unknown agent")
        return result
    handler = _HANDLERS.get(event)
    if handler is None:
        result.actions.append(f"ignored event {event!r}")
        return result
    _record_session(data, name, payload, result)
    handler(payload, data, name, env, result)
    return result


def _record_session(data: DataRoot, name: str, payload: dict[str, Any], result: HookResult) -> None:
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


def _move(
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
    _move(data, name, "idle", f"claude session {source}", result, only_from=("starting", "waiting"))
    _reset_chain(str(data.root), name)
    if env.get("CMUX_ROLE") == "supervisor" or name == "supervisor":
        result.stdout = _start_context(data)
        if result.stdout:
            result.actions.append("start context")


def _start_context(data: DataRoot) -> str:
    try:
        from cmux.journal.context import start_context
    except ImportError:
        return ""
    text: str = start_context(data)
    return text if text.endswith("\n") or not text else text + "\n"


def on_user_prompt(
    payload: dict[str, Any], data: DataRoot, name: str, env: Mapping[str, str], result: HookResult
) -> None:
    _reset_chain(str(data.root), name)
    _move(data, name, "busy", "a prompt was submitted", result)


def on_pre_tool(
    payload: dict[str, Any], data: DataRoot, name: str, env: Mapping[str, str], result: HookResult
) -> None:
    if _state(data, name) in STICKY:
        return
    tool = payload.get("tool_name") or "a tool"
    _move(data, name, "busy", f"using {tool}", result)


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
    if _move(data, name, "waiting", message, result) != "waiting" or before == "waiting":
        return
    try:
        to = tell_waiting(data, name, f"is waiting for permission: {message}")
        result.actions.append(f"told {to}")
    except Exception as exc:  # a notice that cannot be sent must not break the hook
        _log(str(data.root), f"Notification {name}: could not tell anyone: {exc}")


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
    chained = bool(payload.get("stop_hook_active"))
    count = _chain_count(str(data.root), name) if chained else 0
    if count < MAX_CHAINED_HANDOVERS and handover(data, name, result):
        _set_chain(str(data.root), name, count + 1)
        return
    if chained and count >= MAX_CHAINED_HANDOVERS:
        result.actions.append("loop guard: mail left for the router")
    _reset_chain(str(data.root), name)
    if _state(data, name) not in STICKY:
        _move(data, name, "idle", "finished its turn", result)


def handover(data: DataRoot, name: str, result: HookResult) -> bool:
    """Claim waiting mail and answer with it as the agent's next input.

    One message at a time through the store (bad entries go to deadletter on
    the way); a message that cannot be rendered goes back to new/ for the
    router, so nothing claimed here is left behind in cur/.
    """
    if not mail_waiting(str(data.root), name):
        return False  # the common case, without importing the mailbox
    from cmux.mail import store

    texts, taken = [], []
    for loaded in store.take(data, name, limit=MAX_HANDOVER_MESSAGES):
        try:
            texts.append(render(data, loaded.msg))
        except Exception as exc:
            _log(str(data.root), f"Stop {name}: {loaded.msg.id} left for the router: {exc}")
            store.requeue(data, name, loaded.path)
            continue
        taken.append(loaded)
    if not taken:
        return False
    text = "\n\n".join(texts)
    result.stdout = json.dumps({"decision": "block", "reason": text}, ensure_ascii=False) + "\n"
    for loaded in taken:
        try:
            store.mark_delivered(loaded.path)
        except FileNotFoundError:
            pass  # put back by a router meanwhile: delivered again (at least once)
        store.note(
            data,
            "deliver",
            name,
            id=loaded.msg.id,
            sender=loaded.msg.sender,
            kind=loaded.msg.kind,
            via="stop-hook",
        )
    result.actions.append(f"handed over {len(taken)} message(s)")
    _move(data, name, "busy", f"mail from {taken[0].msg.sender} handed over at Stop", result)
    return True


def render(data: DataRoot, msg: Any) -> str:
    """The same text the router would type for ``msg``."""
    try:
        from cmux.mail.deliver import render as router_render
    except ImportError:
        raise RuntimeError("cmux.mail.deliver is missing: cannot render mail") from None
    text: str = router_render(msg, data)
    return text


def on_session_end(
    payload: dict[str, Any], data: DataRoot, name: str, env: Mapping[str, str], result: HookResult
) -> None:
    reason = str(payload.get("reason") or "other")
    if reason == "clear":
        result.actions.append("session cleared")
        return
    _move(data, name, "exited", f"claude session ended ({reason})", result)


_HANDLERS = {
    "SessionStart": on_session_start,
    "UserPromptSubmit": on_user_prompt,
    "PreToolUse": on_pre_tool,
    "Notification": on_notification,
    "Stop": on_stop,
    "SessionEnd": on_session_end,
}


# -- the loop guard's counter -----------------------------------------------------------


def _chain_file(home: str, name: str) -> str:
    return os.path.join(home, "state", "hooks", f"{name}.chain")


def _chain_count(home: str, name: str) -> int:
    try:
        with open(_chain_file(home, name), encoding="utf-8") as fh:
            return int(fh.read().strip() or 0)
    except (OSError, ValueError):
        return 0


def _set_chain(home: str, name: str, n: int) -> None:
    path = _chain_file(home, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(f"{n}\n")


def _reset_chain(home: str, name: str) -> None:
    try:
        os.unlink(_chain_file(home, name))
    except FileNotFoundError:
        pass


if __name__ == "__main__":
    sys.exit(main())
