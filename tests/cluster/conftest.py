"""The cluster tier: a real nats-server with JetStream on 127.0.0.1 per test
(its own port and store under tmp_path). Every test here is marked
``cluster``; without nats-server (bin/test installs it as root) or nats-py
(the ``cluster`` extra) the tier is skipped, and says why."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.natsd import NatsServer, available


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.cluster)


def require_nats() -> None:
    """Skip, with what to do, without nats-server or nats-py."""
    if not available():
        pytest.skip("nats-server is not installed (bin/test installs it as root: apt-get)")
    pytest.importorskip("nats", reason="nats-py is missing: pip install -e '.[cluster]'")


@pytest.fixture
def natsd(tmp_path: Path) -> Iterator[NatsServer]:
    require_nats()
    server = NatsServer(tmp_path / "natsd")
    server.start()
    try:
        yield server
    finally:
        server.kill()
