"""What the merger does next with a batch: a pure function, no git, no files.

A batch of k entries is built as a chain on trunk's tip T: C1 = T + e1,
C2 = C1 + e2, ... Ck. Testing prefix j means running the checks on Cj. The
batch is settled by a binary search over the prefixes:

- Ck passes: every entry lands (trunk moves to Ck).
- A prefix passes: its entries can land at once (trunk moves to Cj: the rest
  of the chain is built on Cj, so it stays valid).
- The shortest failing prefix j, with prefix j-1 passing (or j = 1), names the
  culprit e_j: it alone is refused. The entries after it go back to the head
  of the queue, to be built again without it.

With one bad entry among k this takes 1 + ceil(log2 k) check runs at most,
against k run one by one.

Invariants: a prefix is landed only when it was tested and passed; only one
entry is ever refused per batch, and only when its own prefix failed while
the one before it passed.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Test:
    """Run the checks on prefix ``j`` (its commit Cj)."""

    j: int


@dataclass(frozen=True)
class Settle:
    """Land prefix ``land`` (0: nothing) and refuse entry ``refuse`` (1-based,
    None: nobody). The entries after max(land, refuse) go back to the queue."""

    land: int
    refuse: int | None


def decide(k: int, passed: dict[int, bool]) -> Test | Settle:
    """The next step for a batch of ``k`` entries, given which prefixes were
    tested and whether they ``passed``."""
    if k < 1:
        raise ValueError("a batch has at least one entry")
    lo = max((j for j, ok in passed.items() if ok), default=0)  # longest passing prefix
    failing = [j for j, ok in passed.items() if not ok and j > lo]
    if not passed:
        return Test(k)
    if lo >= k:
        return Settle(land=k, refuse=None)
    if not failing:
        return Test(k)
    hi = min(failing)  # shortest failing prefix past the passing one
    if hi == lo + 1:
        return Settle(land=lo, refuse=hi)
    return Test((lo + hi) // 2)


def landable(passed: dict[int, bool]) -> int:
    """The longest prefix known to pass (it may land before the batch settles)."""
    return max((j for j, ok in passed.items() if ok), default=0)
