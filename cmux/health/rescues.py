"""Rescues: what each rollback saved, and how to bring it back.

A rescue is a branch ``cmux/rescue/<id>`` at the HEAD a rollback left, and,
when the tree was dirty, a stash pinned as ``refs/cmux/rescue-stash/<id>``;
cmux's record of it is ``state/rescues/<id>.json`` (written before anything
is changed, updated as the rollback goes; see docs/HEALTH.md). Listing
trusts git: a rescue branch whose record is gone is still listed, and the
record of a failed rollback is listed only while it names a stash (or its
branch is still there).
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cmux.errors import GitError, UsageError
from cmux.fsutil import read_json, write_json
from cmux.paths import DataRoot

if TYPE_CHECKING:
    from cmux.health.rollback import Repo

RESCUE_BRANCH_PREFIX = "cmux/rescue/"
STASH_REF_PREFIX = "refs/cmux/rescue-stash/"


@dataclass
class Rescue:
    """What one rollback saved, and how to bring it back."""

    id: str
    branch: str
    head: str
    target: str
    reason: str = ""
    auto: bool = False
    ts: float = 0.0
    status: str = "saving"  # saving | saved | done | failed
    stash: str | None = None
    stash_ref: str | None = None
    files: list[str] = field(default_factory=list)
    undone: list[dict[str, str]] = field(default_factory=list)
    overwritten: list[str] = field(default_factory=list)
    left_dirty: list[str] = field(default_factory=list)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Rescue:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})

    def commands(self) -> list[tuple[str, str]]:
        """(what, git command) pairs a person can copy."""
        out: list[tuple[str, str]] = []
        if self.undone:
            out += [
                (
                    "see the commits it undid",
                    f"git log --oneline {self.target[:10]}..{self.branch}",
                ),
                ("take them back", f"git merge {self.branch}"),
            ]
        if self.stash:
            out += [
                ("see the saved work", f"git stash show -p --include-untracked {self.stash[:10]}"),
                (
                    "put it back, on the commit it was made on",
                    f"git switch -c restore-{self.id} {self.branch} && "
                    f"git stash apply --index {self.stash[:10]}",
                ),
            ]
        elif self.undone:
            out.append(("return to it exactly", f"git switch -c restore-{self.id} {self.branch}"))
        out.append(
            (
                "forget it once you are sure",
                f"git branch -D {self.branch}"
                + (f" && git update-ref -d {self.stash_ref}" if self.stash_ref else ""),
            )
        )
        return out


# -- rescue records (state/rescues/<id>.json) ----------------------------------------


def rescues_dir(data: DataRoot) -> Path:
    return data.state_dir / "rescues"


def rescue_file(data: DataRoot, rid: str) -> Path:
    return rescues_dir(data) / f"{rid}.json"


def rescue_dir(data: DataRoot, rid: str) -> Path:
    return rescues_dir(data) / rid


def save_rescue(data: DataRoot, rescue: Rescue) -> None:
    write_json(rescue_file(data, rescue.id), rescue.to_dict(), durable=True)


@dataclass
class RescueView:
    rescue: Rescue
    branch_exists: bool
    commits_missing: int  # undone commits not (yet) back in HEAD


def list_rescues(repo: Repo) -> list[RescueView]:
    """Every rescue, newest first: the branches in git, with what cmux recorded."""
    records: dict[str, Rescue] = {}
    with contextlib.suppress(FileNotFoundError):
        for p in rescues_dir(repo.data).glob("*.json"):
            try:
                r = Rescue.from_dict(read_json(p))
            except (OSError, ValueError, TypeError):
                continue
            if r.status != "failed" or r.stash:
                records[r.id] = r
    branches: dict[str, str] = {}
    for name, sha in repo.branches(RESCUE_BRANCH_PREFIX).items():
        rid = name.removeprefix(RESCUE_BRANCH_PREFIX)
        branches[rid] = sha
        if rid not in records:
            records[rid] = Rescue(id=rid, branch=name, head=sha, target="", status="done")
    head = repo.head()
    views = []
    for rid, r in records.items():
        missing = 0
        if rid in branches and head:
            with contextlib.suppress(GitError):
                missing = repo.count(branches[rid], excluding=[head])
        views.append(RescueView(r, rid in branches, missing))
    views.sort(key=lambda v: (v.rescue.ts, v.rescue.id), reverse=True)
    return views


def find_rescue(repo: Repo, rid: str) -> RescueView:
    rid = rid.removeprefix(RESCUE_BRANCH_PREFIX)
    for v in list_rescues(repo):
        if v.rescue.id == rid:
            return v
    raise UsageError(f"no rescue named {rid!r}", "see `cmux rescue list`")
