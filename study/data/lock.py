"""The machine-wide lock around data downloads and cache builds, and the markers of prepared data.

study/data/prepare.py prepares a study's data under the lock and marks each trial's data
prepared; a trial (trainables/trial.py) reads marked data without the lock and otherwise takes it,
so processes on one machine never download or build the same cache at the same time.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from study.data.cache import cache_dir

if TYPE_CHECKING:
    from study.spec import TrialSpec


@contextlib.contextmanager
def data_lock() -> Iterator[float]:
    """Hold the exclusive lock of this machine's cache directory; yields the seconds waited.

    The lock file is in the machine's temporary directory (flock on a network or FUSE mount, such
    as a Modal Volume, is not reliable); processes on one machine share it."""
    key = hashlib.sha256(str(cache_dir().resolve()).encode()).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / f"reranker-study-data-{key}.lock"
    start = time.monotonic()
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield time.monotonic() - start
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def preparation_key(trial: TrialSpec) -> str:
    """What a trial's data depends on: its training data, evaluation sets and model (tokenizer)."""
    parts = {
        "data": trial.training.data.model_dump(mode="json"),
        "seed": trial.training.seed,
        "evaluation": [e.model_dump(mode="json") for e in trial.evaluation],
        "model": [trial.model.checkpoint, trial.model.max_length],
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


def marker(trial: TrialSpec) -> Path:
    return cache_dir() / "prepared" / preparation_key(trial)


@contextlib.contextmanager
def data_guard(trial: TrialSpec) -> Iterator[None]:
    """Around a trial's data loading: no lock when its data was prepared, else the machine's lock."""
    if marker(trial).exists():
        yield
        return
    with data_lock():
        yield
