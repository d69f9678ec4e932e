"""The side of ``cmux spawn --host`` that runs on the other host.

``cmux _host-spawn`` (run there over ssh by cmux/remote/place.py, the spec
as JSON on its stdin) calls :func:`spawn_here`. On this host, under the
``[hosts.NAME] dir`` it was given:

- ``<dir>/<project key>/`` is the project's home here: a cmux.toml with the
  trunk host's agent settings (profiles, [claude], [mail], [cluster] with
  this host's name) and its data root ``.cmux/``; no git repository;
- its session runs the monitor only (router, watchdogs), no supervisor;
- each worker works in ``.cmux/worktrees/<name>``: a ``git clone`` of the
  trunk repository, fetched from the trunk host over ssh, on the new branch
  ``cmux/<name>`` made at the trunk's branch;
- the worker's record names the trunk's URL (``trunk``): its branch is
  pushed there, never forced, at ``mailbox done`` and at ``cmux kill``
  (:func:`push_branch`), so the merge queue on the trunk host lands it as
  any other and nothing stays only on this disk;
- the parent (on the trunk host) is a record here with its ``host`` set, so
  its mail (the done report) waits in its box here, the spool the cluster's
  node daemon sends on; no router types it anywhere.

The agent's environment is the one of a local agent (CMUX_AGENT, CMUX_HOME
of this host's data root, the tools on PATH), plus GIT_SSH_COMMAND for the
trunk.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cmux import events, git
from cmux.agents.registry import Agent
from cmux.config import CONFIG_NAME, Config, Host, hosts, load_config
from cmux.errors import AgentError, UsageError
from cmux.fsutil import atomic_write
from cmux.ssh import Ssh

# What of the trunk host's cmux.toml a worker host keeps (health checks and
# the merge queue stay with the trunk).
COPIED = ("claude", "mail", "profiles")


def project_key(trunk: str) -> str:
    """A short stable name for the project of the trunk at ``trunk``: its
    folder's name and a hash of the URL (several projects share a host)."""
    path = urlsplit(trunk).path if "://" in trunk else trunk.rpartition(":")[2]
    base = re.sub(r"[^A-Za-z0-9_-]+", "-", os.path.basename(path.rstrip("/"))).strip("-")
    digest = hashlib.sha1(trunk.encode()).hexdigest()[:8]
    return f"{(base or 'project')[:24]}-{digest}"


def project_dir(dir: str, trunk: str) -> str:
    return os.path.join(os.path.expanduser(dir), project_key(trunk))


def trunk_host(trunk: str) -> Host | None:
    """The trunk's host as ssh reaches it, for a ``ssh://`` or scp-like URL
    (None: a path, or another kind of URL git handles alone)."""
    if "://" in trunk:
        parts = urlsplit(trunk)
        if parts.scheme not in {"ssh", "git+ssh"} or not parts.hostname:
            return None
        user = f"{parts.username}@" if parts.username else ""
        return Host(name="trunk", ssh=f"{user}{parts.hostname}", dir="", port=parts.port)
    m = re.fullmatch(r"([^/:]+):.*", trunk)
    return Host(name="trunk", ssh=m.group(1), dir="") if m else None


def git_env(cfg: Config, trunk: str) -> dict[str, str]:
    """GIT_SSH_COMMAND for reaching the trunk: cmux's own ssh options."""
    host = trunk_host(trunk)
    return {"GIT_SSH_COMMAND": Ssh(host, cfg.data).command_line()} if host else {}


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise UsageError(f"cannot carry the setting {v!r} to another host")


def toml_text(raw: dict[str, Any]) -> str:
    """``raw`` (sections of plain values, [profiles.NAME] tables) as TOML."""
    out = ["# Written by cmux spawn --host: the settings of the trunk host.\n"]
    for section, body in raw.items():
        plain = {k: v for k, v in body.items() if not isinstance(v, dict)}
        out.append(f"[{section}]")
        out += [f"{k} = {_toml_value(v)}" for k, v in plain.items()]
        for sub, table in body.items():
            if isinstance(table, dict):
                out.append(f"[{section}.{sub}]")
                out += [f"{k} = {_toml_value(v)}" for k, v in table.items()]
        out.append("")
    return "\n".join(out)


def project_id(cfg: Config) -> str:
    """``[cluster] project``, else a short id of the trunk repository: its
    root commit (a clone has the same), else a hash of the project path.
    The id is in every NATS subject (cmux/cluster/bridge.py); a worker host
    has no repository of its own (its project home is a folder), so
    :func:`settings_for` pins the trunk's id there."""
    given = cfg.section("cluster").get("project")
    if given:
        return str(given)
    try:
        chain = git.Repo(Path(cfg.project)).rev_list("HEAD", first_parent=True)
        if chain:
            return chain[-1][:12]
    except Exception:  # not a git repository: fall back
        pass
    return "p" + hashlib.sha1(cfg.project.encode()).hexdigest()[:11]


