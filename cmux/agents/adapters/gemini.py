"""The Gemini CLI (``@google/gemini-cli``) as a cmux adapter.

- launch: ``GEMINI_CLI_HOME`` is a directory of cmux's own per agent
  (``<data root>/state/settings/gemini/<name>``, never ``~/.gemini``); its
  ``.gemini/settings.json`` answers every first-run question (API-key auth,
  no folder trust dialog, no update checks or telemetry), names the model and
  installs cmux's hooks, each calling ``python -m cmux hook <EVENT> gemini``;
  the role is its global context file (``.gemini/GEMINI.md``, which the CLI
  adds to its own system prompt: ``GEMINI_SYSTEM_MD`` would replace it); what
  each role may run unasked is a policy file (``.gemini/policies/cmux.toml``);
  the task is the first prompt (a positional argument keeps the session
  interactive); cmux picks the ``--session-id``; ``--approval-mode`` from
  ``[gemini] approval_mode``; the model endpoint from ``[gemini] base_url``
  (``GOOGLE_GEMINI_BASE_URL``; ``{agent}`` and ``{session}`` in it are the
  agent's name and session id, for a proxy that tells agents apart).
- hooks: the Gemini names of events and what cmux makes of them are its
  dialect in cmux/agents/adapters/events.py.
- transcript: ``$GEMINI_CLI_HOME/.gemini/tmp/<project>/chats/session-*-<first
  8 of the session id>.jsonl``; tokens per message id, each id once
  (``read_tokens``, read on from where cmux/agents/cost.py's cache left off).
- screen: its tool-permission dialog (``read_screen``); Enter takes the
  highlighted "1. Allow once", Escape picks "No, suggest changes (esc)".

docs/AGENTS.md has what was checked against the real CLI, and how.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cmux.agents.adapters import capabilities
from cmux.agents.adapters.base import Adapter, Launch, register, role_prompt
from cmux.errors import UsageError
from cmux.fsutil import atomic_write

if TYPE_CHECKING:
    from cmux.agents.cost import Tokens
    from cmux.agents.registry import Agent
    from cmux.agents.screen import Reading
    from cmux.config import Config, Profile

# The Gemini CLI's hook events cmux installs (PreCompress fires once per model
# request and means nothing to cmux; each hook costs a python start).
HOOK_EVENTS = (
    "SessionStart",
    "BeforeAgent",
    "BeforeTool",
    "AfterTool",
    "Notification",
    "AfterAgent",
    "SessionEnd",
)
APPROVAL_MODES = ("default", "auto_edit", "yolo", "plan")
DEFAULT_APPROVAL_MODE = "default"
DEFAULT_AUTH = "gemini-api-key"
INSTALL = "npm install -g @google/gemini-cli"

# What each role's Gemini CLI may run without asking (as Claude Code's ALLOW):
# cmux's tools, no broader than each tool lets that role do (the tools check
# the caller's role themselves). A policy rule's commandPrefix matches the
# start of the command.
ALLOW: dict[str, tuple[str, ...]] = {
    "supervisor": ("mailbox", "journal", "workers"),
    "worker": ("mailbox", "journal", "workers list"),
}


def home_dir(cfg: Config, name: str) -> Path:
    """The agent's GEMINI_CLI_HOME: cmux's own, under the data root."""
    return cfg.data.settings_dir / "gemini" / name


# Variables of cmux's own that the agent's shell commands (cmux's tools) and
# hooks need, besides those of agent_env: the CLI filters its children's
# environment down to an allow-list when GITHUB_SHA is set (or redaction is
# on, which also drops names with TOKEN in them), so they are listed as allowed.
KEPT = ("CMUX_SESSION_ID", "CMUX_INCARNATION", "CMUX_MEMORY", "TMUX_TMPDIR", "HOME")


def gemini_settings(
    section: dict[str, Any], hook_env: dict[str, str], keep: tuple[str, ...] = ()
) -> dict[str, object]:
    """The CLI's settings.json for one agent: no first-run question, nothing
    sent anywhere but the model endpoint (as far as settings can say), the
    model from ``[gemini] model``, and cmux's hooks. ``hook_env`` is added to
    every hook's environment; ``keep`` names the variables the CLI must pass
    to its shell commands and hooks even when it filters them (docs/AGENTS.md)."""
    cmd = shlex.join([sys.executable, "-m", "cmux", "hook"])
    hooks: dict[str, object] = {}
    for event in HOOK_EVENTS:
        hooks[event] = [
            {
                "matcher": "",
                "hooks": [
                    {
                        "type": "command",
                        "command": f"{cmd} {event} gemini",
                        "name": f"cmux-{event}",
                        "timeout": 30000,
                        "env": dict(hook_env),
                    }
                ],
            }
        ]
    settings: dict[str, object] = {
        "security": {
            "auth": {"selectedType": str(section.get("auth", DEFAULT_AUTH))},
            "folderTrust": {"enabled": False},
            "environmentVariableRedaction": {"allowed": sorted({*keep, *KEPT})},
        },
        "general": {"enableAutoUpdate": False, "enableAutoUpdateNotification": False},
        "privacy": {"usageStatisticsEnabled": False},
        "telemetry": {"enabled": False},
        "ui": {"hideTips": True, "hideBanner": True},
        "hooks": hooks,
    }
    if section.get("model"):
        settings["model"] = {"name": str(section["model"])}
    return settings


def policy(role: str) -> str:
    """The policy file (TOML) that lets ``role`` run cmux's tools unasked."""
    prefixes = ALLOW.get(role, ALLOW["worker"])
    listed = ", ".join(json.dumps(p) for p in prefixes)
    return (
        "# cmux's tools, as this agent's role may use them (written by cmux at each start).\n"
        "[[rule]]\n"
        'toolName = "run_shell_command"\n'
        f"commandPrefix = [{listed}]\n"
        'decision = "allow"\n'
        "priority = 100\n"
    )


