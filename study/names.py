"""One error style for bad names and numbers: what was asked, and what would be accepted."""

from __future__ import annotations

import difflib
import re
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


# Every name that becomes a file or directory name (studies, searches, models, evaluation sets, trial
# tags): letters, digits, `_`, `.` and `-`, not starting with `.` or `-` (so never `.`, `..` or a hidden
# file, never read as an option), and short enough that `<model>-<optimizer>-<tag>-<trial id>` and
# `<set>.epoch<N>.trec` stay well under the filesystems' 255-byte limit.
PATH_NAME_MAX = 64
_PATH_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def check_path_name(name: str, *, what: str) -> str:
    """Return `name` when it is safe as one path component; else ValueError saying the rule."""
    if not isinstance(name, str) or not _PATH_NAME.fullmatch(name) or len(name) > PATH_NAME_MAX:
        shown = name if len(str(name)) <= 40 else f"{str(name)[:40]}... ({len(name)} characters)"
        raise ValueError(
            f"{what} {shown!r} is not a usable name: it becomes a file or directory name, so use up to "
            f"{PATH_NAME_MAX} letters, digits, '_', '.' or '-', starting with a letter, digit or '_'"
        )
    return name
