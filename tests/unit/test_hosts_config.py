"""[cluster] and [hosts.NAME] (docs/CLUSTER.md): what is accepted, what is
refused with what words, and the registry's states for agents elsewhere."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cmux import config
from cmux.agents import registry
from cmux.agents.registry import Agent
from cmux.errors import ConfigError, InvalidTransition
from cmux.paths import DataRoot
from cmux.settings_schema import validate


def loaded(tmp_path: Path, text: str) -> config.Config:
    (tmp_path / "cmux.toml").write_text(text)
    return config.load_config(tmp_path)


def test_no_cluster_and_no_hosts_is_one_machine(tmp_path: Path) -> None:
    cfg = loaded(tmp_path, "[cmux]\nagent = 'shell'\n")
    assert config.hosts(cfg) == {}
    assert config.placement(cfg) == "local"


def test_hosts_and_cluster_are_read(tmp_path: Path) -> None:
    cfg = loaded(
        tmp_path,
        """
[cluster]
nats = "nats://10.0.0.1:4222"
token = "s3cret"
host = "a"
host_timeout = 30
[hosts]
default = "load"
[hosts.b]
ssh = "cmux@10.0.0.2"
port = 2222
identity = "~/.ssh/id_cmux"
dir = "/srv/cmux"
agents = 4
[hosts.c]
ssh = "10.0.0.3"
dir = "/srv/cmux"
cmux = "/opt/cmux/bin/cmux"
""",
    )
    hosts = config.hosts(cfg)
    assert sorted(hosts) == ["b", "c"]
    b, c = hosts["b"], hosts["c"]
    assert (b.ssh, b.address, b.port, b.agents, b.dir) == (
        "cmux@10.0.0.2",
        "10.0.0.2",
        2222,
        4,
        "/srv/cmux",
    )
    assert b.identity == str(Path.home() / ".ssh/id_cmux")
    assert (c.port, c.identity, c.agents, c.cmux) == (None, None, None, "/opt/cmux/bin/cmux")
    assert config.placement(cfg) == "load"
    assert config.this_host(cfg) == "a"


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ({"hosts": {"b": {"dir": "/x"}}}, "[hosts.b] needs a ssh"),
        ({"hosts": {"b": {"ssh": "h"}}}, "[hosts.b] needs a dir"),
        ({"hosts": {"b": {"ssh": "h", "dir": "/x", "prot": 22}}}, "did you mean 'port'"),
        ({"hosts": {"b": {"ssh": "h", "dir": "/x", "port": 70000}}}, "from 1 to 65535"),
        ({"hosts": {"b": {"ssh": "a@b@c", "dir": "/x"}}}, '"user@host" or "host"'),
        ({"hosts": {"b": {"ssh": "-oProxyCommand=x", "dir": "/x"}}}, '"user@host" or "host"'),
        ({"hosts": {"b": {"ssh": "h", "dir": "/x", "agents": 0}}}, "agents must be"),
        ({"hosts": {"b.c": {"ssh": "h", "dir": "/x"}}}, "letters, digits"),
        ({"hosts": {"local": {"ssh": "h", "dir": "/x"}}}, "not a host's name"),
        ({"hosts": {"b": "10.0.0.2"}}, "is not a key cmux knows"),
        ({"hosts": {"default": "d", "b": {"ssh": "h", "dir": "/x"}}}, '"load", "local", "b"'),
        ({"cluster": {"nats": "http://x:4222"}}, "nats:// or tls://"),
        ({"cluster": {"token": "t", "user": "u", "password": "p"}}, "one kind of credentials"),
        ({"cluster": {"user": "u"}}, "user and password together"),
        ({"cluster": {"tls_cert": "c"}}, "tls_cert and tls_key together"),
        ({"cluster": {"host": "a.example.com"}}, "[cluster] host must be"),
        ({"cluster": {"host_timeout": float("inf")}}, "not inf"),
        ({"clustre": {}}, "did you mean [cluster]"),
    ],
)
def test_bad_entries_are_refused_with_what_is_wrong(raw: dict[str, Any], words: str) -> None:
    with pytest.raises(ConfigError) as err:
        validate(raw)
    assert words in str(err.value)


def test_a_cached_file_of_the_older_schema_is_checked_again() -> None:
    assert config.SCHEMA_VERSION >= 7


def test_agents_elsewhere_go_unreachable_lost_and_back(data: DataRoot) -> None:
    registry.save(data, Agent(name="w1", host="b"))
    for state in ("idle", "unreachable", "busy", "unreachable", "lost", "idle", "killed"):
        assert registry.transition(data, "w1", state).state == state
    assert registry.get(data, "w1").host == "b"
    registry.save(data, Agent(name="w2"))
    registry.transition(data, "w2", "killed")
    with pytest.raises(InvalidTransition):
        registry.transition(data, "w2", "unreachable")  # a killed agent is not astray


def test_status_shows_the_host_column_only_when_an_agent_is_elsewhere() -> None:
    from cmux import ui
    from cmux.status import status_rows

    here = status_rows([Agent(name="w1", state="idle")])
    assert "HOST" not in [c.header for c in ui.status_table(here, width=200).columns]
    rows = status_rows([Agent(name="w1", state="idle"), Agent(name="w2", host="b")])
    assert rows[1]["host"] == "b"
    table = ui.status_table(rows, width=200)
    assert "HOST" in [c.header for c in table.columns]
    assert ui.status_cells(rows[1])["HOST"] == "b"


def test_workers_spawn_takes_a_host_as_cmux_spawn_does() -> None:
    from click.testing import CliRunner

    from cmux.agenttools.workers import parser
    from cmux.cli.agents import spawn_cmd

    args = parser().parse_args(["spawn", "w1", "--host", "b", "--task", "t"])
    assert args.host == "b"
    assert "--host NAME" in CliRunner().invoke(spawn_cmd, ["--help"]).output


def test_a_worker_elsewhere_takes_no_dir_nor_worktree(tmp_path: Path) -> None:
    from cmux.errors import UsageError
    from cmux.ops.agents import spawn

    cfg = loaded(tmp_path, "[hosts.b]\nssh = 'h'\ndir = '/x'\n")
    with pytest.raises(UsageError) as err:
        spawn(cfg, "w1", task="t", host="b", worktree=True)
    assert "its own clone" in (err.value.hint or "")


def test_a_worker_host_gets_the_trunks_project_id_with_nats(tmp_path: Path) -> None:
    """The project home on a worker host has no repository: without the
    trunk's id pinned, its node would use other subjects (docs/CLUSTER.md)."""
    from cmux.cluster.view import project_id
    from cmux.remote.there import settings_for, toml_text
    from tests.helpers import make_repo

    trunk = make_repo(tmp_path / "trunk")
    cfg = loaded(trunk, '[cluster]\nhost = "a"\nnats = "nats://10.0.0.1:4222"\ntoken = "t"\n')
    carried = settings_for(cfg, "b")["cluster"]
    assert carried["host"] == "b" and carried["token"] == "t"
    there = tmp_path / "there"
    there.mkdir()
    (there / "cmux.toml").write_text(toml_text(settings_for(cfg, "b")))
    assert project_id(config.load_config(there)) == project_id(cfg)
    (tmp_path / "other").mkdir()
    (tmp_path / "plain").mkdir()
    assert project_id(cfg) != project_id(
        loaded(tmp_path / "other", "[cluster]\nnats = 'nats://h:1'\n")
    )
    # Without NATS nothing is pinned (the ssh part alone needs no id).
    plain = loaded(tmp_path / "plain", '[cluster]\nhost = "a"\n')
    assert "project" not in settings_for(plain, "b")["cluster"]


def test_each_worker_host_lists_its_own_nats_server_first(tmp_path: Path) -> None:
    """[cluster] nats with a server on each host: the node on b talks to b's
    own server while it is up (the client tries them in order)."""
    from cmux.remote.there import own_server_first, settings_for
    from tests.helpers import make_repo

    urls = "nats://10.0.0.1:4222,nats://10.0.0.2:4222, nats://10.0.0.3:4222"
    assert own_server_first(urls, "10.0.0.2") == (
        "nats://10.0.0.2:4222,nats://10.0.0.1:4222,nats://10.0.0.3:4222"
    )
    assert own_server_first(urls, "10.0.0.9") == (
        "nats://10.0.0.1:4222,nats://10.0.0.2:4222,nats://10.0.0.3:4222"
    )
    trunk = make_repo(tmp_path / "trunk")
    cfg = loaded(
        trunk,
        f'[cluster]\nhost = "a"\nnats = "{urls}"\n'
        "[hosts.c]\nssh = 'cmux@10.0.0.3'\ndir = '/x'\n",
    )
    assert settings_for(cfg, "c")["cluster"]["nats"].startswith("nats://10.0.0.3:4222,")
