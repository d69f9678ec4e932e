"""``cmux spawn --host NAME``, ``cmux kill`` and ``cmux attach`` of an agent
on another host, from the trunk host's side.

A spawn sends the other host one ssh call, ``cmux _host-spawn`` with the
spec as JSON (cmux/remote/there.py does the rest there) and records the
agent here with ``host`` set: no pane here (``pane_id`` None, so no local
tmux path ever touches it), its branch ``cmux/NAME`` (pushed to this
repository at its done and its kill), its checkout's path there as ``cwd``.
A kill is ``cmux kill`` run there (it pushes the branch first); attach is
``ssh -t`` running ``cmux attach`` there. ``choose`` (pure) is the
``[hosts] default = "load"`` placement.
"""

from __future__ import annotations

import json
import os
import shlex
from typing import Any

from cmux import events, git
from cmux.agents import registry
from cmux.agents.registry import Agent
from cmux.config import Config, Host, hosts, this_host
from cmux.errors import AgentError, ConfigError, DuplicateAgent, GitError, UsageError
from cmux.fsutil import locked
from cmux.remote.probe import HostInfo
from cmux.remote.there import project_dir, settings_for, spool
from cmux.ssh import Ssh

SPAWN_TIMEOUT = 90.0  # a clone over ssh, a session started there


def host_of(cfg: Config, name: str) -> Host:
    known = hosts(cfg)
    if name not in known:
        raise UsageError(
            f"no host named {name!r} in cmux.toml",
            "the hosts: "
            + (", ".join(sorted(known)) or "none: add [hosts.NAME] (docs/CLUSTER.md)"),
        )
    return known[name]


def trunk_url(cfg: Config) -> str:
    """The trunk repository as the other hosts fetch it: ``[cluster] trunk``,
    else ssh to this host's own ``[hosts.NAME]`` entry at the project's path."""
    url = cfg.section("cluster").get("trunk")
    if url:
        return str(url)
    me = hosts(cfg).get(this_host(cfg))
    if me is None:
        raise ConfigError(
            "the other hosts cannot fetch this repository: cmux does not know its address",
            f'set [cluster] trunk = "ssh://USER@THIS-HOST{cfg.project_root}" in cmux.toml',
        )
    return Ssh(me, cfg.data).url(str(cfg.project_root))


def _base(cfg: Config) -> str:
    try:
        repo = git.Repo(cfg.project_root)
    except GitError:
        raise GitError(
            f"{cfg.project_root} is not a git repository", "--host clones it: it needs one"
        ) from None
    if repo.head() is None:
        raise GitError(f"{cfg.project_root} has no commits yet", "commit once before --host")
    branch = repo.current_branch()
    if not branch and cfg.data.trunk_file.is_file():
        branch = cfg.data.trunk_file.read_text().strip()
    if not branch:
        raise GitError("HEAD is detached: no trunk branch to start from", "git switch main")
    return branch


def placed(cfg: Config, name: str) -> int:
    """Agents this registry has on host ``name`` that are not gone."""
    return sum(
        1 for a in registry.list_agents(cfg.data) if a.host == name and a.state not in registry.GONE
    )


def choose(local_load: float, infos: list[HostInfo], counts: dict[str, int]) -> str:
    """``[hosts] default = "load"``: the reachable host with room and the
    lowest load per core, or "local" when this host's is lower still (pure)."""
    best, best_load = "local", local_load
    for i in infos:
        if not i.reachable or i.load is None:
            continue
        if i.limit is not None and counts.get(i.name, 0) >= i.limit:
            continue
        per_core = i.load / max(1, i.cores or 1)
        if per_core < best_load:
            best, best_load = i.name, per_core
    return best


def by_load(cfg: Config) -> str:
    from cmux.remote.probe import probe_all

    local = os.getloadavg()[0] / max(1, os.cpu_count() or 1)
    counts = {n: placed(cfg, n) for n in hosts(cfg)}
    return choose(local, probe_all(cfg, timeout=10), counts)


