"""Host operations: what each host of ``[hosts]`` has (`cmux hosts`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cmux.config import Config
    from cmux.remote.probe import HostInfo


def hosts(cfg: Config, *, only: list[str] | None = None, timeout: float = 20.0) -> list[HostInfo]:
    """Every host (or those in ``only``), each probed by one ssh call at once;
    the agents there take the states seen (unreachable when their host does
    not answer). UsageError for a name that is not in ``[hosts]``."""
    from cmux.config import hosts as configured
    from cmux.errors import UsageError
    from cmux.remote import probe

    known = configured(cfg)
    for name in only or []:
        if name not in known:
            raise UsageError(
                f"no host named {name!r} in cmux.toml",
                "the hosts: " + (", ".join(sorted(known)) or "none ([hosts.NAME] entries)"),
            )
    infos = probe.probe_all(cfg, only=only or None, timeout=timeout)
    from cmux.remote.place import sync_states

    sync_states(cfg, infos)  # what was seen of each host is what its agents are now
    return infos
