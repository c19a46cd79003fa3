"""Text files read the way trec_eval users expect: UTF-8, a byte-order mark ignored, CRLF line ends.

A BOM left in place would turn the first query id into '\\ufeff1' and silently drop its judgments;
undecodable bytes are reported with file, line and column instead of a bare UnicodeDecodeError.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

BOM = "\ufeff"


def numbered_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """(line number from 1, text without its line end) for every line of a UTF-8 file."""
    with open(path, "rb") as handle:
        for lineno, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise ValueError(
                    f"{path}:{lineno}: not valid UTF-8 (byte 0x{raw[err.start]:02x} at column {err.start + 1}); "
                    "save the file as UTF-8"
                ) from None
            if lineno == 1:
                line = line.removeprefix(BOM)
            yield lineno, line.rstrip("\n").rstrip("\r")