def base_url(section: dict[str, Any], name: str, session_id: str) -> str | None:
    url = section.get("base_url")
    if not url:
        return None
    return str(url).replace("{agent}", name).replace("{session}", session_id)


class Gemini(Adapter):
    name = capabilities.GEMINI
    hook_events = HOOK_EVENTS
    # Command hooks were announced as a feature in January 2026 (0.26; an
    # assumption: not run with an older version); 0.61.0 is what the tier runs.
    hooks_since = "0.26.0"
    tested_version = "0.61.0"
    # `--resume <session id>` continues a conversation (checked with 0.61.0,
    # tests/e2e/test_gemini_resume.py); cmux picks the id (--session-id).
    resumes = True
    # Its Notification hook runs before the question is drawn (checked).
    hooks_announce_questions = True

    def launch(
        self,
        cfg: Config,
        *,
        name: str,
        role: str,
        profile: Profile,
        task: str,
        env: dict[str, str],
        resume_session: str | None = None,
        prompt: str | None = None,
        memory: bool = False,
    ) -> Launch:
        """``resume_session`` continues that conversation (``--resume ID``:
        the CLI finds its chat file under the project's ``tmp/<project>/chats``
        in the agent's GEMINI_CLI_HOME by the id, and keeps the id; no first
        prompt, the conversation has its task); else a new session with an
        id cmux picks. ``prompt`` replaces the task."""
        section = cfg.section("gemini")
        session_id = resume_session or str(uuid.uuid4())
        home = home_dir(cfg, name)
        gem = home / ".gemini"
        hook_env: dict[str, str] = {
            k: env[k] for k in ("CMUX_AGENT", "CMUX_HOME", "CMUX_ROLE") if k in env
        }
        if memory:
            env["CMUX_MEMORY"] = "1"
            hook_env["CMUX_MEMORY"] = "1"
        keep = tuple(k for k in env if k.startswith("CMUX_"))
        settings = gemini_settings(section, hook_env, keep)
        atomic_write(gem / "settings.json", json.dumps(settings, indent=1) + "\n")
        atomic_write(gem / "GEMINI.md", role_prompt(role))
        atomic_write(gem / "policies" / "cmux.toml", policy(role))
        mode = str(section.get("approval_mode", DEFAULT_APPROVAL_MODE))
        # --session-id of a session that exists is refused ("already
        # exists. Use --resume"), so a comeback names it with --resume only.
        which = "--resume" if resume_session else "--session-id"
        argv = [*shlex.split(profile.command), which, session_id]
        argv += ["--approval-mode", mode, *section.get("args", ())]
        first = None if resume_session else task if prompt is None else prompt
        if first:
            # A prompt that starts with "-" must not be read as an option.
            argv += [f"--prompt-interactive={first}"] if first.startswith("-") else [first]
        env = {
            **env,
            "CMUX_SESSION_ID": session_id,
            "GEMINI_CLI_HOME": str(home),
            "GEMINI_CLI_NO_RELAUNCH": "1",  # one node process, not a relaunched child
        }
        url = base_url(section, name, session_id)
        if url:
            env["GOOGLE_GEMINI_BASE_URL"] = url
        return Launch(argv=argv, env=env, session_id=session_id)

    def missing(self, profile: Profile, exe: str) -> UsageError:
        if not profile.builtin:
            return super().missing(profile, exe)
        return UsageError(
            f"the Gemini CLI is not installed ({exe!r} is not on PATH)",
            f"install it (`{INSTALL}`) or set [gemini] command in cmux.toml",
        )

    def install_hint(self, profile: Profile, exe: str) -> str:
        if not profile.builtin:
            return super().install_hint(profile, exe)
        return f"install the Gemini CLI: `{INSTALL}`, or set [gemini] command in cmux.toml"

    def transcript(self, agent: Agent) -> Path | None:
        if not agent.session_id:
            return None
        return guess_transcript(agent, agent.session_id)

    def read_tokens(
        self, path: Path, *, offset: int = 0, recent: list[str] | None = None, base: Tokens
    ) -> tuple[Tokens, int, list[str]]:
        more, end, seen = read_usage(path, offset=offset, recent=recent)
        return base + more, end, seen

    def dialogs(self) -> frozenset[str]:
        from cmux.agents.screen import Screen

        return frozenset({Screen.PERMISSION.value})

    def read_screen(self, text: str) -> Reading:
        return classify(text)

    def answer_key(self, reading: Reading, yes: bool) -> str | None:
        from cmux.agents.screen import Screen

        if reading.screen != Screen.PERMISSION:
            return None
        if yes:
            # Enter takes the highlighted choice: "1. Allow once" when it is.
            return "Enter" if reading.detail.startswith(_ALLOW_ONCE_MARK) else None
        return "Escape"  # "No, suggest changes (esc)"

    def typed_where(self, text: str, needle: str) -> str:
        return typed_where(text, needle)


