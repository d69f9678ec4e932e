"""The restart rule shared by the keeper and the monitor, and the server test
of a registry record: pure functions."""

from __future__ import annotations

import signal

from cmux.agents.registry import Agent, on_server
from cmux.daemons import failed, restart_delay


def test_only_failures_of_its_own_making_count() -> None:
    assert not failed(0)
    for sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        assert not failed(-sig), sig  # ended from outside: back at once
        assert not failed(128 + sig), sig  # ... as a shell reports it
    assert failed(1)  # gave up by itself (a bad config, a lock held)
    assert failed(-signal.SIGSEGV) and failed(-signal.SIGABRT)  # crashed


def test_back_off_starts_after_three_failures_a_minute_and_stops_at_30_s() -> None:
    now = 1000.0
    assert restart_delay([], now) == 0
    assert restart_delay([now - 3, now - 2, now - 1][:2], now) == 0
    assert restart_delay([now - 3, now - 2, now - 1], now) == 0.5
    assert restart_delay([now - 1] * 4, now) == 1.0
    assert restart_delay([now - 1] * 20, now) == 30.0
    assert restart_delay([now - 61] * 20, now) == 0  # old failures are forgiven


def test_a_pane_id_counts_only_on_the_server_it_was_made_on() -> None:
    a = Agent(name="w1", pane_id="%2", server="100:5000", created=5001.0)
    assert on_server(a, "100:5000")
    assert not on_server(a, "101:6000")  # a new server: %2 is someone else
    assert not on_server(a, None)  # no server runs
    legacy = Agent(name="w2", pane_id="%2", created=5001.0)  # recorded no server
    assert on_server(legacy, "100:5000")  # made while that server ran
    assert not on_server(legacy, "101:6000")  # that server started after it
    assert not on_server(Agent(name="w3", server="100:5000"), "100:5000")  # no pane
