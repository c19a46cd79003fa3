"""One error style for bad names and numbers: what was asked, and what would be accepted."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def check_name(name: str, known: Iterable[str], *, what: str) -> None:
    """Raise ValueError when `name` is not in `known`, suggesting the closest known name."""
    known = list(known)
    if name in known:
        return
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"unknown {what} {name!r}.{hint} Known: {', '.join(known)}")


def check_at_least(flag: str, value: int | None, minimum: int) -> None:
    """Raise ValueError when an option's value is below its minimum (None means not given)."""
    if value is not None and value < minimum:
        raise ValueError(f"{flag} must be at least {minimum}, but got {value}")
