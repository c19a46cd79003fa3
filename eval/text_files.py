"""Text files read the way trec_eval users expect: UTF-8, a byte-order mark ignored, CRLF line ends.

A BOM left in place would turn the first query id into '\\ufeff1' and silently drop its judgments;
undecodable bytes are reported with file, line and column instead of a bare UnicodeDecodeError.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path


def numbered_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """(line number from 1, text without its line end) for every line of a UTF-8 file."""
    try:
        # utf-8-sig drops a BOM at the start; text mode turns CRLF into LF. As fast as a plain read.
        with open(path, encoding="utf-8-sig") as handle:
            for lineno, line in enumerate(handle, start=1):
                yield lineno, line.rstrip("\n")
    except UnicodeDecodeError:
        raise ValueError(_first_undecodable(path)) from None


def _first_undecodable(path: str | Path) -> str:
    """Where the file stops being UTF-8 (read again, in binary, only once decoding has failed)."""
    with open(path, "rb") as handle:
        for lineno, raw in enumerate(handle, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as err:
                return (
                    f"{path}:{lineno}: not valid UTF-8 (byte 0x{raw[err.start]:02x} at column {err.start + 1}); "
                    "save the file as UTF-8"
                )
    return f"{path}: not valid UTF-8; save the file as UTF-8"
