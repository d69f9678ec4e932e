"""`cmux hook EVENT [ADAPTER]`: what every agent program's hooks call.

The program's native event is first put in cmux's words (its dialect,
cmux/agents/adapters/events.py; ADAPTER defaults to claude). One call is then
the agent's state (cmux/agents/hookstate.py: what each canonical event
means for its registry record) plus, at Stop, its mail: waiting mail is
handed over as the agent's next input (cmux/delivery/handover.py), under the
one delivery policy (cmux/delivery/policy.py). The hand-over count the loop
guard keeps starts again at every new turn (SessionStart, UserPromptSubmit).

The hook runs on every tool call, so it imports only the standard library and
cmux's small core modules (no click, rich, libtmux or git; a PreToolUse of
an agent already busy not even the registry), and it never fails the agent:
any error is written to state/hooks.log and the exit code is still 0.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping
from typing import IO, TYPE_CHECKING, Any

from cmux.agents import hookstate
from cmux.agents.adapters import events
from cmux.agents.hookstate import HookResult

if TYPE_CHECKING:
    from cmux.paths import DataRoot


def main(argv: list[str] | None = None) -> int:
    """Entry point without click: ``python -m cmux.delivery.hooks EVENT``."""
    args = sys.argv[1:] if argv is None else argv
    event = args[0] if args else ""
    adapter = args[1] if len(args) > 1 else events.DEFAULT
    return run(event, sys.stdin, sys.stdout, os.environ, adapter)


def run(
    native: str,
    stdin: IO[str],
    stdout: IO[str],
    env: Mapping[str, str],
    adapter: str = events.DEFAULT,
) -> int:
    """Handle one hook call of ``adapter``'s program. Always returns 0: a
    hook must never break the agent."""
    home = env.get("CMUX_HOME", "")
    name = env.get("CMUX_AGENT", "")
    if not home or not name:
        return 0  # not an agent cmux started: nothing to do
    t0 = time.monotonic()
    event = native
    try:
        mapped, payload = events.canonical(adapter, native, hookstate.parse(stdin.read()))
        if mapped is None:
            if env.get("CMUX_HOOK_DEBUG"):
                hookstate.log(home, f"{native} ({adapter}) {name}: not an event cmux handles")
            return 0
        event = mapped
        if event == "UserPromptSubmit" and not events.chain_in_payload(adapter):
            from cmux.delivery.handover import continued

            if continued(home, name, str(payload.get("prompt") or "")):
                # The turn a hand-over continued, announced as a prompt: not
                # a new turn (the loop guard's count stands), not yet read.
                if env.get("CMUX_HOOK_DEBUG"):
                    hookstate.log(home, f"{native} ({adapter}) {name}: the hand-over goes on")
                return 0
        receipts(event, payload, home, name)
        if hookstate.unchanged(event, payload, home, name):
            if event == "UserPromptSubmit":
                from cmux.delivery.handover import reset_chain

                reset_chain(home, name)  # a new turn, whatever the state
            result = HookResult()
            result.actions.append("unchanged")
        else:
            from pathlib import Path

            from cmux.paths import DataRoot

            result = handle(event, payload, DataRoot(Path(home)), name, env, adapter)
        if result.stdout:
            stdout.write(result.stdout)
            stdout.flush()
        if env.get("CMUX_HOOK_DEBUG"):
            ms = (time.monotonic() - t0) * 1000
            hookstate.log(home, f"{event} {name}: {', '.join(result.actions) or '-'} ({ms:.1f} ms)")
    except BaseException as exc:  # never let an exception reach Claude Code
        if not isinstance(exc, KeyboardInterrupt | SystemExit):
            import traceback

            hookstate.log(
                home, f"{event} {name}: {type(exc).__name__}: {exc}\n{traceback.format_exc()}"
            )
    return 0


# Events that come only after the model answered a request of this session:
# what the turn was given (a prompt, a Stop hand-over) reached the model.
PROVING = frozenset({"PreToolUse", "Stop", "Notification", "UserPromptSubmit"})


def receipts(event: str, payload: dict[str, Any], home: str, name: str) -> None:
    """Read receipts (cmux/mail/receipts.py): a proving event marks what the
    turn before was given as read; a prompt's mail ids wait for the next one.
    Costs one stat when there is nothing to do."""
    unconfirmed = os.path.join(home, "state", "hooks", f"{name}.unconfirmed")
    pending = os.path.exists(unconfirmed)
    prompt = str(payload.get("prompt") or "") if event == "UserPromptSubmit" else ""
    if not pending and "[cmux mail " not in prompt and event not in ("SessionStart", "StopFailure"):
        return
    from cmux.mail import receipts as rc
    from cmux.paths import DataRoot

    if event in ("SessionStart", "StopFailure"):
        rc.forget(home, name)  # a new session, or a turn the model never answered
        return
    if pending and event in PROVING:
        rc.confirm(DataRoot(home), name)
    if prompt:
        rc.expect(home, name, rc.ids_in(prompt), "prompt")


def handle(
    event: str,
    payload: dict[str, Any],
    data: DataRoot,
    name: str,
    env: Mapping[str, str],
    adapter: str = events.DEFAULT,
) -> HookResult:
    """One canonical event for a known agent: its session record, the mail
    at Stop (continued in ``adapter``'s dialect), then its state."""
    from cmux.delivery import handover

    result = HookResult()
    if not hookstate.begin(event, data, name, result, env):
        return result
    hookstate.record_session(data, name, payload, result)
    home = str(data.root)
    if event == "UserPromptSubmit":
        handover.reset_chain(home, name)
    if event == "Stop" and handover.at_stop(payload, data, name, result, adapter):
        return result  # the agent goes on with its mail: busy
    hookstate.HANDLERS[event](payload, data, name, env, result)
    if event == "SessionStart":
        handover.reset_chain(home, name)
    return result


if __name__ == "__main__":
    sys.exit(main())
