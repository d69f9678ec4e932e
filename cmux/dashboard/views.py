"""What each dashboard page shows, as plain data (the read models).

Every function reads through the core the CLI uses (cmux.status, the mail
store, the journal, health, cost, the merge queue, the event log) and
returns dicts and lists the pages (cmux/dashboard/pages.py) and the JSON
routes render. Nothing here writes the data root.

Invariant: no file outside the data root is ever read for a name a request
gave. A name is checked with ``paths.valid_name`` (else ``BadName``), and a
file is opened only when its real path, symlinks resolved, lies under the
data root's (else ``Outside``): a symlink planted in the data root that
points out is refused, not followed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from cmux import events
from cmux.config import Config
from cmux.errors import CmuxError, UsageError
from cmux.paths import DataRoot, valid_name
from cmux.tmux import Tmux

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cmux.cluster.feed import TeamFeed

PREVIEW_LINES = 4
EVENTS_KEPT = 200  # the newest events a page shows
MAIL_KEPT = 200  # the newest messages a page shows
TAIL_BYTES = 4 << 20  # how much of the event log the mail trails and history read


class BadName(UsageError):
    """A name in a request that is not an agent name (400)."""


class Outside(CmuxError):
    """A file whose real path is outside the data root (404: never read)."""


def check_name(name: str) -> str:
    if not valid_name(name):
        raise BadName(
            f"{name[:40]!r} is not an agent name",
            "names are 1-32 of a-z, 0-9, '-', '_', starting with a letter",
        )
    return name


def inside(data: DataRoot, path: Path | str) -> str | None:
    """``path``'s real path when it lies under the data root, else None."""
    root = os.path.realpath(data.home)
    real = os.path.realpath(path)
    if real == root or real.startswith(root.rstrip(os.sep) + os.sep):
        return real
    return None


def read_inside(data: DataRoot, path: Path | str, *, limit: int = 1 << 20) -> str | None:
    """The text of ``path`` (its last ``limit`` bytes) if it is a regular file
    under the data root; None when it does not exist. Raises Outside for a
    path that resolves out of the data root."""
    if not os.path.lexists(path):
        return None
    real = inside(data, path)
    if real is None:
        raise Outside(f"{os.path.basename(str(path))} is not inside the data root")
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        import stat as st_mod

        if not st_mod.S_ISREG(st.st_mode):
            return None
        if st.st_size > limit:
            os.lseek(fd, st.st_size - limit, os.SEEK_SET)
        chunks = []
        while True:
            b = os.read(fd, 1 << 16)
            if not b:
                break
            chunks.append(b)
    finally:
        os.close(fd)
    return b"".join(chunks).decode("utf-8", errors="replace")


# -- the team ---------------------------------------------------------------------------


def status(
    cfg: Config,
    *,
    names: list[str] | None = None,
    reconcile: bool = True,
    feed: TeamFeed | None = None,
) -> list[dict]:
    """`cmux status --json`'s rows (of ``names`` only, when given). With
    [cluster] nats, the other hosts' agents too: from ``feed`` (the live
    stream's, cmux/cluster/feed.py) while it is connected, else from NATS
    as `cmux status` asks."""
    from cmux.status import collect_status

    team = feed.agents if feed is not None and feed.connected else None
    return collect_status(cfg, reconcile=reconcile, names=names, team=team)


def elsewhere(cfg: Config, name: str, row: dict[str, Any] | None = None) -> str | None:
    """The host ``name`` lives on when that is not this one (its record here
    says ``host``, or only another host has it), else None. ``row``: its
    status row, when the caller has it."""
    from cmux.agents import registry
    from cmux.errors import UnknownAgent

    try:
        return registry.get(cfg.data, check_name(name)).host
    except UnknownAgent:
        pass
    if row is None and cfg.section("cluster").get("nats"):
        row = next(iter(status(cfg, names=[name], reconcile=False)), None)
    return str(row["host"]) if row and row.get("host") else None


def far_preview(row: dict[str, Any]) -> str:
    """What a row of an agent on another host shows instead of its pane."""
    return f"on host {row['host']}: cmux attach {row['name']}"


def reader(cfg: Config) -> Tmux:
    """The dashboard's handle on tmux for reading panes: one control-mode
    client (no output streamed to it), so a read is a line on a pipe rather
    than a new process; processes while it cannot attach."""
    tmux = Tmux.for_config(cfg)
    tmux.open_control(cfg.session_name)
    return tmux


