"""One exception root for everything cmux reports to a person.

Each error carries its own message and, where there is one, what to do about
it (``hint``). The CLI maps them to exit codes at the edge: 1 for errors, 2
for usage mistakes. The core never prints.
"""

from __future__ import annotations


class CmuxError(Exception):
    """Base of every error cmux raises on purpose."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class UsageError(CmuxError):
    """The command was called wrongly (bad name, missing option)."""

    exit_code = 2


class ConfigError(CmuxError):
    """cmux.toml or the environment is wrong."""


class NotInitialized(CmuxError):
    """No cmux project here."""


class TmuxError(CmuxError):
    """tmux refused a command; ``stderr`` holds its words."""

    def __init__(self, message: str, hint: str | None = None, stderr: str = "") -> None:
        super().__init__(message, hint)
        self.stderr = stderr


class TmuxNotRunning(TmuxError):
    """The private tmux server of this project is not running."""


class TmuxTargetMissing(TmuxError):
    """The pane, window or session named does not exist (any more)."""


class SessionError(CmuxError):
    """Starting or stopping the cmux session went wrong."""


class AlreadyRunning(SessionError):
    """A second ``cmux start`` for the same project."""


class NotRunning(SessionError):
    """The command needs a running session and there is none."""


class AgentError(CmuxError):
    """Spawning, killing or addressing an agent went wrong."""


class UnknownAgent(AgentError):
    """No agent of that name."""


class DuplicateAgent(AgentError, UsageError):
    """An agent of that name is already running."""

    exit_code = 2


class InvalidName(AgentError, UsageError):
    """The agent name cannot be used."""

    exit_code = 2


class InvalidTransition(AgentError):
    """A state change the state machine does not allow."""


class MailError(CmuxError):
    """Sending, reading or delivering mail went wrong."""


class UnknownRecipient(MailError):
    """The recipient has no mailbox."""


class EmptyMessage(MailError, UsageError):
    """Nothing to send."""

    exit_code = 2


class MessageTooLarge(MailError):
    """The body is over the size limit and cannot be stored."""


class InvalidSender(MailError, UsageError):
    """The sender's name (``$CMUX_AGENT``) or a ``reply_to`` id breaks the schema."""

    exit_code = 2


class MessageLoop(MailError):
    """A reply past ``[mail] depth_limit``: it went to deadletter, not to its recipient."""


class StorageError(CmuxError):
    """The disk refused a write (full, read-only, permissions)."""


class GitError(CmuxError):
    """A git operation failed; ``stderr`` holds git's words when git said any."""

    def __init__(self, message: str, hint: str | None = None, stderr: str = "") -> None:
        super().__init__(message, hint)
        self.stderr = stderr


class NotAGitRepo(GitError):
    """cmux needs a git repository and this is not one."""


class RefNotFound(GitError):
    """The name (``ref``) does not resolve to a commit."""

    def __init__(self, message: str, hint: str | None = None, ref: str = "") -> None:
        super().__init__(message, hint)
        self.ref = ref


class HostError(CmuxError):
    """Another host ([hosts.NAME]) could not be reached or refused what was asked."""

    def __init__(self, message: str, hint: str | None = None, host: str = "") -> None:
        super().__init__(message, hint)
        self.host = host


class HostUnreachable(HostError):
    """SSH could not reach the host (no route, refused, timed out)."""


class HostAuthFailed(HostError):
    """The host answered but did not let cmux's SSH key in."""


class RemoteCommandFailed(HostError):
    """A command run on the host over SSH failed; ``stderr`` holds its words."""

    def __init__(
        self, message: str, hint: str | None = None, host: str = "", stderr: str = ""
    ) -> None:
        super().__init__(message, hint, host)
        self.stderr = stderr


class ClusterError(CmuxError):
    """The cluster (NATS JetStream, docs/CLUSTER.md) refused or did not answer."""


class NatsUnavailable(ClusterError):
    """No NATS server answered at the configured address (or it lost us)."""


class NatsTimeout(ClusterError):
    """NATS did not answer within the time allowed (a publish ack, a KV write)."""
