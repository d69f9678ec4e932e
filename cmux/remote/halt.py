"""`cmux stop` across hosts: the agents on other hosts end with the session.

On the trunk host, :func:`stop_hosts` sends each host that has agents of
this project (by this registry) one ssh call, all hosts at once, each with
its deadline: ``cmux _host-stop`` with ``{"root": ..., "names": [...]}`` on
stdin. There, :func:`stop_here` ends each named agent the way `cmux kill`
does (its branch pushed to the trunk, never forced; the clone kept), and
then, when no agent of the project is left live on that host, that host's
session (its monitor, router, node daemon). Back here, each agent the host
ended is ``killed`` in this registry.

Invariants:

- A host that does not answer (or fails) changes nothing here: its agents'
  records are left as they are, and the result says so with the hint;
  `cmux stop` again, or `cmux kill NAME`, tries again (ending an agent twice
  is ending it once).
- An agent is marked killed here only after its host said it ended it (or
  that it has no such agent).
- The core prints nothing: each host's :class:`HostStop` goes to the
  caller's ``on_host`` as it comes, and :func:`summary` (pure) words it.

:func:`reconcile` is `cmux start`'s look at the hosts: the records of
agents on other hosts take what their hosts say (`cmux hosts`'s probe).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cmux.agents import registry
from cmux.agents.registry import Agent
from cmux.config import Config, Host, hosts
from cmux.errors import CmuxError
from cmux.ssh import Ssh

STOP_TIMEOUT = 60.0  # s one host may take: its agents ended, branches pushed, session ended
REASON = "cmux stop on the trunk host"


@dataclass
class HostStop:
    """What one host did of a `cmux stop` (or why it did nothing)."""

    host: str
    asked: list[str] = field(default_factory=list)  # the agents this registry has there
    done: bool = False  # the host answered and did what was asked
    stopped: list[str] = field(default_factory=list)  # ended there now
    gone: list[str] = field(default_factory=list)  # not running there already
    failed: dict[str, str] = field(default_factory=dict)  # agent -> why it was not ended
    pushed: dict[str, str] = field(default_factory=dict)  # agent -> its branch, on the trunk
    not_pushed: dict[str, str] = field(default_factory=dict)  # agent -> why not
    left: list[str] = field(default_factory=list)  # still live there (not ours to end)
    session_ended: bool = False  # its session (monitor, router, node) was ended
    error: str = ""
    hint: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """Every agent asked for is ended there."""
        return self.done and not self.failed

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def plan(agents: Iterable[Agent], known: Iterable[str]) -> dict[str, list[str]]:
    """Which hosts a `cmux stop` calls and whom it ends there (pure): each
    host of ``known`` (``[hosts]``) with an agent here not gone (live,
    unreachable or lost: it may still run), its agents sorted. A host none
    of whose agents is left is not called; nor one not in ``[hosts]``
    (the parent's record on a worker host names the trunk's host)."""
    names = set(known)
    out: dict[str, list[str]] = {}
    for a in agents:
        if a.host and a.host in names and a.state not in registry.GONE:
            out.setdefault(a.host, []).append(a.name)
    return {h: sorted(out[h]) for h in sorted(out)}


def summary(r: HostStop) -> str:
    """One host's outcome in words (pure): ``b: w1, w2 stopped, cmux/w1
    pushed``; or why it was not reached and what tries again."""
    if not r.done:
        who = ", ".join(r.asked)
        return (
            f"{r.host}: not stopped: {r.error}; {who} left as recorded "
            f"(`cmux stop` again, or `cmux kill NAME`, tries again)"
        )
    parts = [f"{', '.join(r.stopped)} stopped"] if r.stopped else []
    if r.gone:
        parts.append(f"{', '.join(r.gone)} not running there")
    for name, why in sorted(r.failed.items()):
        parts.append(f"{name} not stopped ({why}; `cmux kill {name}` tries again)")
    if r.pushed:
        parts.append(", ".join(sorted(r.pushed.values())) + " pushed")
    for name, why in sorted(r.not_pushed.items()):
        parts.append(f"{name}'s branch not pushed ({why}; its clone is kept there)")
    if r.left:
        parts.append(f"still running there: {', '.join(r.left)} (its session kept)")
    elif r.session_ended:
        parts.append("its session ended")
    return f"{r.host}: " + (", ".join(parts) or "nothing was running")


def stop_host(cfg: Config, host: Host, names: list[str], *, timeout: float) -> HostStop:
    """One host, by one ssh call (see the module); never raises a CmuxError."""
    import time

    from cmux.remote.place import trunk_url
    from cmux.remote.there import project_dir

    r = HostStop(host=host.name, asked=names)
    t0 = time.monotonic()
    try:
        spec = {"root": project_dir(host.dir, trunk_url(cfg)), "names": names}
        ssh = Ssh(host, cfg.data, connect_timeout=min(timeout, 5.0))
        result = ssh.run(
            [host.cmux, "_host-stop"], input=json.dumps(spec).encode(), timeout=timeout
        )
        said = json.loads(result.out)
        took(r, said)
    except CmuxError as exc:  # the host's HostError, or no trunk URL here
        r.error, r.hint = exc.message, exc.hint or ""
    except OSError as exc:  # (ssh's control folder here could not be made)
        r.error, r.hint = f"cannot run ssh to {host.name}: {exc}", "see `cmux doctor`"
    except (ValueError, KeyError, TypeError, AttributeError):
        r.error = f"host {host.name} said something cmux cannot read"
        r.hint = f"is cmux there ({host.cmux}) the same version as here?"
    r.seconds = round(time.monotonic() - t0, 3)
    return r


def took(r: HostStop, said: dict[str, Any]) -> None:
    """Fill ``r`` from what ``_host-stop`` printed (pure; see stop_here)."""
    for name in r.asked:
        got = said["agents"][name]
        if got.get("error"):
            r.failed[name] = str(got["error"])
            continue
        (r.stopped if got.get("ended") else r.gone).append(name)
        if got.get("pushed"):
            r.pushed[name] = str(got["branch"])
        elif got.get("branch"):
            r.not_pushed[name] = str(got.get("reason") or "not pushed")
    r.left = list(said.get("left") or [])
    r.session_ended = bool(said.get("session_ended"))
    r.done = True


def stop_hosts(
    cfg: Config,
    *,
    timeout: float = STOP_TIMEOUT,
    on_host: Callable[[HostStop], None] | None = None,
) -> list[HostStop]:
    """Every host with agents of ours (:func:`plan`), called at once; each
    agent a host ended is killed here. ``on_host`` gets each host's result
    as it comes (in this thread). The results, by host name."""
    known = hosts(cfg)
    todo = plan(registry.list_agents(cfg.data), known)
    if not todo:
        return []
    results: list[HostStop] = []
    with ThreadPoolExecutor(max_workers=min(16, len(todo))) as pool:
        futures = [
            pool.submit(stop_host, cfg, known[h], names, timeout=timeout)
            for h, names in todo.items()
        ]
        for future in as_completed(futures):
            r = future.result()
            if r.done:
                for name in [*r.stopped, *r.gone]:
                    why = f"{REASON} (host {r.host})"
                    registry.transition(cfg.data, name, "killed", reason=why, strict=False)
            results.append(r)
            if on_host is not None:
                on_host(r)
    return sorted(results, key=lambda r: r.host)


def stop_here(spec: dict[str, Any]) -> dict[str, Any]:
    """The host's side of :func:`stop_host`: each named agent ended as
    `cmux kill` ends it (its branch pushed to the trunk first), then this
    project's session here when none of its agents is left live. A name
    this host has no record of (or one of another host's) is reported
    ended: nothing of it runs here."""
    from cmux.agents import session, spawn
    from cmux.config import CONFIG_NAME, load_config

    root = Path(spec["root"])
    names: list[str] = list(spec["names"])
    if not (root / CONFIG_NAME).is_file():  # no project there ([hosts] dir changed?)
        why = f"no project of this trunk at {root} on this host"
        return {"agents": {n: {"error": why} for n in names}, "left": [], "session_ended": False}
    cfg = load_config(root)
    agents: dict[str, dict[str, Any]] = {}
    for name in names:
        if not registry.exists(cfg.data, name) or registry.get(cfg.data, name).host:
            agents[name] = {"ended": False}
            continue
        was = registry.get(cfg.data, name)
        try:
            k = spawn.kill(cfg, name, force=True, reason=REASON)
        except CmuxError as exc:
            agents[name] = {"ended": False, "error": exc.message}
            continue
        agents[name] = {
            "ended": was.state != "killed",
            "branch": k.kept_branch,
            "pushed": bool(k.kept_branch) and k.reason.startswith("pushed"),
            "reason": k.reason,
        }
    left = [a.name for a in registry.list_agents(cfg.data) if not a.host and a.live]
    ended = False
    if not left:
        ended = session.stop(cfg).was_running
    return {"agents": agents, "left": left, "session_ended": ended}


def reconcile(cfg: Config, *, timeout: float = 10.0) -> list[Agent]:
    """`cmux start`'s look at the hosts that have agents here not gone: each
    takes the state its host reports (unreachable while it does not answer;
    cmux/remote/place.py sync_states). The agents whose record changed."""
    from cmux.remote.place import sync_states
    from cmux.remote.probe import probe_all

    todo = plan(registry.list_agents(cfg.data), hosts(cfg))
    if not todo:
        return []
    return sync_states(cfg, probe_all(cfg, only=list(todo), timeout=timeout))
