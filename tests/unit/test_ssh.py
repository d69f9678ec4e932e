"""cmux/ssh.py, the one door to other hosts: its options, its typed errors.
(The multi-host tier, tests/multihost/, runs it against real sshd's.)"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from cmux.config import Host
from cmux.errors import HostAuthFailed, HostUnreachable
from cmux.paths import DataRoot
from cmux.ssh import Ssh

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(autouse=True)
def short_tmp(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The temporary folder a long data root's control socket goes to: a
    short one of the test's own, removed after it (not the real /tmp's)."""
    short = Path(tempfile.mkdtemp(prefix="cxs", dir="/tmp"))
    monkeypatch.setattr(tempfile, "tempdir", str(short))
    yield short
    shutil.rmtree(short, ignore_errors=True)


def ssh_for(tmp_path: Path, **kw: object) -> Ssh:
    host = Host(name="b", ssh="cmux@127.0.0.1", dir="/srv/cmux", **kw)  # type: ignore[arg-type]
    return Ssh(host, DataRoot(tmp_path / ".cmux"), connect_timeout=2)


def opts(argv: list[str]) -> dict[str, str]:
    return dict(a.split("=", 1) for a in argv if "=" in a and not a.startswith("/"))


def test_every_call_is_batch_mode_with_a_timeout_and_one_master_per_host(tmp_path: Path) -> None:
    ssh = ssh_for(tmp_path, port=2222, identity="/k/id")
    argv = ssh.argv(["echo", "a b"])
    o = opts(argv)
    assert o["BatchMode"] == "yes" and o["ConnectTimeout"] == "2"
    assert o["ControlMaster"] == "auto" and o["ControlPath"].endswith("/%C")
    assert o["UserKnownHostsFile"] == str(tmp_path / ".cmux/state/ssh/known_hosts")
    assert argv[argv.index("-p") + 1] == "2222" and argv[argv.index("-i") + 1] == "/k/id"
    assert argv[-3:] == ["cmux@127.0.0.1", "--", "echo 'a b'"]  # quoted for the remote shell
    assert ssh.url("/srv/x") == "ssh://cmux@127.0.0.1:2222/srv/x"


def test_a_long_data_root_gets_a_short_control_socket(tmp_path: Path, short_tmp: Path) -> None:
    deep = tmp_path / ("d" * 90)
    ssh = Ssh(Host(name="b", ssh="h", dir="/x"), DataRoot(deep / ".cmux"))
    path = opts(ssh.options())["ControlPath"]
    assert len(path.replace("%C", "c" * 40)) + 17 <= 104  # (ssh's temporary suffix)
    assert str(deep) not in path and path.startswith(str(short_tmp))


@pytest.mark.parametrize(
    ("stderr", "kind", "words"),
    [
        ("cmux@h: Permission denied (publickey).", HostAuthFailed, "authorized_keys"),
        ("Host key verification failed.", HostAuthFailed, "known_hosts"),
        ("ssh: connect to host h port 22: No route to host", HostUnreachable, "is it up"),
        ("ssh: connect to host h port 22: Connection timed out", HostUnreachable, "is it up"),
    ],
)
def test_ssh_failures_are_typed_with_what_to_do(
    tmp_path: Path, stderr: str, kind: type, words: str
) -> None:
    err = ssh_for(tmp_path)._ssh_failed(stderr)
    assert type(err) is kind and err.host == "b"
    assert words in (err.hint or "")


@pytest.mark.skipif(shutil.which("ssh") is None, reason="no OpenSSH client")
def test_a_closed_port_on_loopback_is_unreachable_at_once(tmp_path: Path) -> None:
    ssh = ssh_for(tmp_path, port=1)
    with pytest.raises(HostUnreachable) as err:
        ssh.run(["true"], timeout=10)
    assert "refused" in err.value.message and err.value.host == "b"