def previews(cfg: Config, rows: list[dict[str, Any]], tmux: Tmux | None = None) -> dict[str, str]:
    """The last lines of each live agent's pane (empty for the others, and
    for a pane id left from another tmux server: it may name another's pane).
    The panes are read a few at a time (each read is a tmux call)."""
    from concurrent.futures import ThreadPoolExecutor

    from cmux.agents import registry
    from cmux.agents.screen import last_lines
    from cmux.errors import TmuxError

    out: dict[str, str] = {r["name"]: far_preview(r) if r.get("host") else "" for r in rows}
    wanted = {r["name"] for r in rows if not r.get("host")}
    agents = [a for a in registry.list_agents(cfg.data) if a.name in wanted]
    live = [a for a in agents if a.live and a.pane_id]
    if not live:
        return out
    tmux = tmux or Tmux.for_config(cfg)
    server = tmux.server_id()
    live = [a for a in live if registry.on_server(a, server)]

    def read(pane: str) -> str:
        try:
            return last_lines(tmux.capture(pane), PREVIEW_LINES)
        except TmuxError:
            return ""

    with ThreadPoolExecutor(max_workers=min(8, len(live) or 1)) as pool:
        for a, text in zip(live, pool.map(read, [str(a.pane_id) for a in live]), strict=True):
            out[a.name] = text
    return out


def screen(cfg: Config, name: str, tmux: Tmux | None = None) -> str:
    """The whole screen of ``name``: its live pane, else the copy saved when
    it closed (read only from inside the data root)."""
    from cmux.agents import registry
    from cmux.errors import TmuxError

    host = elsewhere(cfg, name)
    if host:
        return (
            f"({name} lives on host {host}: its screen is there. "
            f"`cmux attach {name}` on {host} shows it.)"
        )
    agent = registry.get(cfg.data, check_name(name))
    tmux = tmux or Tmux.for_config(cfg)
    if agent.pane_id and agent.state != "killed":
        try:
            if registry.on_server(agent, tmux.server_id()):
                return tmux.capture(agent.pane_id, history=True).rstrip()
        except TmuxError:
            pass
    saved = read_inside(cfg.data, cfg.data.logs_dir / f"{name}.log")
    return saved or ""


def context(cfg: Config, name: str) -> str:
    """``name``'s context file (contexts/NAME.md), read only inside the data root."""
    from cmux.agents import registry

    host = elsewhere(cfg, name)
    if host:
        return f"({name} lives on host {host}: its context file is there.)"
    registry.get(cfg.data, check_name(name))  # an agent cmux knows
    return read_inside(cfg.data, cfg.data.context_file(name)) or ""


def tail_events(data: DataRoot, *, max_bytes: int = TAIL_BYTES) -> list[dict[str, Any]]:
    """The events of the last ``max_bytes`` of the log, oldest first."""
    try:
        size = os.path.getsize(data.events_path)
    except OSError:
        return []
    start = max(0, size - max_bytes)
    batch, _ = events.read(data, offset=start)
    if start and batch:
        batch = batch[1:]  # the first line may have been cut
    return batch


def history(cfg: Config, name: str, *, limit: int = 200) -> list[dict[str, Any]]:
    """The events about ``name``, newest first."""
    check_name(name)
    mine = [e for e in tail_events(cfg.data) if e.get("agent") == name or e.get("by") == name]
    return mine[::-1][:limit]


def recent_events(cfg: Config, *, limit: int = EVENTS_KEPT) -> list[dict[str, Any]]:
    """The newest events, newest first; with [cluster] nats, every host's
    (this host's log merged by time with CMUX_EVENTS, each with its host)."""
    local = tail_events(cfg.data, max_bytes=512 * 1024)
    if cfg.section("cluster").get("nats"):  # one machine: not even the import
        from cmux.cluster import view

        local = view.team_events(cfg, local, last=limit).events
    return local[::-1][:limit]


# -- mail -------------------------------------------------------------------------------


def trails(log: list[dict[str, Any]]) -> dict[str, dict[str, str | None]]:
    """Per message id: when it was sent, delivered and read (None: not yet)."""
    out: dict[str, dict[str, str | None]] = {}
    keys = {"send": "sent", "deliver": "delivered", "read": "read"}
    for e in log:
        key = keys.get(str(e.get("event")))
        mid = e.get("id")
        if key is None or not mid:
            continue
        t = out.setdefault(str(mid), {"sent": None, "delivered": None, "read": None})
        if t[key] is None:
            t[key] = str(e.get("ts") or "")
    return out


def mail_row(msg: Any, trail: dict[str, str | None] | None) -> dict[str, Any]:
    d = msg.as_dict()
    d["trail"] = trail or {"sent": d.get("ts"), "delivered": None, "read": None}
    return d


