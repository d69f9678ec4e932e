"""The data root and everything under it (see mailbox/README.md and journal/README.md).

One directory per managed project, always absolute, exported to every agent as
CMUX_HOME so that a worker in a worktree writes to the same mailbox.

Imported on ``tools/mailbox send``, so only ``os``: the send path builds its
paths as strings (``home``, ``mailbox_path``, ``state_path``, ...);
the ``pathlib.Path`` views of the same places (``root``, ``mailbox``, ...)
import pathlib when first asked for (docs/PERFORMANCE.md).
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path

HUMAN = "human"
SUPERVISOR = "supervisor"
DEADLETTER = "deadletter"

# An agent name: what a mailbox, a registry record and CMUX_AGENT may be called
# (`human`, `cmux` and `supervisor` match it too): 1-32 characters, lowercase
# ASCII letters, digits, '-' and '_', starting with a letter. Checked by
# character sets rather than a regex: `re` costs every tools/ call ~7 ms.
_NAME_FIRST = frozenset("abcdefghijklmnopqrstuvwxyz")
_NAME_CHARS = _NAME_FIRST | frozenset("0123456789_-")
NAME_MAX = 32


def valid_name(name: object) -> bool:
    """True for an agent name (the one name rule: mailboxes, the registry,
    CMUX_AGENT and a message's ``from`` and ``to`` all use it)."""
    return (
        isinstance(name, str)
        and 0 < len(name) <= NAME_MAX
        and name[0] in _NAME_FIRST
        and _NAME_CHARS.issuperset(name)
    )


def _as_path(path: str) -> Path:
    from pathlib import Path  # only off the send path

    return Path(path)


class DataRoot:
    """The data root, always absolute. (A plain class: see config.Profile.)

    ``home`` is the root as a string; ``root`` the same as a Path."""

    __slots__ = ("_root", "home")
    home: str
    _root: Path | None

    def __init__(self, root: Path | str) -> None:
        # realpath is what Path.resolve() does (absolute, symlinks resolved)
        object.__setattr__(self, "home", os.path.realpath(root))
        object.__setattr__(self, "_root", None)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("DataRoot is immutable")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DataRoot) and other.home == self.home

    def __hash__(self) -> int:
        return hash(self.home)

    def __repr__(self) -> str:
        return f"DataRoot({self.home!r})"

    @property
    def root(self) -> Path:
        root = self._root
        if root is None:
            root = _as_path(self.home)
            object.__setattr__(self, "_root", root)
        return root

    # the send path's places, as strings
    @property
    def mailboxes_path(self) -> str:
        return os.path.join(self.home, "mailbox")

    def mailbox_path(self, agent: str) -> str:
        return os.path.join(self.mailboxes_path, agent)

    @property
    def deadletter_path(self) -> str:
        return os.path.join(self.mailboxes_path, DEADLETTER)

    @property
    def state_path(self) -> str:
        return os.path.join(self.home, "state")

    @property
    def events_path(self) -> str:
        return os.path.join(self.state_path, "events.jsonl")

    # mailbox
    @property
    def mailbox_dir(self) -> Path:
        return _as_path(self.mailboxes_path)

    def mailbox(self, agent: str) -> Path:
        return _as_path(self.mailbox_path(agent))

    @property
    def deadletter(self) -> Path:
        return _as_path(self.deadletter_path)

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
        return _as_path(self.state_path)

    @property
    def agents_dir(self) -> Path:
        return self.state_dir / "agents"

    def agent_file(self, name: str) -> Path:
        return self.agents_dir / f"{name}.json"

    def agent_lock(self, name: str) -> Path:
        return self.agents_dir / f".{name}.lock"

    @property
    def events_file(self) -> Path:
        return _as_path(self.events_path)

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
