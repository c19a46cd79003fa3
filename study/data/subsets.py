"""Fixed query subsets: the same queries every time, whatever order they are read in.

A query's place comes from a hash of its id, so a split or a subset never moves between runs,
machines or versions of a file that list the queries in another order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def query_fraction(qid: str) -> float:
    """A stable pseudo-random number in [0, 1) per query id: splits and subsets never move."""
    return int.from_bytes(hashlib.sha1(qid.encode()).digest()[:8], "big") / 2**64


def fixed_subset(qids: Iterable[str], n: int | None) -> set[str]:
    """The same `n` queries every time, whatever order they are read in."""
    ordered = sorted(qids, key=query_fraction)
    return set(ordered if n is None else ordered[:n])
