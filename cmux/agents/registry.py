"""The registry of agents: state/agents/<name>.json, one file per agent.

States (:data:`State`; README.md, "Agent states"): ``starting -> idle <->
busy``, ``busy -> waiting`` (permission dialog), ``-> done | blocked``
(declared by the agent through the mailbox), ``-> exited(code) | killed``.
Alive but unable to work: ``rate-limited``, ``overloaded`` and
``auth-error`` (the model API refused: Claude Code's StopFailure hook),
``stuck`` (busy, and nothing moved for ``[health] stuck_after``: the
watchdog), ``crashed`` (the program is gone but its pane lives on, a shell
in it: the reconcile). ``since`` is when the state last changed.
An agent on another host (``host`` set, docs/CLUSTER.md) that stops
answering is ``unreachable`` (not exited: it may well still run), and
``lost`` once its host has been gone past ``[cluster] host_timeout``;
either comes back to a live state when the host answers again.
``transition`` is the one function that changes a state: it checks the
move, writes the file atomically under a per-agent lock, and appends an
event. ``cmux status`` reads these files; it never guesses.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal, get_args

from cmux import events
from cmux.errors import InvalidName, InvalidTransition, UnknownAgent
from cmux.fsutil import locked, read_json, write_json
from cmux.identity import RESERVED
from cmux.paths import SUPERVISOR, DataRoot, valid_name

# done and blocked are declared by the agent (`mailbox done`, `mailbox blocked`);
# waiting is a permission dialog on its screen; exited carries ``exit_code``.
State = Literal[
    "starting",
    "idle",
    "busy",
    "waiting",
    "done",
    "blocked",
    "exited",
    "killed",
    "rate-limited",
    "overloaded",
    "auth-error",
    "stuck",
    "crashed",
    "unreachable",
    "lost",
]
STATES: tuple[State, ...] = get_args(State)
# Alive (the program runs) but unable to work: the model API refused it, or
# nothing moves.
REFUSED: frozenset[State] = frozenset({"rate-limited", "overloaded", "auth-error"})
UNABLE: frozenset[State] = REFUSED | frozenset[State]({"stuck"})
LIVE: frozenset[State] = (
    frozenset[State]({"starting", "idle", "busy", "waiting", "done", "blocked"}) | UNABLE
)
GONE: frozenset[State] = frozenset({"exited", "killed"})
# The program is gone but its pane lives on (a shell): not live; it ends as the
# pane does (exited), by cmux kill, or comes back (spawn).
CRASHED: frozenset[State] = frozenset({"crashed"})
# An agent on a host that stopped answering: not known to be alive, nor gone.
ASTRAY: frozenset[State] = frozenset({"unreachable", "lost"})
_FROM_LIVE: frozenset[State] = (LIVE | GONE | CRASHED | frozenset[State]({"unreachable"})) - (
    frozenset[State]({"starting"})
)
_ALLOWED: dict[State, frozenset[State]] = {
    "starting": LIVE | GONE | CRASHED | frozenset[State]({"unreachable"}),
    **{s: _FROM_LIVE for s in LIVE - frozenset[State]({"starting"})},
    "crashed": frozenset({"starting", "exited", "killed"}),
    "exited": frozenset({"starting", "killed"}),
    "killed": frozenset({"starting"}),
    # The host answers again: the agent is in whatever state it reports.
    "unreachable": LIVE | GONE | CRASHED | frozenset[State]({"lost"}),
    "lost": LIVE | GONE | CRASHED,
}


def validate_name(name: str, *, allow_supervisor: bool = False) -> str:
    if not valid_name(name):
        raise InvalidName(
            f"invalid agent name {name!r}",
            "use 1-32 characters: lowercase letters, digits, '-' or '_', starting with a letter",
        )
    if name in RESERVED or (name == SUPERVISOR and not allow_supervisor):
        raise InvalidName(f"the name {name!r} is reserved by cmux", "choose another name")
    return name


@dataclass
class Agent:
    name: str
    role: str = "worker"  # supervisor | worker
    profile: str = "shell"
    # Its program's adapter (cmux/agents/adapters/) where its profile name does
    # not say it (a [profiles.X] entry's adapter); "" when it does, as in a
    # record from before adapters (capabilities.adapter_of).
    adapter: str = ""
    state: State = "starting"
    pane_id: str | None = None
    # The tmux server the pane lives on ("<pid>:<start time>", tmux.SERVER_ID):
    # pane ids restart on every new server, so pane_id alone names nothing.
    server: str | None = None
    cwd: str | None = None
    task: str = ""
    parent: str | None = SUPERVISOR
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)
    exit_code: int | None = None
    last_event: str = ""
    worktree: str | None = None
    branch: str | None = None
    session_id: str | None = None
    transcript: str | None = None
    incarnation: int = 1
    command: list[str] = field(default_factory=list)
    note: str = ""
    since: float | None = None  # when ``state`` last changed (None: before this was kept)
    # How this incarnation began when it was brought back (cmux/agents/resume.py):
    # "" a new spawn, "conversation" (claude --resume), "fresh" (its conversation
    # was lost: task and memory), "rerun" (a program without one, run again).
    resume: str = ""
    # The host it runs on ([hosts.NAME]); None: this one.
    host: str | None = None
    # Where its branch is pushed at done and kill: the trunk repository's
    # git URL, for a worker whose checkout is a clone on another host.
    trunk: str | None = None
    # This host's copy of an agent on another host: the ``since`` (that
    # host's clock) of the record there whose state this copy last took, from
    # `cmux hosts` or the node daemon (cmux/remote/place.py, take_report): a
    # report older than that is never taken. None: none taken yet.
    there_since: float | None = None

    @property
    def task_summary(self) -> str:
        first = next((ln.strip() for ln in self.task.splitlines() if ln.strip()), "")
        return first if len(first) <= 60 else first[:59] + "…"

    @property
    def live(self) -> bool:
        return self.state in LIVE

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Agent:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def on_server(agent: Agent, server: str | None) -> bool:
    """Whether ``agent.pane_id`` names a pane of the live server ``server``.

    Never true when no server runs. A record made before server identities
    were recorded can only be on a server that was already running when the
    record was made.
    """
    if server is None or not agent.pane_id:
        return False
    if agent.server:
        return agent.server == server
    try:
        started = int(server.rpartition(":")[2])
    except ValueError:
        return False
    return agent.created >= started


def _path_ok(data: DataRoot, name: str) -> bool:
    return valid_name(name)


def exists(data: DataRoot, name: str) -> bool:
    return _path_ok(data, name) and data.agent_file(name).is_file()


def get(data: DataRoot, name: str) -> Agent:
    if not _path_ok(data, name):
        raise UnknownAgent(f"no agent named {name!r}", "see `cmux status` for the agents")
    try:
        return Agent.from_dict(read_json(data.agent_file(name)))
    except FileNotFoundError:
        raise UnknownAgent(
            f"no agent named {name!r}", "see `cmux status` for the agents there are"
        ) from None


def list_agents(data: DataRoot) -> list[Agent]:
    out: list[Agent] = []
    try:
        files = sorted(data.agents_dir.glob("*.json"))
    except FileNotFoundError:
        return out
    for p in files:
        try:
            out.append(Agent.from_dict(read_json(p)))
        except (OSError, ValueError, TypeError):
            continue
    out.sort(key=lambda a: (a.role != "supervisor", a.created, a.name))
    return out


def save(data: DataRoot, agent: Agent, *, event: str | None = "register", **extra: Any) -> None:
    """Write a whole agent record (spawn); later changes go through ``update``."""
    with locked(data.agent_lock(agent.name)):
        agent.updated = time.time()
        write_json(data.agent_file(agent.name), agent.to_dict())
    if event:
        events.record(data, event, agent.name, state=agent.state, role=agent.role, **extra)


def update(data: DataRoot, name: str, **changes: Any) -> Agent:
    """Change fields other than the state (pane id, session id, counters)."""
    with locked(data.agent_lock(name)):
        agent = get(data, name)
        for k, v in changes.items():
            setattr(agent, k, v)
        agent.updated = time.time()
        write_json(data.agent_file(name), agent.to_dict())
    return agent


def transition(
    data: DataRoot,
    name: str,
    new: State,
    *,
    reason: str = "",
    strict: bool = True,
    only_from: frozenset[State] | set[State] | tuple[State, ...] | None = None,
    if_since: float | None = None,
    **changes: Any,
) -> Agent:
    """Move ``name`` to state ``new``; the only way a state changes.

    A move the machine forbids raises InvalidTransition (or, with
    ``strict=False``, is ignored and the agent returned unchanged). Moving to
    the state an agent is already in changes nothing and logs nothing.
    With ``only_from``, the move (and the ``changes`` with it) happens only
    from one of those states, also when ``new`` is the state it is in: a
    second path noticing what the first already recorded changes nothing.
    With ``if_since``, it happens only when the state last changed at that
    time (``Agent.since``): a conclusion drawn from what was seen then does
    not overwrite a newer change (a hook's) made meanwhile.
    """
    if new not in STATES:
        raise InvalidTransition(f"unknown state {new!r}")
    with locked(data.agent_lock(name)):
        agent = get(data, name)
        old = agent.state
        if old == new and not changes:
            return agent
        if only_from is not None and old not in only_from:
            return agent  # checked under the lock: no check-then-act race
        if if_since is not None and agent.since != if_since:
            return agent  # changed since: the newer change stands
        if old != new and new not in _ALLOWED[old]:
            if strict:
                raise InvalidTransition(f"{name}: cannot go from {old} to {new}")
            return agent
        for k, v in changes.items():
            setattr(agent, k, v)
        agent.state = new
        agent.updated = time.time()
        if old != new:
            agent.since = agent.updated
            agent.last_event = f"{old} → {new}" + (f": {reason}" if reason else "")
        write_json(data.agent_file(name), agent.to_dict())
    if old != new:
        events.record(data, "state", name, **{"from": old, "to": new, "reason": reason or None})
    return agent


def remove(data: DataRoot, name: str) -> None:
    """Forget an agent entirely (used when a name is re-spawned)."""
    with locked(data.agent_lock(name)):
        data.agent_file(name).unlink(missing_ok=True)
