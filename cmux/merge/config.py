"""``[merge]`` in cmux.toml: where, how and after which checks work lands.

    [merge]
    trunk = "main"         # default: the branch checked out at `cmux start`
    strategy = "merge"     # or "rebase", "squash"
    batch = 4              # entries tested together
    auto = false           # queue a worktree worker's branch at `mailbox done`
    [[merge.checks]]       # default: the [[health.checks]]
    name = "tests"
    command = "pytest -q"
    timeout = 600

Checked by the one schema (cmux.settings_schema.MERGE). ``checks = []``
means no checks at all: entries then land untested, and `cmux queue` says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cmux.config import Config
from cmux.health import config as health_config
from cmux.health.config import Check
from cmux.settings_schema import MERGE


@dataclass(frozen=True)
class MergeSettings:
    trunk: str | None = None
    strategy: str = "merge"
    batch: int = 4
    auto: bool = False
    checks: tuple[Check, ...] = ()
    checks_from: str = "health"  # "merge", "health" (the default), or "none"


def parse(section: dict[str, Any], health: dict[str, Any]) -> MergeSettings:
    MERGE(section, "[merge]")
    if "checks" in section:
        raw = section["checks"]
        raw = [raw] if isinstance(raw, dict) else raw
        checks = tuple(health_config.parse_check(i, spec) for i, spec in enumerate(raw))
        source = "merge" if checks else "none"
    else:
        checks = health_config.parse(health).checks
        source = "health" if checks else "none"
    return MergeSettings(
        trunk=section.get("trunk"),
        strategy=section.get("strategy", "merge"),
        batch=int(section.get("batch", 4)),
        auto=bool(section.get("auto", False)),
        checks=checks,
        checks_from=source,
    )


def settings(cfg: Config) -> MergeSettings:
    return parse(cfg.section("merge"), cfg.section("health"))
