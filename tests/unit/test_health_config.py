"""[health] in cmux.toml: defaults, validation, clear errors."""

from __future__ import annotations

from typing import Any

import pytest

from cmux.errors import ConfigError
from cmux.health.config import HealthSettings, parse


def test_defaults_without_a_section() -> None:
    s = parse({})
    assert s == HealthSettings()
    assert not s.enabled
    assert (s.interval, s.threshold, s.rollback_budget, s.rollback_window) == (30, 3, 3, 3600)
    assert s.restart is None


def test_a_full_section() -> None:
    s = parse(
        {
            "interval": 5,
            "threshold": 2,
            "restart": " make restart ",
            "rollback_budget": 1,
            "rollback_window": 60,
            "idle_nudge": 0,
            "worker_time_limit": 600,
            "checks": [
                {"name": "tests", "command": "pytest -q", "timeout": 120},
                {"name": "web", "url": "http://127.0.0.1:8000/health"},
                {"command": ["python", "-c", "pass"]},
            ],
        }
    )
    assert s.enabled and s.interval == 5.0 and s.threshold == 2
    assert s.restart == "make restart"
    tests, web, third = s.checks
    assert (tests.kind, tests.timeout, tests.target) == ("command", 120.0, "pytest -q")
    assert (web.kind, web.timeout) == ("url", 10.0)
    assert third.name == "check3" and third.command == ("python", "-c", "pass")
    assert third.target == "python -c pass"


@pytest.mark.parametrize(
    ("section", "words"),
    [
        ({"intervall": 3}, "unknown key: intervall"),
        ({"threshold": 0}, "threshold must be a whole number from 1 to 1000, not 0"),
        ({"threshold": 1.5}, "whole number"),
        ({"interval": "often"}, "interval must be a number"),
        ({"interval": True}, "interval must be a number"),
        ({"rollback_budget": -1}, "rollback_budget must be a whole number from 0 to 1000, not -1"),
        ({"restart": ""}, "restart must be a non-empty string"),
        ({"checks": [{"name": "x"}]}, "needs exactly one of command or url"),
        ({"checks": [{"command": "true", "url": "http://a"}]}, "exactly one of command or url"),
        ({"checks": [{"url": "ftp://host/x"}]}, "http:// or https://"),
        ({"checks": [{"url": "localhost:80"}]}, "http:// or https://"),
        ({"checks": [{"command": "true", "timeout": 0}]}, "timeout must be a number of seconds"),
        ({"checks": [{"command": "true", "tiemout": 3}]}, "unknown key: tiemout"),
        ({"checks": [{"command": ""}]}, "command must be a command line"),
        ({"checks": [{"name": "a", "command": "x"}, {"name": "a", "command": "y"}]}, "same name"),
        ({"checks": "pytest"}, "must be a list of tables"),
        ({"checks": ["pytest"]}, "must be a table"),
        ({"interval": float("inf")}, "interval must be a number of seconds from 0.05 to 86400"),
        ({"interval": float("nan")}, "not nan"),
        ({"checks": [{"command": "x", "timeout": float("inf")}]}, "not inf"),
    ],
)
def test_mistakes_are_named(section: dict[str, Any], words: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(section)
    assert words in str(info.value)


def test_settings_reads_the_project_config(tmp_path: Any) -> None:
    from cmux.config import load_config
    from cmux.health.config import settings

    (tmp_path / "cmux.toml").write_text(
        '[health]\nthreshold = 4\n[[health.checks]]\nname = "t"\ncommand = "true"\n'
    )
    s = settings(load_config(tmp_path))
    assert s.threshold == 4 and [c.name for c in s.checks] == ["t"]