def mail(
    cfg: Config, *, agent: str | None = None, kind: str | None = None, limit: int = MAIL_KEPT
) -> list[dict[str, Any]]:
    """Messages of every mailbox, newest first, with their trails; only those
    from or to ``agent`` and of ``kind`` when given."""
    from cmux.mail import store

    if agent:
        check_name(agent)
    msgs = []
    for box in store.recipients(cfg.data):
        for m in store.read_all(cfg.data, box):
            if agent and agent not in (m.sender, m.to):
                continue
            if kind and m.kind != kind:
                continue
            msgs.append(m)
    msgs.sort(key=lambda m: (m.ts, m.id), reverse=True)
    msgs = msgs[:limit]
    t = trails(tail_events(cfg.data)) if msgs else {}
    return [mail_row(m, t.get(m.id)) for m in msgs]


def one_message(cfg: Config, to: str, msg_id: str, log: list[dict[str, Any]]) -> dict | None:
    """The mail row of message ``msg_id`` in ``to``'s box (None if not there)."""
    from cmux.mail import store

    if not valid_name(to):
        return None
    m = store.find(cfg.data, to, msg_id)
    return None if m is None else mail_row(m, trails(log).get(msg_id))


def deadletters(cfg: Config) -> list[dict[str, Any]]:
    from cmux.mail import deadletter

    return deadletter.listing(cfg.data)


def mail_names(cfg: Config) -> list[str]:
    """Who one can write to: the agents, then the other mailboxes."""
    from cmux.agents import registry
    from cmux.mail import store

    names = [a.name for a in registry.list_agents(cfg.data)]
    return names + [n for n in store.recipients(cfg.data) if n not in names and n != "human"]


# -- journal ----------------------------------------------------------------------------


def journal(cfg: Config, q: str = "", *, days: int = 7) -> dict[str, Any]:
    """Search hits (best first) for ``q``, the recent entries (newest first)
    and MEMORY.md; a journal file that resolves outside the data root is skipped."""
    from cmux.journal import store
    from cmux.ops import journal as ops

    hits = []
    if q.strip():
        found = ops.search(cfg.data, q, limit=20, marks=("\x02", "\x03"))
        # The index reads every day file; a hit from one that resolves out of
        # the data root (a planted symlink) is not shown.
        hits = [h.to_dict() for h in found if inside(cfg.data, h.file)]
    entries = []
    for path in store.daily_files(cfg.data)[-days:]:
        try:
            text = read_inside(cfg.data, path)
        except Outside:
            continue
        if text is None:
            continue
        for e in store.parse_text(text, date=path.stem, file=str(path)):
            entries.append(
                {
                    "date": e.date,
                    "time": e.time,
                    "agent": e.agent,
                    "title": e.title,
                    "tags": e.tags,
                    "body": e.body,
                }
            )
    entries.reverse()
    try:
        memory = read_inside(cfg.data, cfg.data.memory_file) or ""
    except Outside:
        memory = ""
    return {"q": q, "hits": hits, "recent": entries[:100], "memory": memory}


# -- health, cost -----------------------------------------------------------------------


def health(cfg: Config) -> dict[str, Any]:
    """`cmux health --json`, the rescues with the commands that bring work
    back, and the merge queue."""
    from cmux.errors import GitError
    from cmux.health.view import collect_health, rescue_views
    from cmux.ops import merge

    h = collect_health(cfg)
    rescues = []
    try:
        for v in rescue_views(cfg):
            r = v.rescue
            rescues.append(
                {
                    "id": r.id,
                    "branch": r.branch,
                    "ts": r.ts,
                    "reason": r.reason,
                    "auto": r.auto,
                    "status": r.status,
                    "from": r.head,
                    "to": r.target,
                    "commands": [{"what": w, "command": c} for w, c in r.commands()],
                }
            )
    except (GitError, CmuxError):
        pass
    h["rescues"] = rescues
    h["merge_queue"] = merge.rows(cfg)
    return h


def cost(cfg: Config) -> dict[str, Any]:
    """Tokens per agent now, and over time (from the transcripts' timestamps)."""
    from cmux.agents import cost as costs
    from cmux.agents import registry

    agents = registry.list_agents(cfg.data)
    per = costs.usage(cfg.data, agents)
    series = {a.name: costs.timeline(cfg.data, a) for a in agents}
    return {
        "agents": [{"name": a.name, "profile": a.profile, **per[a.name].to_dict()} for a in agents],
        "series": series,
    }
