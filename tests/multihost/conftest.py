"""The multi-host tier: three hosts, each a Linux network namespace with its
own sshd, made by the test and torn down after it, even when it fails.

Run as root only (``ip netns``, an sshd per namespace); skipped otherwise,
with the reason on one line. bin/test installs Debian's openssh-server when
it is missing.

The network: namespaces ``a``, ``b``, ``c`` (one veth each) and a hub
namespace holding the bridge they all hang on, addresses on a private /24
(10.199.N.0/24, N unique to the run). ``cut(name)`` takes the host's end of
the link down in the hub, as an unplugged cable would; ``mend(name)`` puts it
back.

The hosts share the filesystem, so each has its own folder with its own
HOME, tmux socket folder, git config and sshd (its host key, its
authorized_keys). One client key, made for the run, is authorized on all
three; its authorized_keys line sets the host's environment (HOME, PATH with
this checkout's cmux, TMUX_TMPDIR, CMUX_SSH_CONFIG), so a login to ``b``
lands in b's HOME. No password login anywhere. Every process left in a
namespace at the end (sshd, its sessions, tmux servers, ssh masters) is
ended, by the namespace's own pid list, and the namespaces deleted.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.cluster.natsd import BINARY, available
from tests.helpers import Run, make_repo, private_env, wait_until

SSHD = "/usr/sbin/sshd"
NAMES = ("a", "b", "c")
TOKEN = "cmux-multihost-token"  # the natsd fixture's
PORT = 4222  # host a's own namespace: nothing else listens there
BIN = Path(sys.executable).parent  # this checkout's venv: cmux, python


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "the multihost tier needs root (network namespaces, an sshd each): run it as root"
    for tool in ("ip", "ssh", "ssh-keygen", "tmux", "git"):
        if shutil.which(tool) is None:
            return f"the multihost tier needs {tool}"
    if not os.path.exists(SSHD):
        return f"the multihost tier needs {SSHD} (Debian's openssh-server; bin/test installs it)"
    return None


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=30)


@dataclass
class Host:
    """One host of the cluster: its namespace, address and private folders."""

    name: str
    ns: str
    ip: str
    root: Path  # its own folder (HOME, sshd, checkouts)
    env: dict[str, str]
    veth_hub: str  # its link's end in the hub (cut and mend)
    sshd: subprocess.Popen[bytes] | None = None

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def dir(self) -> Path:
        """Where its checkouts and data root live ([hosts.NAME] dir)."""
        return self.root / "work"

    def run(
        self, *argv: str, cwd: Path | None = None, timeout: float = 60, input: str | None = None
    ) -> Run:
        """Run ``argv`` on this host: in its namespace, with its environment."""
        t0 = time.monotonic()
        proc = subprocess.run(
            ["ip", "netns", "exec", self.ns, *argv],
            cwd=cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            check=False,
        )
        return Run(proc.returncode, proc.stdout, proc.stderr, (time.monotonic() - t0) * 1000)

    @property
    def cmux_path(self) -> Path:
        return BIN / "cmux"

    def cmux(self, *args: str, cwd: Path | None = None, timeout: float = 60) -> Run:
        return self.run(str(self.cmux_path), *args, cwd=cwd, timeout=timeout)


@dataclass
class Cluster:
    hosts: dict[str, Host]
    hub: str
    key: Path  # the client key authorized on every host
    ssh_config: Path
    net: str  # 10.199.N
    project: Path = field(default_factory=Path)  # the trunk repository, on host a

    def cut(self, name: str) -> None:
        sh("ip", "-n", self.hub, "link", "set", self.hosts[name].veth_hub, "down")

    def mend(self, name: str) -> None:
        sh("ip", "-n", self.hub, "link", "set", self.hosts[name].veth_hub, "up")

    def toml(self, extra: str = "") -> str:
        """cmux.toml of the project on a: b and c as hosts."""
        a = self.hosts["a"]
        lines = [
            "[cmux]",
            'agent = "shell"',
            "[cluster]",
            'host = "a"',
            f'trunk = "ssh://root@{a.ip}{self.project}"',
        ]
        for h in (self.hosts["b"], self.hosts["c"]):
            lines += [
                f"[hosts.{h.name}]",
                f'ssh = "root@{h.ip}"',
                f'dir = "{h.dir}"',
                f'cmux = "{BIN / "cmux"}"',
            ]
        return "\n".join(lines) + "\n" + extra


def _subnet() -> int:
    """A 10.199.N.0/24 no namespace of another run uses now."""
    used = sh("ip", "-all", "netns", "exec", "ip", "-4", "-o", "addr", check=False).stdout
    for n in [*range(os.getpid() % 200 + 20, 250), *range(20, 250)]:
        if f"10.199.{n}." not in used:
            return n
    raise RuntimeError("no free 10.199.N.0/24")


def _sshd_config(host: Host) -> Path:
    conf = host.root / "sshd_config"
    conf.write_text(
        "\n".join(
            [
                "Port 22",
                f"ListenAddress {host.ip}",
                f"HostKey {host.root / 'host_key'}",
                f"PidFile {host.root / 'sshd.pid'}",
                f"AuthorizedKeysFile {host.root / 'authorized_keys'}",
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "PermitRootLogin prohibit-password",
                "PermitUserEnvironment yes",
                "StrictModes no",
                "UsePAM no",
                "UseDNS no",
                "MaxStartups 100",
                "MaxSessions 100",
                "LogLevel ERROR",
            ]
        )
        + "\n"
    )
    return conf


def _end_namespace(ns: str) -> None:
    """End every process in ``ns`` (only the test's own live there), then it."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = sh("ip", "netns", "pids", ns, check=False).stdout.split()
        for pid in pids:
            try:
                os.kill(int(pid), sig)
            except (ProcessLookupError, ValueError):
                pass
        if not pids:
            break
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and sh("ip", "netns", "pids", ns, check=False).stdout:
            time.sleep(0.05)
    sh("ip", "netns", "del", ns, check=False)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    why = _why_not()
    if why:
        pytest.skip(why)
    os.makedirs("/run/sshd", exist_ok=True)  # sshd's privilege separation folder
    tag = f"cx{os.getpid() % 100000}"
    n = _subnet()
    hub = f"{tag}hub"
    base = Path(tempfile.mkdtemp(prefix="cxm", dir="/tmp"))  # short: sockets live here
    keys = base / "keys"
    keys.mkdir()
    sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "cmux-test", "-f", str(keys / "id"))
    ssh_config = base / "ssh_config"
    ssh_config.write_text(f"IdentityFile {keys / 'id'}\nIdentitiesOnly yes\n")
    made: list[str] = []
    hosts: dict[str, Host] = {}
    try:
        sh("ip", "netns", "add", hub)
        made.append(hub)
        sh("ip", "-n", hub, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", hub, "link", "set", "br0", "up")
        sh("ip", "-n", hub, "link", "set", "lo", "up")
        pub = (keys / "id.pub").read_text().strip()
        for i, name in enumerate(NAMES, start=1):
            ns = f"{tag}{name}"
            sh("ip", "netns", "add", ns)
            made.append(ns)
            inner, outer = f"{tag}{name}i", f"{tag}{name}o"
            sh("ip", "link", "add", inner, "netns", ns, "type", "veth", "peer", outer, "netns", hub)
            sh("ip", "-n", hub, "link", "set", outer, "master", "br0", "up")
            ip = f"10.199.{n}.{i}"
            sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", inner)
            sh("ip", "-n", ns, "link", "set", inner, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            root = base / name
            (root / "home").mkdir(parents=True)
            (root / "work").mkdir()
            (root / "tmux").mkdir()
            (root / "tmp").mkdir()  # TMPDIR: ssh's control sockets of long data roots
            env = private_env(root / "home", root / "tmux")
            env["TMPDIR"] = str(root / "tmp")
            env["PATH"] = f"{BIN}:{env.get('PATH', '/usr/bin:/bin')}"
            env["CMUX_SSH_CONFIG"] = str(ssh_config)
            host = Host(name, ns, ip, root, env, outer)
            sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(root / "host_key"))
            options = ",".join(
                f'environment="{k}={v}"'
                for k, v in env.items()
                if k
                in (
                    "HOME",
                    "PATH",
                    "TMUX_TMPDIR",
                    "GIT_CONFIG_GLOBAL",
                    "GIT_CONFIG_NOSYSTEM",
                    "LANG",
                    "CMUX_SSH_CONFIG",
                    "TMPDIR",
                )
            )
            (root / "authorized_keys").write_text(f"{options} {pub}\n")
            host.sshd = subprocess.Popen(
                ["ip", "netns", "exec", ns, SSHD, "-f", str(_sshd_config(host)), "-D", "-e"],
                stdout=subprocess.DEVNULL,
                stderr=open(root / "sshd.log", "wb"),  # noqa: SIM115 (closed with the process)
            )
            hosts[name] = host
        c = Cluster(hosts=hosts, hub=hub, key=keys / "id", ssh_config=ssh_config, net=f"10.199.{n}")
        for h in hosts.values():
            probe = [
                "ssh",
                *("-F", str(ssh_config), "-o", "BatchMode=yes", "-o", "ConnectTimeout=2"),
                *("-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"),
                f"root@{h.ip}",
                "true",
            ]

            def answers(probe: list[str] = probe) -> bool:
                return hosts["a"].run(*probe, timeout=10).code == 0

            wait_until(answers, timeout=15, what=f"sshd on {h.name} to let the test key in")
        c.project = make_repo(hosts["a"].root / "proj")
        yield c
    finally:
        for h in hosts.values():
            if h.sshd is not None:
                h.sshd.terminate()
        for ns in reversed(made):
            _end_namespace(ns)
        for h in hosts.values():
            if h.sshd is not None:
                h.sshd.wait(timeout=10)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def natsd(cluster: Cluster) -> Iterator[str]:
    """nats-server -js in a's namespace on a's address; its URL."""
    if not available():
        pytest.skip(f"the multihost mail tests need nats-server ({BINARY}; Debian's nats-server)")
    a = cluster.hosts["a"]
    store, log = a.root / "jetstream", a.root / "nats-server.log"
    argv = ["ip", "netns", "exec", a.ns, BINARY, "-a", a.ip, "-p", str(PORT), "-js"]
    argv += ["-sd", str(store), "--auth", TOKEN, "-l", str(log)]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
    try:
        wait_until(
            lambda: proc.poll() is not None or "Server is ready" in text(log),
            timeout=10,
            what="nats-server ready in a",
        )
        assert proc.poll() is None, text(log)
        yield f"nats://{a.ip}:{PORT}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def text(path: Path) -> str:
    """A log file's text, or "" when there is none yet."""
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


ROUTE_PORT = 6222  # each namespace's own: the cluster's routes


class NatsCluster:
    """Three nats-servers with JetStream, one in each of a, b and c's
    namespaces on that host's address, clustered (routes to the other two),
    each with its store under its host's root and the natsd fixture's token.

    Ready when each server's log says it knows the JetStream meta leader:
    then the cluster has a quorum and every server takes JetStream requests.
    :meth:`restart` ends one (SIGTERM) and starts it again on the same store,
    as an operator would; the other two keep the quorum meanwhile."""

    NAME = "cmuxtest"

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.starts: dict[str, int] = dict.fromkeys(NAMES, 0)

    def url(self, name: str) -> str:
        return f"nats://{self.cluster.hosts[name].ip}:{PORT}"

    @property
    def urls(self) -> str:
        """Every server's URL, a's first: [cluster] nats on a (each worker host
        gets its own first, cmux/remote/there.py)."""
        return ",".join(self.url(n) for n in NAMES)

    def log(self, name: str) -> Path:
        return self.cluster.hosts[name].root / f"nats-server.{self.starts[name]}.log"

    def start(self, name: str) -> None:
        h = self.cluster.hosts[name]
        self.starts[name] += 1
        routes = ",".join(
            f"nats://{self.cluster.hosts[o].ip}:{ROUTE_PORT}" for o in NAMES if o != name
        )
        argv = ["ip", "netns", "exec", h.ns, BINARY, "-a", h.ip, "-p", str(PORT), "-js"]
        argv += ["-sd", str(h.root / "jetstream"), "--auth", TOKEN, "-l", str(self.log(name))]
        argv += ["--server_name", name, "--cluster_name", self.NAME]
        argv += ["--cluster", f"nats://{h.ip}:{ROUTE_PORT}", "--routes", routes]
        # A link cut shows within seconds (a route or a client silent for 3
        # pings of 1 s, or not taking writes for 2 s, is closed), not after
        # the default 2 min x 2 or 10 s.
        conf = h.root / "nats-server.conf"
        conf.write_text('ping_interval: "1s"\nping_max: 3\nwrite_deadline: "2s"\n')
        argv += ["-c", str(conf)]
        self.procs[name] = subprocess.Popen(argv, stdin=subprocess.DEVNULL)

    def ready(self, name: str, timeout: float = 40) -> None:
        proc, log = self.procs[name], self.log(name)

        def up() -> bool:
            assert proc.poll() is None, f"nats-server {name} exited: {text(log)[-2000:]}"
            return "Server is ready" in text(log) and "metadata leader" in text(log)

        try:
            wait_until(up, timeout=timeout, interval=0.05, what=f"nats-server {name} joined")
        except AssertionError:
            raise AssertionError(f"nats-server {name} not ready: {text(log)[-2000:]}") from None

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def restart(self, name: str) -> None:
        """SIGTERM, then the same server again on its store; returns once it
        is back in the cluster."""
        self.stop(name)
        self.start(name)
        self.ready(name)


@pytest.fixture
def nats_cluster(cluster: Cluster) -> Iterator[NatsCluster]:
    """A 3-node JetStream cluster across a, b and c (:class:`NatsCluster`)."""
    if not available():
        pytest.skip(f"the multihost mail tests need nats-server ({BINARY}; Debian's nats-server)")
    nc = NatsCluster(cluster)
    try:
        for name in NAMES:
            nc.start(name)
        for name in NAMES:
            nc.ready(name)
        yield nc
    finally:
        for name in NAMES:
            nc.stop(name)