def settings_for(cfg: Config, host: str) -> dict[str, Any]:
    """What a worker host's cmux.toml holds, from the trunk host's ``cfg``:
    the agent settings, and [cluster] with that host's name and (with NATS)
    the trunk's project id, so its node daemon uses the trunk's subjects."""
    raw: dict[str, Any] = {"cmux": {"agent": cfg.agent}}
    for name in COPIED:
        if cfg.section(name):
            raw[name] = cfg.section(name)
    cluster = dict(cfg.section("cluster"))
    cluster["host"] = host
    if cluster.get("nats"):
        cluster["project"] = project_id(cfg)
        there = hosts(cfg).get(host)
        if there is not None:
            cluster["nats"] = own_server_first(str(cluster["nats"]), there.address)
    raw["cluster"] = cluster
    return raw


def own_server_first(urls: str, address: str) -> str:
    """``[cluster] nats`` (comma-separated URLs of a NATS cluster) for the host
    at ``address``: the URL of a server on that address first, the others
    after in their order, so each host's node talks to its own server while
    it is up (the client tries them in order: cmux/cluster/nats.py). No URL
    on that address: as given."""
    parts = [u.strip() for u in urls.split(",") if u.strip()]
    own = [u for u in parts if urlsplit(u).hostname == address]
    return ",".join(own + [u for u in parts if u not in own])


def spawn_here(spec: dict[str, Any]) -> dict[str, Any]:
    """Prepare the checkout and start the agent on this host (see the module)."""
    from cmux.agents import registry, session, spawn

    name, trunk, base = spec["name"], spec["trunk"], spec["base"]
    registry.validate_name(name)
    root = project_dir(spec["dir"], trunk)
    os.makedirs(root, exist_ok=True)
    atomic_write(os.path.join(root, CONFIG_NAME), toml_text(spec["settings"]))
    cfg = load_config(root)
    tmux = session.ensure_host_session(cfg)
    path, branch = cfg.data.worktree(name), f"cmux/{name}"
    env = git_env(cfg, trunk)
    if path.exists():
        if registry.exists(cfg.data, name) and registry.get(cfg.data, name).live:
            raise AgentError(f"{name} already runs on this host", f"cmux kill {name} first")
        _clear_old_clone(path, branch, trunk, env)
    path.parent.mkdir(parents=True, exist_ok=True)
    repo = git.clone(trunk, path, env=env)
    repo.switch_new(branch, f"origin/{base}")
    parent = spec.get("parent") or "supervisor"
    far_host = spec.get("from_host") or "trunk"
    if not registry.exists(cfg.data, parent):
        role = "supervisor" if parent == "supervisor" else "worker"
        far = Agent(name=parent, role=role, state="idle", host=far_host)
        registry.save(cfg.data, far, event=None)
    spool(cfg, parent, far_host)
    agent = spawn.spawn(
        cfg,
        name,
        task=spec.get("task", ""),
        profile=spec.get("profile"),
        command=spec.get("command"),
        parent=parent,
        tmux=tmux,
        checkout=(path, branch),
        trunk=trunk,
        env=env,
    )
    return {"agent": agent.to_dict(), "project": root}


def _clear_old_clone(path: Path, branch: str, trunk: str, env: dict[str, str]) -> None:
    """Remove the clone an earlier worker of the name left, but only when
    all of it is on the trunk (no uncommitted change, its branch's tip is
    the trunk's ``branch``); else refuse, having removed nothing."""
    import shutil

    from cmux.errors import GitError

    try:
        repo = git.Repo(path)
        head = repo.verify(f"refs/heads/{branch}")
        safe = not repo.has_changes() and head == repo.remote_ref(
            trunk, f"refs/heads/{branch}", env=env
        )
    except GitError:
        safe = False
    if not safe:
        raise AgentError(
            f"{path} is left from an earlier worker of that name, with work not on the trunk",
            f"choose another name, or push or drop that work there first (branch {branch})",
        )
    shutil.rmtree(path)


def spool(cfg: Config, name: str, host: str) -> None:
    """Make ``name``'s box here the spool of an agent on ``host``: its
    ``remote`` marker (cmux/mail/maildir.py) first, then the folders, so no
    router here ever types or deadletters its mail; the node daemon sends it."""
    from cmux.mail import maildir, store

    os.makedirs(maildir.box(cfg.data, name), exist_ok=True)
    atomic_write(maildir.remote_file(cfg.data, name), host + "\n")
    store.ensure(cfg.data, name)


def push_branch(cfg: Config, agent: Agent) -> None:
    """Push ``agent``'s branch from its clone to the trunk repository, as
    the same branch; never forced (a rejected push raises GitError)."""
    if not agent.trunk or not agent.worktree or not agent.branch:
        return
    repo = git.Repo(Path(agent.worktree))
    ref = f"refs/heads/{agent.branch}"
    repo.push(agent.trunk, f"{ref}:{ref}", env=git_env(cfg, agent.trunk))
    events.record(cfg.data, "branch-pushed", agent.name, branch=agent.branch, trunk=agent.trunk)
