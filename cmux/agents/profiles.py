"""Agent profiles: how each kind of agent is started.

- ``claude``: the real Claude Code CLI; role via --append-system-prompt, hooks
  via --settings (never the user's own settings), a --session-id per
  incarnation, the permission mode from config, the task as first prompt.
- ``demo``: a small built-in agent that needs no account (cmux.agents.demo).
- ``shell``: an interactive shell with the agent's environment.
- any ``[profiles.NAME]`` in cmux.toml; ``--command`` for a one-off command.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from cmux import identity
from cmux.agents import claude_hooks
from cmux.config import Config, Profile
from cmux.errors import UsageError
from cmux.fsutil import atomic_write
from cmux.settings_schema import BUILTIN_PROFILES

BUILTIN = BUILTIN_PROFILES  # the names the schema accepts for [cmux] agent

# Every agent command runs under this wrapper: the pane stays (remain-on-exit)
# and its exit status is the agent's, 128+N when a signal ended the agent.
# tmux gives a new pane the PATH of the client that asked for it, so tools/ is
# put in front here rather than through `-e PATH=...`.
_WRAPPER = (
    'PATH="$CMUX_TOOLS:$PATH"; export PATH; "$@"; code=$?; '
    'printf "\\n[cmux] %s exited with code %s\\n" "$CMUX_AGENT" "$code"; exit $code'
)


@dataclass
class Launch:
    """What to run in the agent's pane."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    type_task: str | None = None  # text the router types in once it is ready
    session_id: str | None = None

    def wrapped(self) -> list[str]:
        return ["sh", "-c", _WRAPPER, "cmux-agent", *self.argv]


def role_prompt(role: str) -> str:
    # A path beside this package, not importlib.resources (~10 ms to import
    # on every spawn); the roles ship as package data next to the code.
    return (Path(__file__).resolve().parents[1] / "roles" / f"{role}.md").read_text(
        encoding="utf-8"
    )


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
    if profile.name == "claude":
        raise UsageError(
            f"Claude Code is not installed ({exe!r} is not on PATH)",
            "install it (`npm install -g @anthropic-ai/claude-code`) or set [claude] command "
            "in cmux.toml; `--agent demo` runs without an account",
        )
    raise UsageError(
        f"the program of profile {profile.name!r} was not found: {exe!r}",
        f"install it, or fix [profiles.{profile.name}] command in cmux.toml",
    )


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
    """What to run for one agent. For the built-in Claude profile only:
    ``resume_session`` continues that conversation (``--resume``, no first
    prompt: the conversation has its task); ``prompt`` replaces the task as
    the first prompt; ``memory`` has the SessionStart hook give a worker the
    journal's memory too (the supervisor always gets it)."""
    env = agent_env(cfg, name, role)
    if command is not None:
        return Launch(argv=["sh", "-c", command], env=env)
    assert profile is not None
    if profile.name == "claude" and profile.builtin:
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
    argv = shlex.split(profile.command)
    if profile.name == "demo" and profile.builtin:
        argv += ["--role", role]
    launch = Launch(argv=argv, env=env)
    if task and profile.task == "arg":
        launch.argv.append(task)
    elif task and profile.task == "type":
        launch.type_task = task
    return launch


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


HOOK_EVENTS = claude_hooks.EVENTS

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
