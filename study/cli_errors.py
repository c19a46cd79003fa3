"""The command lines' error style: bad input ends with one paragraph on stderr and exit code 2.

Every CLI (study.run, its search options, study.report) imports this, so none imports another.
"""

from __future__ import annotations

import sys

EXIT_BAD_INPUT = 2


def format_error(err: Exception) -> str:
    """One readable paragraph, also for pydantic's multi-line validation errors."""
    from pydantic import ValidationError

    if isinstance(err, ValidationError):
        return f"invalid study spec: {'; '.join(_problems(err.errors()))}."
    return str(err)


def _problems(errors: list[dict]) -> list[str]:
    """One sentence per problem: where, what, and the value when it is short enough to read."""
    problems = []
    for item in errors:
        loc = tuple(item["loc"])
        # pydantic adds "trials: at least 1 item ... not 0" when an item of `trials` fails: not a problem of its own.
        if item["type"] == "too_short" and any(tuple(o["loc"])[: len(loc)] == loc and o is not item for o in errors):
            continue
        where = ".".join(str(p) for p in loc)
        message = item["msg"].removeprefix("Value error, ")
        shown = repr(item.get("input"))
        got = f" (got {shown})" if len(shown) <= 60 and item["type"] not in ("value_error", "missing") else ""
        problem = f"{where}: {message}{got}" if where else f"{message}{got}"
        if problem not in problems:
            problems.append(problem)
    return problems


def print_bad_input(err: Exception) -> int:
    """Print `err` as one paragraph on stderr; return the exit code for bad input."""
    print(f"error: {format_error(err)}", file=sys.stderr)
    return EXIT_BAD_INPUT
