"""`cmux hosts` from host a sees b and c over real ssh, and a cut link."""

from __future__ import annotations

import time

import pytest

from tests.helpers import wait_until
from tests.multihost.conftest import Cluster

pytestmark = [pytest.mark.multihost, pytest.mark.timeout(60)]


def hosts_json(cluster: Cluster, *args: str) -> dict[str, dict]:
    r = cluster.hosts["a"].cmux("hosts", "--json", *args, cwd=cluster.project)
    assert r.code == 0, r.err
    return {h["name"]: h for h in r.json()}


def test_hosts_lists_b_and_c_reachable_with_versions_and_a_cut_link(cluster: Cluster) -> None:
    (cluster.project / "cmux.toml").write_text(cluster.toml())
    seen = hosts_json(cluster)
    assert sorted(seen) == ["b", "c"]
    for name in ("b", "c"):
        h = seen[name]
        assert h["reachable"], h
        assert h["versions"]["tmux"].startswith("tmux ")
        assert h["versions"]["git"].startswith("git version")
        assert h["versions"]["python"].startswith("Python 3.")
        assert h["versions"]["cmux"].startswith("cmux, version")
        assert h["load"] is not None and h["dir_ok"] is True
    table = cluster.hosts["a"].cmux("hosts", cwd=cluster.project)
    rows = {ln.split()[0]: ln for ln in table.out.splitlines() if ln.split()[:1] in (["b"], ["c"])}
    assert sorted(rows) == ["b", "c"] and all(" reachable " in r for r in rows.values()), table.out
    # b's HOME there is b's own (its authorized_keys line), not a's nor the user's.
    assert (cluster.hosts["b"].root / "work").is_dir()

    cluster.cut("b")
    t0 = time.monotonic()
    seen = hosts_json(cluster, "--timeout", "4")
    took = time.monotonic() - t0
    assert not seen["b"]["reachable"] and "b" in seen["b"]["error"]
    assert seen["b"]["hint"]
    assert seen["c"]["reachable"]  # the other host is not held up by b
    assert took < 4 + 8, f"cmux hosts took {took:.1f} s with b cut (its timeout: 4 s)"

    cluster.mend("b")
    wait_until(
        lambda: hosts_json(cluster, "--timeout", "4")["b"]["reachable"],
        timeout=25,
        interval=0.5,
        what="b reachable again once its link is back",
    )


def test_doctor_checks_each_host_and_says_what_to_fix(cluster: Cluster) -> None:
    c = cluster.hosts["c"]
    (c.root / "a-file").write_text("not a folder\n")  # (root may write anywhere else)
    nowhere = c.root / "a-file" / "work"
    (cluster.project / "cmux.toml").write_text(
        cluster.toml().replace(f'dir = "{c.dir}"', f'dir = "{nowhere}"')
    )
    r = cluster.hosts["a"].cmux("doctor", "--json", cwd=cluster.project)
    checks = {c["name"]: c for c in r.json()}
    for what in ("ssh", "tmux", "git", "python", "cmux"):
        assert checks[f"host b: {what}"]["status"] == "ok", checks[f"host b: {what}"]
    assert checks["host c: dir"]["status"] == "fail"
    assert f"mkdir -p {nowhere}" in checks["host c: dir"]["fix"]
