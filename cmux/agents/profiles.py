"""Agent profiles: which program an agent runs, and through which adapter
(cmux/agents/adapters/: how each program is launched).

- ``claude``: the real Claude Code CLI (cmux/agents/adapters/claude.py).
- ``codex``: the Codex CLI (cmux/agents/adapters/codex.py, ``[codex]``).
- ``gemini``: the Gemini CLI (cmux/agents/adapters/gemini.py, ``[gemini]``).
- ``demo``: a small built-in agent that needs no account (cmux.agents.demo).
- ``shell``: an interactive shell with the agent's environment.
- any ``[profiles.NAME]`` in cmux.toml (``adapter = ...`` says which adapter;
  a plain program by default); ``--command`` for a one-off command.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from cmux import identity
from cmux.agents.adapters import base as adapters
from cmux.agents.adapters.base import Launch, role_prompt
from cmux.agents.adapters.claude import ALLOW, HOOK_EVENTS, claude_settings
from cmux.config import Config, Profile
from cmux.errors import UsageError
from cmux.settings_schema import BUILTIN_PROFILES

BUILTIN = BUILTIN_PROFILES  # the names the schema accepts for [cmux] agent
# Moved to cmux/agents/adapters/ (Launch, role_prompt: base; the rest: claude);
# named here for the callers that import them from this module.
__all__ = ["ALLOW", "BUILTIN", "HOOK_EVENTS", "Launch", "claude_settings", "role_prompt"]


def tools_dir() -> Path:
    """The directory of tools/ agents call; materialised if cmux is installed."""
    repo_tools = Path(__file__).resolve().parents[2] / "tools"
    if (repo_tools / "mailbox").is_file():
        return repo_tools
    raise UsageError("cmux's tools/ directory is missing", "reinstall cmux from its repository")


def resolve(cfg: Config, name: str | None) -> Profile:
    name = name or cfg.agent
    if name in cfg.profiles:
        return cfg.profiles[name]
    if name == "claude":
        return Profile("claude", cfg.claude_command, "arg", builtin=True)
    if name in ("codex", "gemini"):
        # The adapter is named after its program; its section names the command.
        command = str(cfg.section(name).get("command") or name)
        return Profile(name, command, "arg", builtin=True)
    if name == "demo":
        return Profile("demo", shlex.join([sys.executable, "-m", "cmux.agents.demo"]), "none", True)
    if name == "shell":
        shell = os.environ.get("SHELL") or "bash"
        if os.path.basename(shell) == "zsh":
            # cmux's notices reach a shell as `#` comments (deliver.render):
            # zsh reads them as comments only with this option.
            shell = shlex.join([shell, "-o", "interactivecomments"])
        return Profile("shell", shell, "none", builtin=True)
    known = ", ".join([*BUILTIN, *sorted(cfg.profiles)])
    raise UsageError(f"unknown agent profile {name!r}", f"use one of: {known}")


def require_binary(profile: Profile) -> None:
    """Refuse, before any window exists, a profile whose program is missing."""
    import shutil

    exe = shlex.split(profile.command)[0] if profile.command else ""
    if exe and shutil.which(exe):
        return
    raise adapters.for_profile(profile).missing(profile, exe)


def agent_env(cfg: Config, name: str, role: str) -> dict[str, str]:
    """The environment cmux gives every agent; a new identity token each time
    (cmux/identity.py: only its hash is stored)."""
    tools = str(tools_dir())
    return {
        "CMUX_AGENT": name,
        "CMUX_AGENT_TOKEN": identity.issue(cfg.data, name),
        "CMUX_ROLE": role,
        "CMUX_HOME": str(cfg.data.root),
        "CMUX_PROJECT": str(cfg.project_root),
        "CMUX_SESSION": cfg.session_name,
        "CMUX_TMUX_SOCKET": cfg.socket_name,
        "CMUX_PYTHON": sys.executable,
        "CMUX_TASK_FILE": str(cfg.data.context_file(name)),
        "CMUX_TOOLS": tools,
    }


def build_launch(
    cfg: Config,
    *,
    name: str,
    role: str,
    profile: Profile | None,
    task: str,
    command: str | None = None,
    resume_session: str | None = None,
    prompt: str | None = None,
    memory: bool = False,
) -> Launch:
    """What to run for one agent: ``command`` a one-off command line, else
    ``profile``'s adapter says (cmux/agents/adapters/). Claude Code's takes
    ``resume_session`` (continue that conversation), ``prompt`` (the first
    prompt instead of the task) and ``memory`` (the journal's memory for a
    worker too); the others ignore them."""
    env = agent_env(cfg, name, role)
    if command is not None:
        return Launch(argv=["sh", "-c", command], env=env)
    assert profile is not None
    return adapters.for_profile(profile).launch(
        cfg,
        name=name,
        role=role,
        profile=profile,
        task=task,
        env=env,
        resume_session=resume_session,
        prompt=prompt,
        memory=memory,
    )
