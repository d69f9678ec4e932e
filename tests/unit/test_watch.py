"""The file watcher gateway (cmux/watch.py): both implementations report the
same events through the same interface, and block while nothing happens."""

from __future__ import annotations

import os
import select
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cmux import watch


@pytest.fixture(params=["inotify", "watchfiles"])
def watcher(request: pytest.FixtureRequest) -> Iterator[watch.Watcher]:
    w: watch.Watcher = watch.Inotify() if request.param == "inotify" else watch.Watchfiles()
    yield w
    w.close()


def events_within(w: watch.Watcher, seconds: float) -> list[watch.Event]:
    out: list[watch.Event] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        ready, _, _ = select.select([w.fileno()], [], [], max(0.0, deadline - time.monotonic()))
        if ready:
            out += w.read()
            if out:
                time.sleep(0.2)  # let the rest of a burst arrive
                return out + w.read()
    return out


def until_watching(w: watch.Watcher, folder: Path) -> None:
    """Make entries in ``folder`` until ``w`` reports one (the watchfiles
    thread watches some moment after ``add``), then drain what it saw: from
    here on every change is reported. Polls with a deadline, no fixed pause."""
    deadline = time.monotonic() + 10
    n = 0
    while time.monotonic() < deadline:
        (folder / f".probe-{n}").mkdir()
        n += 1
        ready, _, _ = select.select([w.fileno()], [], [], 0.1)
        if ready and w.read():
            while select.select([w.fileno()], [], [], 0.3)[0]:  # the probes' stragglers
                w.read()
            return
    raise AssertionError(f"{w} reported nothing in {folder} within 10 s")


def test_a_file_landing_is_reported_as_its_folder_and_name(
    watcher: watch.Watcher, tmp_path: Path
) -> None:
    new = tmp_path / "box" / "new"
    new.mkdir(parents=True)
    assert watcher.add(new, "files")
    assert not watcher.add(new, "files")  # already watched
    until_watching(watcher, new)
    (tmp_path / "box" / "tmp.json").write_text("{}")
    os.link(tmp_path / "box" / "tmp.json", new / "m.json")
    got = events_within(watcher, 5)
    assert watch.Event(str(new), "m.json") in got
    assert all(e.folder == str(new) for e in got if not e.overflow)  # not the unwatched box/


def test_a_directory_made_in_a_dirs_watch_is_reported(
    watcher: watch.Watcher, tmp_path: Path
) -> None:
    assert watcher.add(tmp_path, "dirs")
    until_watching(watcher, tmp_path)
    (tmp_path / "w2").mkdir()
    assert watch.Event(str(tmp_path), "w2") in events_within(watcher, 5)


def test_nothing_happening_means_nothing_to_read(watcher: watch.Watcher, tmp_path: Path) -> None:
    watcher.add(tmp_path, "files")
    until_watching(watcher, tmp_path)
    assert events_within(watcher, 0.7) == []  # a span of quiet: the point of the test


def test_the_router_gets_inotify_here() -> None:
    w = watch.open_watcher()
    try:
        assert isinstance(w, watch.Inotify)
    finally:
        w.close()