GEMINI = register(Gemini())


# -- the transcript ---------------------------------------------------------------------


def guess_transcript(agent: Agent, session_id: str) -> Path | None:
    """Where the CLI writes the session's chat (for when no hook said)."""
    import os

    home = os.environ.get("CMUX_HOME")
    root = Path(home) if home else None
    if root is None:
        return None
    chats = root / "state" / "settings" / "gemini" / agent.name / ".gemini" / "tmp"
    try:
        return next(chats.glob(f"*/chats/session-*-{session_id[:8]}.jsonl"))
    except (StopIteration, OSError):
        return None


RECENT_IDS = 64  # message ids remembered across reads (cost.py keeps them)


def read_usage(
    path: Path, *, offset: int = 0, recent: list[str] | None = None
) -> tuple[Tokens, int, list[str]]:
    """Tokens in a chat transcript from byte ``offset``; returns them, the
    offset read up to (a partly written last line waits for next time) and
    the latest message ids counted.

    A ``gemini`` record carries ``tokens: {input, output, cached, thoughts,
    tool, total}``; the same message id is written more than once (first
    without, then with its tool calls, the same tokens), so an id counts once:
    its first record with tokens. ``input`` includes ``cached`` (the API's
    promptTokenCount): cmux's ``input`` is the uncached part, ``cache_read``
    the cached one; thoughts count as output."""
    from cmux.agents.cost import Tokens

    seen = list(recent or [])
    out = Tokens()
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            chunk = fh.read()
    except OSError:
        return out, offset, seen
    cut = chunk.rfind(b"\n")
    if cut < 0:
        return out, offset, seen
    for line in chunk[: cut + 1].splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if not isinstance(rec, dict) or rec.get("type") != "gemini":
            continue
        t, mid = rec.get("tokens"), str(rec.get("id") or "")
        if not isinstance(t, dict) or not mid or mid in seen:
            continue
        seen.append(mid)
        del seen[:-RECENT_IDS]
        cached = _num(t.get("cached"))
        out.input += max(_num(t.get("input")) - cached, 0)
        out.cache_read += cached
        out.output += _num(t.get("output")) + _num(t.get("thoughts"))
        out.messages += 1
    return out, offset + cut + 1, seen


def _num(v: Any) -> int:
    return v if isinstance(v, int) and v > 0 else 0


# -- the screen -------------------------------------------------------------------------

