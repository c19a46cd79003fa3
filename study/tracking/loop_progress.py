"""Progress bars for long loops (downloads, tokenization, reranking), quiet for short ones.

Inside a Ray worker the bar is Ray's tqdm_ray, which the driver renders in place of interleaved
log lines; elsewhere it is plain tqdm. Loops shorter than `min_total` items show nothing, so smoke
runs and tests stay quiet.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def progress(items: Iterable[T], *, desc: str, total: int | None = None, min_total: int = 20_000, unit: str = "it") -> Iterator[T]:
    if total is not None and total < min_total:
        return iter(items)
    bar = _bar_class()
    # Ray's bar flushes to the driver every flush_interval_s; tqdm redraws every mininterval (Ray's takes no mininterval)
    interval = {"flush_interval_s": 5.0} if bar.__module__ == "ray.experimental.tqdm_ray" else {"mininterval": 5.0}
    return iter(bar(items, desc=desc, total=total, unit=unit, **interval))


def _bar_class():
    try:
        import ray

        if ray.is_initialized() and ray.get_runtime_context().worker.mode == ray.WORKER_MODE:
            from ray.experimental.tqdm_ray import tqdm

            return tqdm
    except ImportError:
        pass
    from tqdm.auto import tqdm

    return tqdm
