"""Who is calling: an agent's name, bound to a secret cmux gave it at spawn.

At spawn cmux gives every agent two variables: ``CMUX_AGENT`` (its name) and
``CMUX_AGENT_TOKEN`` (32 random bytes, hex, new for every incarnation). Only
the token's sha256 is kept, in ``state/tokens/<name>`` (mode 0600), so
reading the data root does not reveal a token. Invariants:

- ``caller`` returns ``human`` or the name of an agent whose token the
  process presented; anything else raises ``IdentityError`` (and is recorded
  as a ``refused`` event with the pane and pid that tried).
- ``human`` is a process without ``CMUX_AGENT`` and without a token; a
  process in a live agent's pane of this project's tmux server is not human.
- ``CMUX_AGENT`` is checked as a name (``paths.valid_name``, not a reserved word)
  before it is used anywhere, so it never builds a path or a header.

What this protects against: an agent that sets ``CMUX_AGENT`` to another name,
by mistake or because a prompt told it to, and a `CMUX_AGENT=` left over in a
shell. What it does not: every agent runs as the same unix user, so a process
that sets out to can read another agent's token from ``/proc/<pid>/environ``,
or unset every variable (``env -i``) and pass for the person. The boundary
against a hostile program of the same user is the operating system (another
user, a container), not cmux. mailbox/README.md says the same to clients.

Imported on the send path: only ``os`` and the built-in sha256 (not
hashlib, whose OpenSSL costs ~4 ms), and the registry only when a process
claims to be the person from inside tmux.
"""

from __future__ import annotations

import os

from cmux.errors import CmuxError
from cmux.paths import DEADLETTER, HUMAN, DataRoot, valid_name

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

NAME_ENV = "CMUX_AGENT"
TOKEN_ENV = "CMUX_AGENT_TOKEN"
CMUX = "cmux"  # cmux's own notices: a sender only cmux's code chooses

RESERVED = frozenset(
    {HUMAN, DEADLETTER, "monitor", "all", CMUX, "router", "rescue", "tmp", "new", "cur"}
)


class IdentityError(CmuxError):
    """A process claims a name it cannot prove."""


def token_file(data: DataRoot, name: str) -> str:
    return os.path.join(data.state_path, "tokens", name)


def _digest(token: str) -> str:
    try:  # the built-in module: hashlib loads OpenSSL's _hashlib, ~4 ms of every send
        from _sha256 import sha256
    except ImportError:  # pragma: no cover (a Python built without it)
        from hashlib import sha256
    return str(sha256(token.encode()).hexdigest())


def _same(a: str, b: str) -> bool:
    # hmac.compare_digest (constant time), without importing hmac and hashlib.
    from _operator import _compare_digest

    return bool(_compare_digest(a, b))


