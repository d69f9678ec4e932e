"""The Codex CLI (`@openai/codex`) as a cmux adapter. docs/AGENTS.md has the
facts this rests on, each checked against the real CLI or marked otherwise.

- launch: a CODEX_HOME of cmux's own per agent (``state/settings/codex/<name>``
  under the data root, never ``~/.codex``) holding ``config.toml`` (the model
  provider of ``[codex]``: base_url, env_key, model; the role prompt as
  ``developer_instructions``; hooks on; the project trusted) and
  ``hooks.json`` (every event calls ``python -m cmux hook EVENT codex``);
  ``--dangerously-bypass-hook-trust`` (cmux wrote those hooks itself, and the
  flag keeps the shared background server away), the approval policy and the
  sandbox of ``[codex]``, the task as the first prompt. Codex picks its own
  session id: the SessionStart hook reports it with the transcript path.
- hooks: what each native event means is its dialect in
  cmux/agents/adapters/events.py; turn end hands mail over with
  ``{"decision": "block", "reason": MAIL}`` as for Claude Code.
- transcript: ``$CODEX_HOME/sessions/YYYY/MM/DD/rollout-*-<session>.jsonl``;
  tokens are its ``token_count`` events (``read_tokens``).
- screen: its approval prompt and keys (``y`` approves, Esc denies) are
  cmux/agents/adapters/codex_screen.py.

Invariant: nothing here reads or writes the user's own Codex files.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
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
    from cmux.paths import DataRoot

# The hook events cmux installs, as Codex names them (docs/AGENTS.md, "Hooks").
HOOK_EVENTS = (
    "SessionStart",
    "UserPromptSubmit",
    "PreToolUse",
    "PermissionRequest",
    "PostToolUse",
    "Stop",
    "SessionEnd",
)
PROVIDER = "cmux"
DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_ENV_KEY = "OPENAI_API_KEY"
DEFAULT_APPROVAL = "on-request"
DEFAULT_SANDBOX = "workspace-write"
INSTALL = "npm install -g @openai/codex"


def codex_home(data: DataRoot, name: str) -> Path:
    """The agent's CODEX_HOME: cmux's own, under the data root."""
    return data.settings_dir / "codex" / name


def toml_str(value: str) -> str:
    """A TOML basic string (JSON's escapes are all valid TOML ones)."""
    return json.dumps(value)


def toml_list(values: list[str]) -> str:
    return "[" + ", ".join(toml_str(v) for v in values) + "]"


def hooks_json(python: str = sys.executable) -> dict[str, Any]:
    """hooks.json: every event calls ``python -m cmux hook EVENT codex``."""
    cmd = shlex.join([python, "-m", "cmux", "hook"])
    hooks = {
        event: [{"hooks": [{"type": "command", "command": f"{cmd} {event} codex", "timeout": 30}]}]
        for event in HOOK_EVENTS
    }
    return {"hooks": hooks}


def config_toml(
    section: dict[str, Any],
    *,
    role: str,
    trusted: list[str],
    writable: list[str],
    token: str,
) -> str:
    """config.toml for one agent, from ``[codex]`` (``section``).

    ``trusted``: project folders Codex must not ask about; ``writable``: more
    folders its sandbox may write (the data root: the mailbox); ``token``:
    the agent's identity token, which Codex's default environment filter
    (names with TOKEN, KEY or SECRET) would keep from the commands it runs.
    Commands run in a non-login shell: a login shell reads /etc/profile,
    which resets PATH and loses cmux's tools/."""
    base_url = str(section.get("base_url") or DEFAULT_BASE_URL)
    env_key = str(section.get("env_key") or DEFAULT_ENV_KEY)
    lines = []
    if section.get("model"):
        lines.append(f"model = {toml_str(str(section['model']))}")
    lines += [
        f"model_provider = {toml_str(PROVIDER)}",
        "check_for_update_on_startup = false",
        "allow_login_shell = false",
        f"developer_instructions = {toml_str(role_prompt(role))}",
        "",
        f"[model_providers.{PROVIDER}]",
        'name = "cmux: [codex] in cmux.toml"',
        f"base_url = {toml_str(base_url)}",
        'wire_api = "responses"',
        f"env_key = {toml_str(env_key)}",
        "",
        "[features]",
        "hooks = true",
        "",
        "[analytics]",
        "enabled = false",
        "",
        "[shell_environment_policy]",
        f"set = {{ CMUX_AGENT_TOKEN = {toml_str(token)} }}",
        "",
        "[sandbox_workspace_write]",
        f"writable_roots = {toml_list(writable)}",
    ]
    for path in dict.fromkeys(trusted):
        lines += ["", f"[projects.{toml_str(path)}]", 'trust_level = "trusted"']
    return "\n".join(lines) + "\n"


def worktree_git_dirs(worktree: Path) -> list[str]:
    """What a commit in the git worktree ``worktree`` writes outside it: its
    own git dir (``.git/worktrees/<name>``: index, HEAD, logs) and the
    repository's objects, refs and logs. Codex's workspace-write sandbox keeps
    every ``.git`` read-only (checked: `git commit` in a worker's worktree
    failed with "Read-only file system"), so these are made writable roots for
    a worktree worker, whose branch the merge queue takes. Not the
    repository's hooks or config: what runs outside the sandbox stays out of
    reach. [] when ``worktree`` is not a worktree (its ``.git`` no file)."""
    try:
        text = (worktree / ".git").read_text(encoding="utf-8")
    except (OSError, UnicodeError):
        return []
    if not text.startswith("gitdir:"):
        return []
    gitdir = (worktree / text.split(":", 1)[1].strip()).resolve()
    try:
        common = (gitdir / (gitdir / "commondir").read_text().strip()).resolve()
    except OSError:
        common = gitdir.parent.parent  # <repo>/.git/worktrees/<name>
    return [str(gitdir), *(str(common / d) for d in ("objects", "refs", "logs"))]


def _codex_launch(
    cfg: Config,
    *,
    name: str,
    role: str,
    task: str,
    env: dict[str, str],
    binary: str,
    resume_session: str | None = None,
) -> Launch:
    section = cfg.section("codex")
    home = codex_home(cfg.data, name)
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    root = str(cfg.project_root)
    text = config_toml(
        section,
        role=role,
        trusted=[root, str(cfg.data.worktree(name))],
        writable=[str(cfg.data.root), *worktree_git_dirs(cfg.data.worktree(name))],
        token=env.get("CMUX_AGENT_TOKEN", ""),
    )
    atomic_write(home / "config.toml", text)
    atomic_write(home / "hooks.json", json.dumps(hooks_json(), indent=1) + "\n")
    # `codex resume SESSION_ID` takes the same options as `codex` (checked
    # with 0.171.0: --help, and the e2e tier) and finds the rollout under
    # CODEX_HOME/sessions by its id; the conversation has its task already.
    argv = [*shlex.split(binary), *(["resume"] if resume_session else [])]
    argv += ["--no-alt-screen", "--dangerously-bypass-hook-trust"]
    argv += ["--ask-for-approval", str(section.get("approval_policy") or DEFAULT_APPROVAL)]
    argv += ["--sandbox", str(section.get("sandbox") or DEFAULT_SANDBOX)]
    argv += [str(a) for a in section.get("args", ())]
    if resume_session:
        argv += ["--", resume_session]
    elif task:
        # A task that starts with "-" must not be read as an option.
        argv += ["--", task] if task.startswith("-") else [task]
    return Launch(argv=argv, env={**env, "CODEX_HOME": str(home)}, session_id=resume_session)


# -- the transcript ----------------------------------------------------------------------


def _count(v: Any) -> int:
    return v if isinstance(v, int) and v > 0 else 0


def usage_tokens(total: dict[str, Any], messages: int) -> Tokens:
    """cmux's Tokens from Codex's ``total_token_usage``. OpenAI counts cached
    input inside ``input_tokens`` (Claude does not): here ``input`` is the
    uncached part, so ``Tokens.total`` is Codex's ``total_tokens`` (plus any
    cache writes)."""
    from cmux.agents.cost import Tokens

    cached = _count(total.get("cached_input_tokens"))
    return Tokens(
        input=max(_count(total.get("input_tokens")) - cached, 0),
        output=_count(total.get("output_tokens")),
        cache_creation=_count(total.get("cache_write_input_tokens")),
        cache_read=cached,
        messages=messages,
    )


_TOKEN_COUNT = re.compile(rb'"type"\s*:\s*"token_count"')


def read_rollout(
    path: Path, *, offset: int = 0, recent: list[str] | None = None, base: Tokens | None = None
) -> tuple[Tokens, int, list[str]]:
    """The session's tokens after reading ``path`` from byte ``offset`` on.

    Each ``token_count`` event carries the running sum of the whole session
    (``info.total_token_usage``): the last one read wins, and ``base`` (what
    was known up to ``offset``) stands when the new part has none. A partly
    written last line is left for next time."""
    from cmux.agents.cost import Tokens

    known = base if base is not None else Tokens()
    seen = list(recent or [])
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            chunk = fh.read()
    except FileNotFoundError:
        return known, offset, seen
    end = chunk.rfind(b"\n")
    if end < 0:
        return known, offset, seen
    latest: dict[str, Any] | None = None
    events = 0
    for raw in chunk[: end + 1].splitlines():
        if not _TOKEN_COUNT.search(raw):
            continue  # most lines: no JSON parse
        try:
            entry = json.loads(raw)
        except ValueError:
            continue
        payload = entry.get("payload") if isinstance(entry, dict) else None
        if not isinstance(payload, dict) or payload.get("type") != "token_count":
            continue
        info = payload.get("info")
        total = info.get("total_token_usage") if isinstance(info, dict) else None
        if isinstance(total, dict):
            latest = total
            events += 1
    if latest is None:
        return known, offset + end + 1, seen
    return usage_tokens(latest, known.messages + events), offset + end + 1, seen


# -- the adapter -------------------------------------------------------------------------


class Codex(Adapter):
    name = capabilities.CODEX
    hook_events = HOOK_EVENTS
    # `cmux doctor`: hooks are older (`codex_hooks`, 0.11x), but cmux needs
    # the TUI to honour --dangerously-bypass-hook-trust at start
    # (openai/codex#24317, merged after 0.132.0 came out). docs/AGENTS.md.
    hooks_since = "0.133.0"
    tested_version = "0.171.0"
    # `codex resume <session id>` continues a conversation (checked with
    # 0.171.0, tests/e2e/test_codex_resume.py): the id is the one its hooks
    # report (Codex picks it), its rollout stays in the agent's CODEX_HOME.
    resumes = True

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
        """``resume_session`` continues that conversation (``codex resume ID``,
        no first prompt: the conversation has its task); ``prompt`` replaces
        the task as the first prompt; ``memory`` has the SessionStart hook
        give a worker the journal's memory too."""
        if memory:
            env["CMUX_MEMORY"] = "1"
        return _codex_launch(
            cfg,
            name=name,
            role=role,
            task=task if prompt is None else prompt,
            env=env,
            binary=profile.command,
            resume_session=resume_session,
        )

    def missing(self, profile: Profile, exe: str) -> UsageError:
        if not profile.builtin:
            return super().missing(profile, exe)
        return UsageError(
            f"the Codex CLI is not installed ({exe!r} is not on PATH)",
            f"install it (`{INSTALL}`) or set [codex] command in cmux.toml",
        )

    def install_hint(self, profile: Profile, exe: str) -> str:
        if not profile.builtin:
            return super().install_hint(profile, exe)
        return f"install the Codex CLI: `{INSTALL}`, or set [codex] command in cmux.toml"

    def transcript(self, agent: Agent) -> Path | None:
        """None: Codex picks its session id, so only a hook can say where its
        transcript is, and every hook does (``transcript_path``)."""
        return None

    def idle_ends_start(self, agent: Agent) -> bool:
        """Codex runs its SessionStart hook with the first turn, not at start
        (checked, 0.171.0: no hook while a supervisor without a task sat at
        its composer, nor after ``codex resume``), so an agent launched with
        no first prompt (a supervisor; a resumed conversation) is up when its
        composer shows. A fresh comeback has one (the notice of why)."""
        return agent.resume == "conversation" or (not agent.task and agent.resume != "fresh")

    def read_tokens(
        self, path: Path, *, offset: int = 0, recent: list[str] | None = None, base: Tokens
    ) -> tuple[Tokens, int, list[str]]:
        return read_rollout(path, offset=offset, recent=recent, base=base)

    def dialogs(self) -> frozenset[str]:
        from cmux.agents.adapters import codex_screen

        return codex_screen.DIALOG_VALUES

    def read_screen(self, text: str) -> Reading:
        from cmux.agents.adapters import codex_screen

        return codex_screen.classify(text)

    def typed_where(self, text: str, needle: str) -> str:
        from cmux.agents.adapters import codex_screen

        return codex_screen.typed_where(text, needle)

    def describe(self, reading: Reading) -> str:
        from cmux.agents.adapters import codex_screen

        return codex_screen.describe(reading)

    def answer_key(self, reading: Reading, yes: bool) -> str | None:
        from cmux.agents.adapters import codex_screen

        return codex_screen.answer_key(reading, yes)


CODEX = register(Codex())