def spawn_on(
    cfg: Config,
    host_name: str,
    name: str,
    *,
    task: str,
    profile: str | None = None,
    command: str | None = None,
    parent: str | None = None,
) -> Agent:
    """Start worker ``name`` on host ``host_name`` (see the module)."""
    registry.validate_name(name)
    host = host_of(cfg, host_name)
    trunk, base = trunk_url(cfg), _base(cfg)
    with locked(cfg.data.run_dir / f"spawn-{name}.lock", blocking=False) as got:
        if not got:
            raise DuplicateAgent(f"agent {name!r} is being spawned right now")
        if registry.exists(cfg.data, name):
            old = registry.get(cfg.data, name)
            if old.live or old.state in registry.ASTRAY:
                raise DuplicateAgent(
                    f"an agent named {name!r} already exists ({old.state})",
                    f"choose another name, or end it with `cmux kill {name}`",
                )
        if host.agents is not None and placed(cfg, host_name) >= host.agents:
            raise AgentError(
                f"host {host_name} already has its {host.agents} agents "
                f"([hosts.{host_name}] agents)",
                "kill one there, spawn on another host, or raise the limit",
            )
        spec = {
            "name": name,
            "task": task,
            "profile": profile,
            "command": command,
            "parent": parent,
            "trunk": trunk,
            "base": base,
            "dir": host.dir,
            "from_host": this_host(cfg),
            "settings": settings_for(cfg, host_name),
        }
        ssh = Ssh(host, cfg.data)
        result = ssh.run(
            [host.cmux, "_host-spawn"], input=json.dumps(spec).encode(), timeout=SPAWN_TIMEOUT
        )
        try:
            there: dict[str, Any] = json.loads(result.out)["agent"]
        except (ValueError, KeyError, TypeError):
            raise AgentError(
                f"host {host_name} said something cmux cannot read: {result.out[:200]!r}",
                f"is cmux there ({host.cmux}) the same version as here?",
            ) from None
        cfg.data.ensure()
        agent = Agent(
            name=name,
            role="worker",
            profile=there.get("profile", "command"),
            adapter=there.get("adapter", ""),
            state=there.get("state", "starting"),
            cwd=there.get("cwd"),
            task=task,
            parent=parent,
            branch=there.get("branch"),
            command=there.get("command") or [],
            incarnation=int(there.get("incarnation") or 1),
            host=host_name,
        )
        registry.save(cfg.data, agent, event="spawn", host=host_name, profile=agent.profile)
        spool(cfg, name, host_name)  # its mail waits here for the node daemon to send
    events.record(cfg.data, "host-spawn", name, host=host_name, trunk=trunk, base=base)
    return agent


def _there(cfg: Config, agent: Agent) -> tuple[Host, Ssh, str]:
    host = host_of(cfg, agent.host or "")
    return host, Ssh(host, cfg.data), project_dir(host.dir, trunk_url(cfg))


def kill_on(cfg: Config, agent: Agent, *, reason: str = "killed") -> dict[str, Any]:
    """``cmux kill`` of an agent on another host: run there (it pushes the
    branch to the trunk first), then the record here is killed. A host that
    does not answer raises HostUnreachable and changes nothing."""
    host, ssh, root = _there(cfg, agent)
    line = f"cd {shlex.quote(root)} && exec {shlex.quote(host.cmux)} kill "
    line += f"{shlex.quote(agent.name)} --json"
    result = ssh.run(line, timeout=SPAWN_TIMEOUT)
    try:
        said: dict[str, Any] = json.loads(result.out)
    except ValueError:
        said = {"name": agent.name}
    registry.transition(cfg.data, agent.name, "killed", reason=reason, strict=False)
    return said


def attach_argv(cfg: Config, agent: Agent) -> list[str]:
    """The ssh command line that attaches to ``agent``'s window on its host."""
    host, ssh, root = _there(cfg, agent)
    line = f"cd {shlex.quote(root)} && exec {shlex.quote(host.cmux)} attach "
    return ssh.argv(line + shlex.quote(agent.name), tty=True)


