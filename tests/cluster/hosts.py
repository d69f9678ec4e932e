"""Two or more "hosts" on one machine for the cluster tier and the bench: each
a cmux project (its own git repository and data root) with its own node
daemon process (`cmux node`), all on one nats-server on loopback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.cluster.natsd import NatsServer
from tests.helpers import Project, make_repo, wait_until

PROJECT_ID = "ptest"  # every host of one test names the project alike


@dataclass
class Host:
    name: str
    project: Project
    natsd: NatsServer
    ack_wait: float = 1.0
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    _cfg: Any = field(default=None, repr=False)

    @classmethod
    def make(cls, name: str, tmp: Path, env: dict[str, str], natsd: NatsServer) -> Host:
        p = Project(root=make_repo(tmp / f"host-{name}"), env=env)
        p.ok("init")
        return cls(name, p, natsd)

    @property
    def cfg(self) -> Any:
        if self._cfg is None:
            self._cfg = self.project.config()
        return self._cfg

    @property
    def data(self) -> Any:
        return self.cfg.data

    # -- its node daemon -----------------------------------------------------------------

    def start_node(self) -> None:
        self.starts += 1
        argv = [sys.executable, "-m", "cmux", "node", "--nats", self.natsd.url]
        argv += ["--host", self.name, "--project", PROJECT_ID, "--token", self.natsd.token]
        argv += ["--ack-wait", str(self.ack_wait)]
        err = self.project.root.parent / f"node-{self.name}-{self.starts}.err"
        with open(err, "wb") as log:
            self.proc = subprocess.Popen(
                argv, cwd=self.project.root, env=self.project.env, stdout=log, stderr=log
            )
        starts = self.starts
        wait_until(
            lambda: (
                self.proc is not None
                and (self.proc.poll() is not None or self.count_events("node-start") >= starts)
            ),
            timeout=15,
            what=f"node {self.name} to start",
        )
        assert self.proc.poll() is None, self.node_log()

    def kill_node(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(10)
        self.proc = None

    def node_log(self) -> str:
        path = Path(self.data.state_dir) / "node.log"
        errs = sorted(self.project.root.parent.glob(f"node-{self.name}-*.err"))
        text = "".join(p.read_text(errors="replace") for p in errs)
        return text + (path.read_text(errors="replace") if path.exists() else "")

    # -- its agents and mail ---------------------------------------------------------------

    def agent(self, name: str, *, role: str = "worker", host: str | None = None) -> None:
        """A registry record as spawn writes it, and its mailbox."""
        from cmux.agents import registry
        from cmux.mail import store

        registry.save(self.data, registry.Agent(name=name, role=role, state="idle"))
        if host is not None:  # the hosts engineer's field, until the record has it
            path = self.data.agent_file(name)
            rec = json.loads(path.read_text())
            rec["host"] = host
            path.write_text(json.dumps(rec))
        store.ensure(self.data, name)

    def send(self, to: str, body: str, sender: str) -> str:
        """`mailbox send` as ``sender`` does it (cmux.mail.store.send): the message id."""
        from cmux.mail import store

        return store.send(self.cfg, to=to, body=body, sender=sender).id

    def spooled_for(self, agent: str) -> str | None:
        from cmux.mail import maildir

        return maildir.remote_host(self.data, agent)

    def files(self, agent: str, folder: str) -> list[str]:
        try:
            return sorted(os.listdir(Path(self.data.mailbox_path(agent)) / folder))
        except FileNotFoundError:
            return []

    def inbox_ids(self, agent: str) -> list[str]:
        """Every message id in ``agent``'s new/ and cur/ (a file per message)."""
        names = self.files(agent, "new") + self.files(agent, "cur")
        return [n.split(".json")[0] for n in names if ".json" in n]

    def events(self) -> list[dict[str, Any]]:
        return self.project.events()

    def count_events(self, event: str) -> int:
        path = Path(self.data.events_path)
        if not path.exists():
            return 0
        return path.read_text().count(f'"event": "{event}"')


@contextmanager
def nodes_running(*hosts: Host) -> Iterator[None]:
    """Each host's node daemon started, in order; every one killed at the
    end, even when a start or the test fails."""
    try:
        for host in hosts:
            host.start_node()
        yield
    finally:
        for host in hosts:
            host.kill_node()
