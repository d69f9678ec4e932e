"""The whole team as this host sees it: the other hosts' agents, and which
hosts have gone silent.

``cmux status`` (cmux/status.py) shows the local registry as on one machine,
plus, when cmux.toml has ``[cluster] nats``, every other host's records from
the KV bucket CMUX_AGENTS (each host's node daemon mirrors its own there).
Nothing here is imported without ``[cluster]``, and nothing here imports
nats-py: it goes through cmux/cluster/nats.py, imported only when it is used.

The node daemon (cmux/cluster/node.py) watches CMUX_HOSTS and keeps this
host's view of the others in ``state/cluster/hosts.json``: for each host,
when this host last heard its heartbeat, and whether it is ``up``,
``unreachable`` (silent for more than ``SILENT_BEATS`` heartbeats) or
``lost`` (silent past ``[cluster] host_timeout``). :func:`decide` makes that
call, pure, from times this host measured itself (never another host's
clock). :func:`overlay` is how status shows it: a live agent of a silent
host is ``unreachable`` or ``lost`` here, whatever its last record says.

Invariants: the view file is written only by the node, atomically; a host
absent from it is ``up``; an agent already ``exited`` or ``killed`` keeps
that state (it is not alive anywhere to be lost).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from cmux.agents.registry import GONE, Agent
from cmux.fsutil import atomic_write, read_json
from cmux.paths import HUMAN, DataRoot

if TYPE_CHECKING:
    from cmux.cluster.nats import Nats, Settings
    from cmux.config import Config

HostState = Literal["up", "unreachable", "lost"]
SILENT_BEATS = 3  # heartbeats missed before a host is unreachable
AGENTS_KV = "CMUX_AGENTS"  # also cmux.cluster.bridge.AGENTS_KV
EVENTS_STREAM = "CMUX_EVENTS"  # also cmux.cluster.bridge.EVENTS_STREAM
RETRY_EVENTS = 5.0  # seconds `events -f` waits before asking NATS again
STATUS_TIMEOUT = 2.0  # seconds `cmux status` waits for NATS before showing local agents only


# -- settings ----------------------------------------------------------------------------


def enabled(cfg: Config) -> bool:
    """Whether cmux.toml has ``[cluster] nats`` (else: one machine, no NATS at all)."""
    return bool(cfg.section("cluster").get("nats"))


def host_name(cfg: Config) -> str:
    """This host's name: ``[cluster] host``, else the short hostname."""
    return str(cfg.section("cluster").get("host") or socket.gethostname().split(".")[0])


def project_id(cfg: Config) -> str:
    """``[cluster] project``, else the trunk repository's short id (see
    cmux/remote/there.py, which also pins it for the worker hosts)."""
    from cmux.remote.there import project_id as of_trunk

    return of_trunk(cfg)


def nats_settings(cfg: Config, *, url: str | None = None, token: str | None = None) -> Settings:
    """How to reach NATS, from [cluster] (``url``/``token`` override it)."""
    from cmux.cluster.nats import Settings

    sec = cfg.section("cluster")
    return Settings(
        url=str(url or sec.get("nats")),
        token=token or sec.get("token"),
        user=sec.get("user"),
        password=sec.get("password"),
        creds=sec.get("creds"),
        tls_ca=sec.get("tls_ca"),
        tls_cert=sec.get("tls_cert"),
        tls_key=sec.get("tls_key"),
        name=f"cmux-{host_name(cfg)}",
    )


def connect(cfg: Config, timeout: float = STATUS_TIMEOUT) -> Nats:
    """A connection for a command (status, events); raises NatsUnavailable."""
    from cmux.cluster.nats import Nats

    return Nats.connect(nats_settings(cfg), timeout=timeout)


# -- the other hosts' agents -------------------------------------------------------------


def merge(local: list[Agent], remote: dict[str, bytes], me: str) -> list[Agent]:
    """This host's records, with the other hosts' from CMUX_AGENTS (pure).

    A local record of an agent placed on host H (``host`` = H) gives way to
    H's own record of it, which is fresher; a local agent of the same name
    on this host wins over any other host's (two hosts claiming one name is
    an operator's mistake, docs/CLUSTER.md); the person's ``human`` keys are
    no agents."""
    by_name = {a.name: a for a in local}
    out = list(local)
    for key in sorted(remote):
        host, _, name = key.partition(".")
        if not name or host == me or name == HUMAN:
            continue
        try:
            rec = json.loads(remote[key])
            agent = Agent.from_dict({**rec, "host": host})
        except (ValueError, TypeError):
            continue
        mine = by_name.get(name)
        if mine is not None:
            if (mine.host or me) != host:
                continue
            out[out.index(mine)] = agent
        else:
            out.append(agent)
        by_name[name] = agent
    return out


