"""Pairs side by side (study/search/parallel.py), without Ray: slots, overlap, Ctrl+C and errors.

The fake pairs stand in for Tune's loop the way Tune's own does: they take their stop event from
`ray.tune.tune._setup_signal_catching()`. The last test pins that Ray's loop still does so.
"""

from __future__ import annotations

import inspect
import os
import signal
import threading
import time

import pytest

from study.search.parallel import concurrency_slots, run_side_by_side


def test_the_cap_is_split_into_slots_that_add_up_to_it():
    assert concurrency_slots(2, None) == [None, None]  # no cap: every pair at once
    assert concurrency_slots(2, 4) == [2, 2]
    assert concurrency_slots(3, 4) == [2, 1, 1]
    assert concurrency_slots(5, 2) == [1, 1]  # two pairs at a time, the next when a slot frees
    assert concurrency_slots(1, 3) == [3]  # one pair: as before
    assert concurrency_slots(0, 3) == []
    for pairs in range(1, 7):
        for cap in range(1, 9):
            assert sum(concurrency_slots(pairs, cap)) == cap


def _tune_like(log: list, seconds: float):
    """A pair's "Tune loop": runs `seconds` unless the stop event Tune would see is set."""

    def fit(pair: str, limit: int | None) -> None:
        from ray.tune import tune as tune_module

        stop = tune_module._setup_signal_catching()  # what Tune's loop checks
        start = time.monotonic()
        log.append((pair, limit, "start", start, threading.current_thread().name))
        stop.wait(seconds)
        log.append((pair, limit, "end", time.monotonic(), stop.is_set()))

    return fit


def test_pairs_run_at_the_same_time_each_with_its_share():
    log: list = []
    assert run_side_by_side(["a", "b", "c"], _tune_like(log, 0.3), cap=4) is False
    starts = {e[0]: e for e in log if e[2] == "start"}
    ends = {e[0]: e for e in log if e[2] == "end"}
    assert {p: starts[p][1] for p in "abc"} == {"a": 2, "b": 1, "c": 1}
    assert max(s[3] for s in starts.values()) < min(e[3] for e in ends.values())  # all three overlapped
    assert len({s[4] for s in starts.values()}) == 3  # one thread each


def test_a_cap_below_the_pairs_queues_the_rest():
    log: list = []
    run_side_by_side(["a", "b", "c"], _tune_like(log, 0.2), cap=2)
    starts = {e[0]: e[3] for e in log if e[2] == "start"}
    ends = {e[0]: e[3] for e in log if e[2] == "end"}
    assert {e[1] for e in log} == {1}
    assert starts["c"] >= min(ends["a"], ends["b"])  # c waited for a free slot


def test_ctrl_c_stops_every_pair_and_starts_no_new_one():
    log: list = []
    timer = threading.Timer(0.5, os.kill, args=(os.getpid(), signal.SIGINT))
    timer.start()
    before = signal.getsignal(signal.SIGINT)
    try:
        assert run_side_by_side(["a", "b", "c"], _tune_like(log, 60), cap=2) is True
    finally:
        timer.cancel()
    assert {e[0] for e in log} == {"a", "b"}  # c never started
    assert [e[4] for e in log if e[2] == "end"] == [True, True]  # both loops saw the stop
    assert signal.getsignal(signal.SIGINT) is before  # the driver's own handler is back
    from ray.tune import tune as tune_module

    assert tune_module._setup_signal_catching.__name__ == "_setup_signal_catching"  # Tune's own again


def test_a_failing_pair_stops_the_others_and_its_error_is_raised():
    log: list = []
    slow = _tune_like(log, 60)

    def fit(pair: str, limit: int | None) -> None:
        if pair == "bad":
            time.sleep(0.2)
            raise RuntimeError("pair bad failed")
        slow(pair, limit)

    with pytest.raises(RuntimeError, match="pair bad failed"):
        run_side_by_side(["good", "bad", "never"], fit, cap=2)
    assert [e[4] for e in log if e[2] == "end"] == [True]  # the good pair was told to stop
    assert "never" not in {e[0] for e in log}


def test_tunes_loop_takes_its_stop_event_from_setup_signal_catching():
    from ray.tune import tune as tune_module

    source = inspect.getsource(tune_module.run)
    assert "experiment_interrupted_event = _setup_signal_catching()" in source
    assert "not experiment_interrupted_event.is_set()" in source