def attach(cfg: Config, agent: Agent) -> None:
    """Become ``ssh -t HOST cmux attach NAME`` (the terminal is the person's)."""
    _, ssh, _ = _there(cfg, agent)
    argv = attach_argv(cfg, agent)
    ssh.exec_tty(argv[argv.index("--") + 1])


def take_report(
    a: Agent, said: object, since: object = None, incarnation: object = None
) -> tuple[registry.State, float | None] | None:
    """What this registry's copy of ``a`` (an agent on another host) takes
    from a report of its host's own record (pure): (state, its ``since``), or
    None when it takes nothing.

    Two writers report here: `cmux hosts` (its ssh probe reads the record
    there) and the node daemon (the record as mirrored in CMUX_AGENTS). Each
    report carries the record's own ``incarnation`` and ``since`` (when its
    state last changed, that host's clock: comparable with each other, never
    with this host's). A report older, by (incarnation, since), than the one
    this copy last took (``a.there_since``) is stale: taken from a look that
    began before the other writer's, it never overwrites the newer state.
    One as new or newer is taken: its state (also out of ``unreachable`` or
    ``lost``, this host's own judgement), or, with the same state, only its
    ``since``. A report without a ``since`` counts as older than any with one."""
    if said not in registry.STATES:
        return None
    state: registry.State = said
    stamp = float(since) if isinstance(since, (int, float)) else None
    turn = int(incarnation) if isinstance(incarnation, int) else a.incarnation
    theirs = (turn, -1.0 if stamp is None else stamp)
    mine = (a.incarnation, -1.0 if a.there_since is None else a.there_since)
    if theirs < mine:
        return None
    if state == a.state and (stamp is None or stamp == a.there_since):
        return None
    return state, stamp if stamp is not None else a.there_since


def state_moves(
    agents: list[Agent], infos: list[HostInfo], *, now: float, host_timeout: float
) -> list[tuple[str, registry.State, str, float | None]]:
    """What a probe of the hosts says of the agents there (pure): (name, new
    state, why, the report's ``since`` to keep). A host that does not answer
    makes its live agents ``unreachable`` (never exited: they may still run)
    and, past ``host_timeout`` s of that, ``lost``; a host that answers gives
    each of its agents the state its own registry there holds, unless the
    node daemon took a newer one meanwhile (:func:`take_report`)."""
    by_name = {i.name: i for i in infos}
    moves: list[tuple[str, registry.State, str, float | None]] = []
    for a in agents:
        info = by_name.get(a.host or "")
        if info is None or a.state in registry.GONE:
            continue
        if not info.reachable:
            if a.state in registry.LIVE:
                why = f"host {a.host} does not answer"
                moves.append((a.name, "unreachable", why, a.there_since))
            elif a.state == "unreachable" and now - (a.since or a.updated) >= host_timeout:
                why = f"host {a.host} gone past {host_timeout:g} s"
                moves.append((a.name, "lost", why, a.there_since))
            continue
        got = take_report(
            a, info.states.get(a.name), info.since.get(a.name), info.incarnations.get(a.name)
        )
        if got is not None:
            moves.append((a.name, got[0], f"as host {a.host} reports", got[1]))
    return moves


def sync_states(cfg: Config, infos: list[HostInfo]) -> list[Agent]:
    """Apply :func:`state_moves` to this registry, each move only from the
    state, and its time, it was decided on (a change meanwhile wins). The
    changed agents."""
    import time

    timeout = float(cfg.section("cluster").get("host_timeout", 60))
    agents = registry.list_agents(cfg.data)
    seen = {a.name: a for a in agents}
    changed = []
    for name, new, why, since in state_moves(agents, infos, now=time.time(), host_timeout=timeout):
        was = seen[name]
        moved = registry.transition(
            cfg.data, name, new, reason=why, strict=False,
            only_from={was.state}, if_since=was.since, there_since=since,
        )  # fmt: skip
        if moved.state == new and new != was.state:
            changed.append(moved)
    return changed
