"""A search's model x optimizer pairs side by side: one Tune experiment per pair, each in its own thread.

Each pair stays what it was when pairs ran one after another: its own Tuner, searcher (Optuna
study, TPE state), ASHA scheduler, experiment directory and resume state. Only their Tune loops run
at once in the driver, so their trials share the cluster instead of waiting for the pair before.

`--max-concurrent` caps the whole search: it is split into slots, one per pair running at once,
and a pair takes the slot's share as its own Tune `max_concurrent_trials` (Tune keeps a pair's
limit with its experiment, so a slot cannot grow later). With a cap of 4 and two pairs, both run
2 trials at once; with a cap of 2 and five pairs, two pairs run 1 each, the next starting when a
slot frees. Without a cap every pair starts at once and the cluster's resources bound them.

Ctrl+C: Tune catches SIGINT only in the main thread, where its loop then ends after saving the
experiment state; off the main thread its loop would never hear of it. So the main thread catches
SIGINT itself and hands every pair's loop the same stop event (through Tune's
`_setup_signal_catching`, the one place its loop takes that event from; Ray is pinned to 2.60's
behaviour by tests/test_search_parallel.py). A second Ctrl+C interrupts the driver at once, as with Tune.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar

Pair = TypeVar("Pair")


def concurrency_slots(pairs: int, cap: int | None) -> list[int | None]:
    """Trials each slot may run at once (one slot per pair running at once; None: no limit).
    The shares add up to `cap`; e.g. 3 pairs, cap 4 -> [2, 1, 1]; 5 pairs, cap 2 -> [1, 1]."""
    if pairs < 1:
        return []
    if cap is None:
        return [None] * pairs
    slots = min(pairs, cap)
    return [cap // slots + (1 if i < cap % slots else 0) for i in range(slots)]


def run_side_by_side(pairs: Sequence[Pair], fit: Callable[[Pair, int | None], None], cap: int | None) -> bool:
    """Run `fit(pair, max_concurrent)` for every pair, pairs sharing `cap` as concurrency_slots says.
    Returns True when Ctrl+C stopped it (the pairs' experiments are saved and can be restored).
    A pair that raises stops the others (each saves its state) and the error is raised here."""
    queue = list(pairs)
    lock = threading.Lock()
    stop = threading.Event()
    errors: list[BaseException] = []

    def slot(limit: int | None) -> None:
        while not stop.is_set():
            with lock:
                if not queue:
                    return
                pair = queue.pop(0)
            try:
                fit(pair, limit)
            except BaseException as err:  # noqa: BLE001 -- raised again in the main thread
                errors.append(err)
                stop.set()
                return

    threads = [
        threading.Thread(target=slot, args=(limit,), name=f"search-slot-{i}", daemon=True)
        for i, limit in enumerate(concurrency_slots(len(queue), cap))
    ]
    with _interrupts_to(stop), _tune_loops_stop_on(stop):
        for thread in threads:
            thread.start()
        for thread in threads:
            while thread.is_alive():
                thread.join(0.5)  # wakes the main thread, so its signal handler runs promptly
    if errors:
        raise errors[0]
    return stop.is_set()


@contextmanager
def _interrupts_to(stop: threading.Event) -> Iterator[None]:
    """The first Ctrl+C sets `stop`; the next one gets the handler that was there before."""
    from ray.util.client import ray as ray_client

    # Only the main thread can catch signals (its owner decides what Ctrl+C does); through a ray://
    # client the Tune loops run on the cluster, out of the event's reach, so Ctrl+C ends the driver.
    if threading.current_thread() is not threading.main_thread() or ray_client.is_connected():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)

    def on_interrupt(signum, frame) -> None:
        print("\nStopping: every pair saves its search state (Ctrl+C again ends the driver at once)", flush=True)
        stop.set()
        signal.signal(signal.SIGINT, previous)

    signal.signal(signal.SIGINT, on_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@contextmanager
def _tune_loops_stop_on(stop: threading.Event) -> Iterator[None]:
    """Every Tune loop started meanwhile ends, saving its state, once `stop` is set."""
    from ray.tune import tune as tune_module

    original = tune_module._setup_signal_catching
    tune_module._setup_signal_catching = lambda: stop
    try:
        yield
    finally:
        tune_module._setup_signal_catching = original
