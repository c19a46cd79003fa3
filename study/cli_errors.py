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
        problems = []
        for item in err.errors():
            where = ".".join(str(p) for p in item["loc"])
            message = item["msg"].removeprefix("Value error, ")
            problems.append(f"{where}: {message} (got {item.get('input')!r})")
        return f"invalid study spec: {'; '.join(problems)}."
    return str(err)


def print_bad_input(err: Exception) -> int:
    """Print `err` as one paragraph on stderr; return the exit code for bad input."""
    print(f"error: {format_error(err)}", file=sys.stderr)
    return EXIT_BAD_INPUT
