"""Claude Code as a cmux adapter.

- launch: role via --append-system-prompt, hooks via --settings (a file of
  cmux's own per agent, never the user's settings), a --session-id per
  incarnation (--resume to continue one), the permission mode from config,
  the task as first prompt;
- hooks: every event calls `cmux hook EVENT`; what each means for the
  agent's state is cmux/agents/hookstate.py, the mail handed over at Stop
  cmux/delivery/handover.py;
- transcript: ~/.claude/projects/<dir>/<session id>.jsonl (tokens in
  cmux/agents/cost.py, read receipts from UserPromptSubmit and Stop);
- screen: its dialogs and their answer keys are cmux/agents/screen.py;
  Escape interrupts it.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from cmux.agents import hookstate
from cmux.agents.adapters import capabilities
from cmux.agents.adapters.base import Adapter, Launch, register, role_prompt
from cmux.errors import UsageError
from cmux.fsutil import atomic_write

if TYPE_CHECKING:
    from cmux.agents.registry import Agent
    from cmux.config import Config, Profile

HOOK_EVENTS = hookstate.EVENTS

# What each role's Claude Code may run without a prompt: cmux's tools, no
# broader than what each tool lets that role do (the tools check the caller's
# role themselves, cmux/agenttools/workers.py). Claude Code matches a rule
# against every part of a compound command: `mailbox send x "$(cmd)"`, `...;
# cmd`, a redirection or an `X=y` prefix still asks (docs/CLAUDE.md).
ALLOW: dict[str, tuple[str, ...]] = {
    "supervisor": ("Bash(mailbox:*)", "Bash(journal:*)", "Bash(workers:*)"),
    "worker": ("Bash(mailbox:*)", "Bash(journal:*)", "Bash(workers list:*)"),
}


def claude_settings(
    permission_mode: str = "acceptEdits", role: str = "worker"
) -> dict[str, object]:
    """Claude Code settings for one agent (a file given with --settings; the
    user's own settings are never touched): cmux's hooks, every one calling
    `cmux hook EVENT`; permission for cmux's tools as ``role`` may use them
    (an unknown role gets a worker's); and, when cmux.toml asks for
    bypassPermissions, no second question about it in the pane."""
    cmd = shlex.join([sys.executable, "-m", "cmux", "hook"])
    hooks: dict[str, object] = {}
    for event in HOOK_EVENTS:
        entry: dict[str, object] = {
            "hooks": [{"type": "command", "command": f"{cmd} {event}", "timeout": 30}]
        }
        if event == "PreToolUse":
            entry["matcher"] = "*"
        hooks[event] = [entry]
    allow = list(ALLOW.get(role, ALLOW["worker"]))
    settings: dict[str, object] = {"hooks": hooks, "permissions": {"allow": allow}}
    if permission_mode == "bypassPermissions":
        settings["skipDangerousModePermissionPrompt"] = True
    return settings


def _claude_launch(
    cfg: Config,
    *,
    name: str,
    role: str,
    task: str,
    env: dict[str, str],
    binary: str,
    resume_session: str | None = None,
) -> Launch:
    # A resumed conversation keeps its session id (Claude Code reuses it
    # unless told --fork-session), so its transcript stays where it was.
    session_id = resume_session or str(uuid.uuid4())
    mode = cfg.claude_permission_mode
    settings = cfg.data.settings_dir / f"{name}.json"
    atomic_write(settings, json.dumps(claude_settings(mode, role), indent=1) + "\n")
    argv = [*shlex.split(binary)]
    argv += ["--append-system-prompt", role_prompt(role)]
    session = ["--resume", session_id] if resume_session else ["--session-id", session_id]
    argv += ["--settings", str(settings), *session]
    argv += ["--permission-mode", mode, *cfg.claude_args]
    if task and not resume_session:
        # A task that starts with "-" must not be read as an option.
        argv += ["--", task] if task.startswith("-") else [task]
    env = {**env, "CMUX_SESSION_ID": session_id}
    if mode == "bypassPermissions" and _is_root():
        # As root Claude Code refuses to bypass permissions outside a sandbox;
        # whoever set this mode in cmux.toml has said the machine is one.
        env["IS_SANDBOX"] = "1"
    return Launch(argv=argv, env=env, session_id=session_id)


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


# -- the transcript ---------------------------------------------------------------------


def claude_config_dir() -> Path:
    env = os.environ.get("CLAUDE_CONFIG_DIR")
    return Path(env) if env else Path.home() / ".claude"


def project_dir_name(cwd: str) -> str:
    """Claude Code's folder name for a working directory under projects/."""
    return re.sub(r"[^A-Za-z0-9]", "-", cwd)


def guess_transcript(session_id: str, cwd: str | None) -> Path | None:
    """Where Claude Code writes a session's transcript (for agents whose hooks
    never reported it)."""
    projects = claude_config_dir() / "projects"
    if cwd:
        path = projects / project_dir_name(cwd) / f"{session_id}.jsonl"
        if path.exists():
            return path
    try:
        return next(projects.glob(f"*/{session_id}.jsonl"))
    except (StopIteration, OSError):
        return None


class Claude(Adapter):
    name = capabilities.CLAUDE
    hook_events = HOOK_EVENTS
    resumes = True
    # StopFailure (the unable states) is the newest event cmux relies on.
    hooks_since = "2.1.0"
    tested_version = "2.1.197"

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
        """``resume_session`` continues that conversation (``--resume``, no
        first prompt: the conversation has its task); ``prompt`` replaces the
        task as the first prompt; ``memory`` has the SessionStart hook give a
        worker the journal's memory too (the supervisor always gets it)."""
        if memory:
            env["CMUX_MEMORY"] = "1"
        return _claude_launch(
            cfg,
            name=name,
            role=role,
            task=task if prompt is None else prompt,
            env=env,
            binary=profile.command,
            resume_session=resume_session,
        )

    def missing(self, profile: Profile, exe: str) -> UsageError:
        if not profile.builtin:  # a [profiles.X] entry's command
            return super().missing(profile, exe)
        return UsageError(
            f"Claude Code is not installed ({exe!r} is not on PATH)",
            "install it (`npm install -g @anthropic-ai/claude-code`) or set [claude] command "
            "in cmux.toml; `--agent demo` runs without an account",
        )

    def install_hint(self, profile: Profile, exe: str) -> str:
        if not profile.builtin:
            return super().install_hint(profile, exe)
        return (
            "install Claude Code: `npm install -g @anthropic-ai/claude-code`, or set"
            " [claude] command in cmux.toml; `--agent demo` needs no account"
        )

    def transcript(self, agent: Agent) -> Path | None:
        if not agent.session_id:
            return None
        return guess_transcript(agent.session_id, agent.cwd)


CLAUDE = register(Claude())
