"""Search ranges as plain data: a float interval (optionally log-scaled), an integer interval, a choice."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class FloatRange:
    low: float
    high: float
    log: bool = False


@dataclass(frozen=True)
class IntRange:
    low: int
    high: int


@dataclass(frozen=True)
class Choice:
    values: tuple[str, ...]


Range = FloatRange | IntRange | Choice
Ranges = Mapping[str, Range]