def remote_records(cfg: Config) -> dict[str, bytes]:
    """CMUX_AGENTS as it is (raises ClusterError when NATS does not answer)."""
    conn = connect(cfg)
    try:
        return conn.kv_items(AGENTS_KV)
    finally:
        conn.close()


def team(cfg: Config, local: list[Agent]) -> tuple[list[Agent], str | None]:
    """Every host's agents as this host sees them, and why other hosts are
    missing (NATS unreachable: None when they are all there). Without
    [cluster] nats: ``local`` as it is, and nothing imported."""
    if not enabled(cfg):
        return local, None
    from cmux.errors import ClusterError

    me = host_name(cfg)
    try:
        agents = merge(local, remote_records(cfg), me)
        problem = None
    except ClusterError as exc:
        agents, problem = local, exc.message
    return overlay(agents, read_view(cfg.data)), problem


# -- the hosts' heartbeats ---------------------------------------------------------------


def decide(
    heard: dict[str, float],
    now: float,
    *,
    heartbeat: dict[str, float],
    host_timeout: float,
) -> dict[str, HostState]:
    """Each host's state from when this host last heard it (pure).

    ``heard``: host -> the time (this host's clock) its heartbeat last
    changed; ``heartbeat``: host -> its interval. Silent for more than
    ``SILENT_BEATS`` intervals: ``unreachable``; silent for ``host_timeout``
    or more (and past those beats): ``lost``; else ``up``."""
    out: dict[str, HostState] = {}
    for host, at in heard.items():
        silent = now - at
        beats = SILENT_BEATS * heartbeat.get(host, 2.0)
        if silent > beats and silent >= host_timeout:
            out[host] = "lost"
        elif silent > beats:
            out[host] = "unreachable"
        else:
            out[host] = "up"
    return out


def unheard(
    agents: Iterable[Agent], heard: Iterable[str], me: str, *, since: float, grace: float
) -> dict[str, float]:
    """The hosts this registry places agents on that never beat (no key in
    CMUX_HOSTS yet: ``heard`` lacks them), each with the time its silence
    counts from (pure): ``grace`` seconds (the time a new host's node has to
    beat first: ``[cluster] host_timeout``) after ``since`` (when this node
    first heard NATS), or after the creation of the newest record placed
    there when that is later. Only agents not gone count; an agent of this
    host (``host`` None or ``me``) never does. :func:`decide` then judges
    them as any silent host, so an agent spawned on a host whose node never
    reached NATS becomes ``unreachable``, then ``lost``, instead of showing
    its spawn state forever."""
    known = set(heard)
    out: dict[str, float] = {}
    for a in agents:
        if not a.host or a.host == me or a.host in known or a.state in GONE:
            continue
        out[a.host] = max(out.get(a.host, since + grace), a.created + grace)
    return out


def overlay(agents: Iterable[Agent], view: dict[str, HostState]) -> list[Agent]:
    """Agents of an unreachable or lost host shown so (pure); an agent that
    already exited or was killed keeps its state."""
    out = []
    for a in agents:
        state = view.get(a.host or "", "up")
        if state != "up" and a.state not in GONE and a.state != state:
            a = replace(a, state=state, note=a.note or f"host {a.host} is {state}")
        out.append(a)
    return out


def lost_notices(
    view: dict[str, HostState],
    remote: dict[str, bytes],
    local: dict[str, Agent],
    told: set[str],
    me: str,
) -> list[tuple[str, str, str, str]]:
    """Who must be told, once, that a worker is lost (pure): (told key,
    parent, agent, host) for each agent of a lost host whose parent lives
    on this host, not told already (``told`` holds the keys
    ``host.agent.incarnation``). The agents of a host are those in its keys
    of CMUX_AGENTS, and those this registry placed there that have no key
    (a host that never beat wrote none)."""
    out = []
    recs: dict[str, Any] = {}
    for key in remote:
        if view.get(key.partition(".")[0]) == "lost":
            try:
                recs[key] = json.loads(remote[key])
            except ValueError:
                continue
    for a in local.values():
        key = f"{a.host}.{a.name}"
        if a.host and a.host != me and view.get(a.host) == "lost" and key not in remote:
            recs[key] = a.to_dict()
    for key in sorted(recs):
        host, _, name = key.partition(".")
        rec = recs[key]
        if not name or name == HUMAN or not isinstance(rec, dict) or rec.get("state") in GONE:
            continue
        parent = rec.get("parent")
        mark = f"{host}.{name}.{rec.get('incarnation', 1)}"
        here = local.get(parent) if isinstance(parent, str) else None
        if here is None or (here.host or me) != me or mark in told:
            continue
        out.append((mark, str(parent), name, host))
    return out


def view_path(data: DataRoot) -> Path:
    return data.state_dir / "cluster" / "hosts.json"


