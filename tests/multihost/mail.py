"""What the multihost mail tests share: the senders' command, where each
host keeps its data, and what its routers delivered."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.multihost.conftest import Cluster, Host

ROUNDS = ("r1", "r2")  # r2 runs while b's link is cut


def sender(go: Path, to: tuple[str, ...], n: int, rounds: tuple[str, ...] = ROUNDS) -> str:
    """An agent's command: for each round (``r1``, ``r2``, ...), once the file
    ``<go>-<round>`` exists, ``n`` messages to each of ``to`` in turn (bodies
    ``<me>-<round>-<to>-<i>``); then idle. A failed send is written beside
    ``go`` for the test to show."""
    line = ""
    for tag in rounds:
        fail = f"{go.parent}/fail-{tag}-$CMUX_AGENT"
        sends = "".join(
            f'mailbox send {r} "$CMUX_AGENT-{tag}-{r}-$i" >/dev/null 2>>{fail} || break; '
            for r in to
        )
        line += (
            f"until [ -e {go}-{tag} ]; do sleep 0.05; done; i=1; while [ $i -le {n} ]; do "
            f"{sends}i=$((i+1)); done; "
        )
    return line + "exec sleep 600"


def data_of(host: Host, cluster: Cluster) -> Path:
    """The host's data root of the project: the trunk's on a, the spawned
    project's home under ``[hosts.NAME] dir`` elsewhere."""
    if host.name == "a":
        return cluster.project / ".cmux"
    found = list(host.dir.glob("*/.cmux"))
    assert len(found) == 1, found
    return found[0]


def events_of(root: Path) -> list[dict[str, Any]]:
    path = root / "state" / "events.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def delivered(root: Path, agent: str) -> list[tuple[str, str]]:
    """(id, sender) of every delivery the router on that host made to ``agent``."""
    return [
        (e["id"], e["sender"])
        for e in events_of(root)
        if e.get("event") == "deliver" and e.get("agent") == agent
    ]


def bodies(root: Path, agent: str, ids: list[str]) -> list[str]:
    """The bodies of the delivered ``ids`` in ``agent``'s Maildir, in that order."""
    cur = root / "mailbox" / agent / "cur"
    by_id = {p.name.split(".json")[0]: p for p in cur.iterdir()}
    return [json.loads(by_id[i].read_text())["body"] for i in ids]


def remote_of(root: Path, agent: str) -> str | None:
    marker = root / "mailbox" / agent / "remote"
    return marker.read_text().strip() if marker.exists() else None


def states_there(cluster: Cluster) -> dict[str, str]:
    out = {}
    for name, host in (("w1", "b"), ("w2", "c")):
        rec = data_of(cluster.hosts[host], cluster) / "state" / "agents" / f"{name}.json"
        out[name] = json.loads(rec.read_text())["state"]
    return out
