"""`cmux doctor` on agent programs: present, which version, and whether that
version has the hooks cmux relies on (the judgement is pure: judge_program)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from cmux import doctor
from cmux.config import Config, load_config


def test_versions_are_read_from_what_programs_print() -> None:
    assert doctor.parse_version("2.1.197 (Claude Code)") == (2, 1, 197)
    assert doctor.parse_version("codex-cli 0.171.0") == (0, 171, 0)
    assert doctor.parse_version("0.61") == (0, 61)
    assert doctor.parse_version("unknown") is None
    assert doctor.parse_version(None) is None


@pytest.mark.parametrize(
    ("text", "status"),
    [
        ("2.1.197 (Claude Code)", "ok"),
        ("2.3.0 (Claude Code)", "ok"),
        ("2.1.50 (Claude Code)", "warn"),  # has the hooks, older than tested
        ("2.0.77 (Claude Code)", "fail"),  # older than the hooks cmux needs
        (None, "warn"),  # printed no version: can't tell
    ],
)
def test_the_judgement(text: str | None, status: str) -> None:
    got, detail, fix = doctor.judge_program("/usr/bin/claude", text, "2.1.0", "2.1.197")
    assert got == status
    assert "/usr/bin/claude" in detail
    if status != "ok":
        assert fix  # always says what to do
    if status == "fail":
        assert ">= 2.1.0" in detail


def _fake_program(bindir: Path, name: str, version: str) -> Path:
    path = bindir / name
    path.write_text(f"#!/bin/sh\necho '{version}'\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_doctor_runs_each_configured_program(
    cfg: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Claude Code too old for the hooks fails with the install line; a
    [profiles.X] program cmux knows nothing of is only looked for."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    _fake_program(bindir, "claude", "2.0.1 (Claude Code)")
    _fake_program(bindir, "mytool", "whatever")
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    toml = cfg.project_root / "cmux.toml"
    toml.write_text(toml.read_text() + '\n[profiles.mine]\ncommand = "mytool"\n')
    monkeypatch.chdir(cfg.project_root)
    assert "mine" in load_config().profiles
    checks = {c.name: c for c in doctor.run_checks()}
    claude = checks["agent claude"]
    assert claude.status == "fail" and "too old" in claude.detail
    assert "npm install" in claude.fix
    mine = checks["agent mine"]
    assert mine.status == "ok" and mine.detail == str(bindir / "mytool")
