"""The words of a rollback: what the supervisor, the journal and
``cmux rescue show`` get. Pure text from a :class:`Rescue`."""

from __future__ import annotations

from cmux.health.rollback import Rescue


def describe_rollback(rescue: Rescue, *, verified: bool | None, reason: str) -> str:
    """The text the supervisor and the journal get: what was undone, where it is."""
    lines = [
        f"cmux rolled {rescue.head[:10]} back to {rescue.target[:10]}: {reason}.",
    ]
    if verified is not None:
        lines.append(
            "The checks pass again." if verified else "The checks STILL FAIL after the rollback."
        )
    if rescue.undone:
        lines.append(f"\nCommits undone ({len(rescue.undone)}), kept on branch {rescue.branch}:")
        lines += [f"- {c['sha'][:10]} {c['subject']}" for c in rescue.undone[:50]]
        if len(rescue.undone) > 50:
            lines.append(f"- … and {len(rescue.undone) - 50} more")
    else:
        lines.append(f"\nNo commits were undone; branch {rescue.branch} marks where it was.")
    if rescue.stash:
        lines.append(
            f"\nUncommitted work ({len(rescue.files)} path(s)) is in stash {rescue.stash[:10]} "
            f'("cmux rescue {rescue.id}", also pinned as {rescue.stash_ref}):'
        )
        lines += [f"- {p}" for p in rescue.files[:30]]
        if len(rescue.files) > 30:
            lines.append(f"- … and {len(rescue.files) - 30} more")
    if rescue.overwritten:
        lines.append(
            f"\nIgnored files the rollback overwrote were copied to state/rescues/{rescue.id}/: "
            + ", ".join(rescue.overwritten[:10])
        )
    lines.append("\nTo bring it back:")
    lines += [f"  {what}: {cmd}" for what, cmd in rescue.commands()]
    lines.append("\nNothing was lost. Find out why the checks failed before redoing the work.")
    return "\n".join(lines)


def span(seconds: float) -> str:
    """A window as its config gives it: 1h, 30m, 45s."""
    if seconds % 3600 == 0:
        return f"{int(seconds // 3600)}h"
    if seconds % 60 == 0:
        return f"{int(seconds // 60)}m"
    return f"{seconds:g}s"