def issue(data: DataRoot, name: str) -> str:
    """A new token for ``name`` (at every spawn); stores only its hash, 0600."""
    if not valid_name(name):
        raise IdentityError(f"invalid agent name {name!r}")
    token = os.urandom(32).hex()
    path = token_file(data, name)
    folder = os.path.dirname(path)
    os.makedirs(folder, mode=0o700, exist_ok=True)
    tmp = os.path.join(folder, f".{name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(_digest(token) + "\n")
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return token


def origin(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Where a call came from, for the event log: the tmux pane and the pid."""
    env = os.environ if env is None else env
    return {"pane": env.get("TMUX_PANE") or None, "pid": os.getpid()}


def _refuse(data: DataRoot, claimed: str, message: str, hint: str) -> IdentityError:
    from cmux import events

    try:
        events.record(data, "refused", None, claimed=claimed, reason=message, **origin())
    except CmuxError:
        pass  # the refusal stands even when the log cannot be written
    return IdentityError(message, hint)


def check_name(name: str) -> str | None:
    """Why ``name`` cannot be an agent's name in CMUX_AGENT, or None."""
    if not valid_name(name):
        return (
            f"{NAME_ENV}={name!r} is not an agent name (1-32 characters: lowercase letters, "
            "digits, '-' or '_', starting with a letter)"
        )
    if name in RESERVED:
        return f"{NAME_ENV}={name!r} is a name reserved by cmux, not an agent"
    return None


def caller(cfg: Any, env: Mapping[str, str] | None = None) -> str:
    """The verified name of the calling process: ``human`` or an agent.

    ``cfg`` is a Config (its ``data`` and ``socket_name`` are used).
    """
    env = os.environ if env is None else env
    data: DataRoot = cfg.data
    name = env.get(NAME_ENV, "")
    token = env.get(TOKEN_ENV, "")
    if not name:
        if token:
            raise _refuse(
                data,
                HUMAN,
                f"{TOKEN_ENV} is set but {NAME_ENV} is not: an agent cannot act as the person",
                f"send as yourself: keep {NAME_ENV} as cmux set it",
            )
        _not_in_an_agents_pane(cfg, env)
        return HUMAN
    why = check_name(name)
    if why:
        raise _refuse(
            data,
            name,
            why,
            f"cmux sets {NAME_ENV} for its agents; a person runs without it",
        )
    if not token:
        raise _refuse(
            data,
            name,
            f"{NAME_ENV}={name} but no {TOKEN_ENV}: only the agent cmux started as {name} "
            f"can act as {name}",
            f"keep the environment cmux gave the agent; a person runs without {NAME_ENV}",
        )
    try:
        with open(token_file(data, name), encoding="utf-8") as fh:
            expected = fh.read().strip()
    except (FileNotFoundError, NotADirectoryError):
        expected = ""
    except OSError as exc:
        raise IdentityError(f"cannot read the token of {name}: {exc.strerror}") from None
    if not expected or not _same(_digest(token), expected):
        raise _refuse(
            data,
            name,
            f"{TOKEN_ENV} is not the token of agent {name}: refusing to act as {name}",
            f"an agent acts only as itself; {name}'s token changes when it is spawned again",
        )
    return name


def _not_in_an_agents_pane(cfg: Any, env: Mapping[str, str]) -> None:
    """A process in a live agent's pane (of this project's server) is not the person."""
    pane = env.get("TMUX_PANE", "")
    socket = env.get("TMUX", "").split(",", 1)[0]
    if not pane or os.path.basename(socket) != cfg.socket_name:
        return
    from cmux.agents import registry

    for agent in registry.list_agents(cfg.data):
        if agent.pane_id == pane and agent.live:
            raise _refuse(
                cfg.data,
                HUMAN,
                f"this process runs in the pane of agent {agent.name} ({pane}) without its "
                f"{NAME_ENV}: it cannot act as the person",
                f"keep the environment cmux gave {agent.name}",
            )


def require_person(cfg: Any, what: str) -> None:
    """Refuse ``what`` (the person's own verbs: their inbox, their journal
    signature) to a process that is an agent."""
    me = caller(cfg)
    if me != HUMAN:
        raise _refuse(
            cfg.data,
            HUMAN,
            f"agent {me} cannot {what}: that is the person's",
            f"use your own tools as {me}: mailbox read, journal add",
        )


def check_sender(cfg: Any, sender: str) -> None:
    """Refuse to store mail signed ``sender`` unless the caller may sign so.

    An agent (verified by its token) signs only as itself; cmux's own code
    signs ``cmux``; a process of the person (no CMUX_AGENT) is trusted with
    whatever its code chose, since it can do anything as that user anyway.
    """
    if sender == CMUX:
        return
    me = caller(cfg)
    if me not in (sender, HUMAN):
        raise _refuse(
            cfg.data,
            sender,
            f"agent {me} cannot send as {sender}",
            f"`mailbox send` signs with your own name ({me})",
        )


class NotAllowed(CmuxError):
    """The caller's role does not let it do this through cmux's tools."""