BOTTOM_LINES = 30
_QUESTION = re.compile(r"Allow execution of\b|Apply this change\?|Allow execution\?")
_OPTION = re.compile(r"^[│|\s]*(●)?\s*(\d)\.\s+(.+?)\s*(?:│\s*)?$")
_ALLOW_ONCE_MARK = "1. Allow once"
_RULE = re.compile(r"^\s*─{20,}\s*$")
_INPUT = re.compile(r"^\s*[>*!]\s")  # ">" (or "*" in yolo mode, "!" in shell mode)
_FOOTER = re.compile(r"^\s*workspace\b")
_BUSY = re.compile(r"\(esc to cancel, \d+[smh]")
_HOOKS_RUNNING = re.compile(r"Executing Hooks?: ")
_EXITED = re.compile(r"^\[cmux\] \S+ exited with code (-?\d+)\s*$")


def _lines(text: str) -> list[str]:
    lines = [ln.rstrip() for ln in text.replace("\r", "").split("\n")]
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


def _input_box(lines: list[str]) -> tuple[int, int, int] | None:
    """(rule, first, end): the input box's lines are ``lines[first:end]``,
    below the last rule and above the footer; None when none is drawn (a
    dialog takes its place). The conversation above shows past prompts with
    the same ``>`` mark, so only the box's place tells them apart."""
    rule = next((i for i in range(len(lines) - 1, -1, -1) if _RULE.match(lines[i])), None)
    if rule is None:
        return None
    end = next((i for i in range(rule + 1, len(lines)) if _FOOTER.match(lines[i])), len(lines))
    first = next((i for i in range(rule + 1, end) if _INPUT.match(lines[i])), None)
    return None if first is None else (rule, first, end)


def classify(text: str) -> Reading:
    """Read a captured Gemini CLI screen (``capture-pane -p``).

    The permission dialog: ``Allow execution of [Shell]?`` above numbered
    choices, the highlighted one marked ``●``; its detail starts with the
    highlighted choice (``1. Allow once``), then what it wants to run.
    Busy: a spinner line ending ``(esc to cancel, Ns)`` (the input box is
    drawn while busy too), unless it says hooks are running (``Executing
    Hook: cmux-Notification``): then nothing is read from it. Idle: the input
    box under the last rule.
    """
    from cmux.agents.screen import Reading, Screen

    lines = _lines(text)
    if not lines:
        return Reading(Screen.UNKNOWN)
    if _EXITED.match(lines[-1].strip()):
        return Reading(Screen.EXITED, detail=lines[-1].strip())
    bottom = lines[-BOTTOM_LINES:]
    box = _input_box(bottom)
    start = box[0] if box else 0  # a dialog answered long ago is above the box
    q = next(
        (i for i in range(len(bottom) - 1, start - 1, -1) if _QUESTION.search(bottom[i])), None
    )
    if q is not None and box is None:
        options: dict[int, str] = {}
        chosen = ""
        for ln in bottom[q + 1 :]:
            m = _OPTION.match(ln)
            if m:
                options[int(m.group(2))] = m.group(3)
                if m.group(1) and not chosen:
                    chosen = f"{m.group(2)}. {m.group(3)}"
        if 1 in options:
            asks = [ln.strip(" │|") for ln in bottom[:q]]
            what = next((a for a in reversed(asks) if a.startswith("? ")), "")
            detail = " | ".join(x for x in (chosen, what[2:].strip()) if x)
            return Reading(Screen.PERMISSION, options, detail=detail)
    spinner = [ln for ln in bottom if _BUSY.search(ln)]
    if any(_HOOKS_RUNNING.search(ln) for ln in spinner):
        # cmux's own hooks are running (the Notification of a question about
        # to show, the AfterAgent of a turn ending): the hook, not the
        # screen, says what comes next.
        return Reading(Screen.UNKNOWN)
    if spinner:
        return Reading(Screen.BUSY)
    if box is not None:
        return Reading(Screen.IDLE)
    return Reading(Screen.UNKNOWN)


def typed_where(text: str, needle: str) -> str:
    """Where typed text ending in ``needle`` is: ``box`` (still in the input
    box), ``sent`` (in the conversation above it, not in the box) or
    ``unknown`` (no input box: a dialog took its place, or not drawn yet)."""
    lines = _lines(text)
    box = _input_box(lines[-BOTTOM_LINES:])
    if box is None or not needle:
        return "unknown"
    offset = max(len(lines) - BOTTOM_LINES, 0)
    rule, first, end = (offset + i for i in box)
    if any(needle in ln for ln in lines[first:end]):
        return "box"
    return "sent" if any(needle in ln for ln in lines[:rule]) else "unknown"
