"""The data root and everything under it (see mailbox/README.md and journal/README.md).

One directory per managed project, always absolute, exported to every agent as
CMUX_HOME so that a worker in a worktree writes to the same mailbox.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

HUMAN = "human"
SUPERVISOR = "supervisor"
DEADLETTER = "deadletter"
# An agent name: what a mailbox, a registry record and CMUX_AGENT may be called
# (`human`, `cmux` and `supervisor` match it too). \Z, not $: "w1\n" is no name.
NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}\Z")


class DataRoot:
    """The data root, always absolute. (A plain class: see config.Profile.)"""

    __slots__ = ("root",)
    root: Path

    def __init__(self, root: Path | str) -> None:
        object.__setattr__(self, "root", Path(root).resolve())

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("DataRoot is immutable")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DataRoot) and other.root == self.root

    def __hash__(self) -> int:
        return hash(self.root)

    def __repr__(self) -> str:
        return f"DataRoot({str(self.root)!r})"

    # mailbox
    @property
    def mailbox_dir(self) -> Path:
        return self.root / "mailbox"

    def mailbox(self, agent: str) -> Path:
        return self.mailbox_dir / agent

    @property
    def deadletter(self) -> Path:
        return self.mailbox_dir / DEADLETTER

    # journal
    @property
    def journal_dir(self) -> Path:
        return self.root / "journal"

    @property
    def memory_file(self) -> Path:
        return self.journal_dir / "MEMORY.md"

    # state
    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    @property
    def agents_dir(self) -> Path:
        return self.state_dir / "agents"

    def agent_file(self, name: str) -> Path:
        return self.agents_dir / f"{name}.json"

    def agent_lock(self, name: str) -> Path:
        return self.agents_dir / f".{name}.lock"

    @property
    def events_file(self) -> Path:
        return self.state_dir / "events.jsonl"

    @property
    def index_db(self) -> Path:
        return self.state_dir / "index.db"

    @property
    def trunk_file(self) -> Path:
        """The branch the project had checked out at `cmux start` (merges land there)."""
        return self.state_dir / "trunk"

    @property
    def run_dir(self) -> Path:
        """Pid files and locks of the daemons."""
        return self.state_dir / "run"

    @property
    def logs_dir(self) -> Path:
        """What each pane showed, saved when the pane goes away."""
        return self.state_dir / "logs"

    @property
    def settings_dir(self) -> Path:
        """Per-agent settings files (Claude Code hooks)."""
        return self.state_dir / "settings"

    # agents' working material
    @property
    def contexts_dir(self) -> Path:
        return self.root / "contexts"

    def context_file(self, name: str) -> Path:
        return self.contexts_dir / f"{name}.md"

    @property
    def worktrees_dir(self) -> Path:
        return self.root / "worktrees"

    def worktree(self, name: str) -> Path:
        return self.worktrees_dir / name

    def ensure(self) -> None:
        """Create the layout; the root is 0700 (made so if it was not: an
        older data root, or one made by hand), so no other user reads any
        of it, whatever the modes below."""
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        mode = os.stat(self.root).st_mode & 0o777
        if mode & 0o077:
            try:
                os.chmod(self.root, 0o700)
            except OSError as exc:
                from cmux.errors import StorageError

                raise StorageError(
                    f"the data root {self.root} is open to other users ({mode:o}) and cannot "
                    f"be made private: {exc.strerror}",
                    f"make it yours and private: `chmod 700 {self.root}` as its owner",
                ) from None
        for d in (
            self.mailbox(HUMAN),
            self.deadletter,
            self.journal_dir,
            self.agents_dir,
            self.run_dir,
            self.logs_dir,
            self.contexts_dir,
        ):
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