def read_view(data: DataRoot) -> dict[str, HostState]:
    """Host -> up/unreachable/lost, as the node last decided (empty: none known)."""
    doc = read_state(data)
    hosts = doc.get("hosts", {})
    return {
        h: v["state"]
        for h, v in hosts.items()
        if isinstance(v, dict) and v.get("state") in ("up", "unreachable", "lost")
    }


def read_state(data: DataRoot) -> dict[str, Any]:
    """The whole view file: {"hosts": {host: {"state", "heard"}}, "told": [...]}."""
    try:
        doc = read_json(view_path(data))
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def write_state(data: DataRoot, doc: dict[str, Any]) -> None:
    path = view_path(data)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(doc, sort_keys=True, indent=1) + "\n")


# -- the other hosts' events -------------------------------------------------------------


def follow_events(
    cfg: Config, *, offset: int, poll: float = 0.2, start_seq: int | None = None
) -> Iterator[dict[str, Any]]:
    """This host's events from byte ``offset`` of its log, and, with [cluster]
    nats, every other host's as they are published to CMUX_EVENTS (each with
    its ``host``; from stream sequence ``start_seq`` when given, where
    :func:`team_events` ended, else from now on), until the caller stops. A
    NATS outage only pauses the other hosts' (those published meanwhile are
    skipped: the stream is read from now on); this host's go on."""
    import time

    from cmux import events
    from cmux.errors import ClusterError

    if not enabled(cfg):
        yield from events.follow(cfg.data, offset=offset, poll=poll)
        return
    me, subject = host_name(cfg), f"cmux.{project_id(cfg)}.events.*"
    conn: Nats | None = None
    tail = None
    reconnects = 0
    retry_at = 0.0  # NATS did not answer: try again from then, this host's go on
    try:
        while True:
            batch, offset = events.read(cfg.data, offset=offset)
            yield from batch
            if time.monotonic() < retry_at:
                time.sleep(poll)
                continue
            try:
                if conn is None:
                    conn = connect(cfg)
                if tail is None or conn.reconnects != reconnects:
                    # (again after a reconnect: the server may have forgotten it)
                    tail = conn.tail(EVENTS_STREAM, subject, start_seq=start_seq)
                    reconnects, start_seq = conn.reconnects, None
                got = tail.fetch(batch=256, timeout=poll)
            except ClusterError:
                tail, retry_at = None, time.monotonic() + RETRY_EVENTS
                continue
            for d in got:
                for e in payload_events(d.data):
                    if e.get("host") != me:
                        yield e
    finally:
        if conn is not None:
            conn.close()


def payload_events(raw: bytes) -> list[dict[str, Any]]:
    """The events one CMUX_EVENTS message holds (pure): a node publishes
    several to a message, a JSON line each (bridge.events_chunks); a line
    that is no JSON object is skipped."""
    out = []
    for line in raw.splitlines():
        try:
            e = json.loads(line)
        except ValueError:
            continue
        if isinstance(e, dict):
            out.append(e)
    return out


def merge_events(
    local: list[dict[str, Any]], remote: Iterable[bytes], me: str, *, last: int = 0
) -> list[dict[str, Any]]:
    """This host's events (from its log) and the other hosts' (CMUX_EVENTS
    payloads), each with its ``host``, in time order, the newest ``last``
    (0: all) (pure). This host's own copies in the stream are dropped: its
    log has them, and the ones not yet published."""
    out = [{**e, "host": me} if not e.get("host") else e for e in local]
    for raw in remote:
        out += [e for e in payload_events(raw) if e.get("host") and e["host"] != me]
    out.sort(key=lambda e: str(e.get("ts", "")))  # RFC 3339 UTC: text order is time order
    return out[-last:] if last else out


@dataclass(frozen=True)
class TeamEvents:
    events: list[dict[str, Any]]  # oldest first, each with its host
    problem: str | None = None  # why the other hosts' are missing (NATS did not answer)
    next_seq: int | None = None  # CMUX_EVENTS's sequence after them: where -f goes on


def team_events(cfg: Config, local: list[dict[str, Any]], *, last: int = 0) -> TeamEvents:
    """The team's past events as this host sees them: ``local`` merged with
    CMUX_EVENTS's history (:func:`merge_events`)."""
    from cmux.errors import ClusterError

    me, subject = host_name(cfg), f"cmux.{project_id(cfg)}.events.*"
    try:
        conn = connect(cfg)
        try:
            remote, next_seq = conn.recent(EVENTS_STREAM, subject, last)
        finally:
            conn.close()
    except ClusterError as exc:
        return TeamEvents(merge_events(local, [], me, last=last), exc.message)
    return TeamEvents(merge_events(local, remote, me, last=last), None, next_seq)
