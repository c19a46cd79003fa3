"""The whole study's progress in the driver's console: trials done / running / pending, best so far.

Tune's table shows each trial; this line answers "how far is the study, and what leads". It prints
when a trial starts, finishes or fails, and on results at most every `every_s` seconds.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from ray.tune import Callback

from eval.measures import FIRST_STAGE


@dataclass(frozen=True)
class Best:
    value: float
    trial: str
    epoch: int


def progress_line(
    *,
    total: int,
    done: int,
    failed: int,
    running: int,
    metric: str,
    best: Best | None,
    first_stage: float | None = None,
) -> str:
    """One line: 'Study: 2/6 trials done (1 failed), 2 running, 2 pending; best <metric> = 0.71 (<trial>,
    epoch 3); first stage 0.50' (the candidates' own order, what the rerankers must beat)."""
    pending = max(total - done - failed - running, 0)
    finished = done + failed
    failures = f" ({failed} failed)" if failed else ""
    leader = f"best {metric} = {best.value:.4f} ({best.trial}, epoch {best.epoch})" if best else "no results yet"
    baseline = f"; first stage {first_stage:.4f}" if first_stage is not None else ""
    return f"Study: {finished}/{total} trials done{failures}, {running} running, {pending} pending; {leader}{baseline}"


def better(value: float, best: Best | None, mode: str) -> bool:
    if not math.isfinite(value):
        return False
    if best is None:
        return True
    return value > best.value if mode == "max" else value < best.value


class StudyProgress(Callback):
    """A Tune callback in the driver. It keeps its own count of trial states, because Tune calls
    these hooks before it updates `trial.status`."""

    def __init__(self, total_trials: int, metric: str, mode: str, *, every_s: float = 30.0):
        self.total, self.metric, self.mode, self.every_s = total_trials, metric, mode, every_s
        self.best: Best | None = None
        self.first_stage: float | None = None  # the metric of the candidates' own order (trials report it at epoch 0)
        self.states: dict[str, str] = {}  # trial id -> running | done | failed
        self._printed_at = 0.0

    def on_trial_start(self, iteration, trials, trial, **info):
        self.states[trial.trial_id] = "running"
        self._print()

    def on_trial_result(self, iteration, trials, trial, result, **info):
        baseline = result.get(f"{FIRST_STAGE}/{self.metric}")
        if isinstance(baseline, (int, float)):
            self.first_stage = float(baseline)
        value = result.get(self.metric)
        if isinstance(value, (int, float)) and better(float(value), self.best, self.mode):
            self.best = Best(float(value), str(result.get("trial") or trial), int(result.get("epoch", -1)))
        if time.monotonic() - self._printed_at >= self.every_s:
            self._print()

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.states[trial.trial_id] = "done"
        self._print()

    def on_trial_error(self, iteration, trials, trial, **info):
        self.states[trial.trial_id] = "failed"
        self._print()

    def _print(self) -> None:
        states = list(self.states.values())
        line = progress_line(
            total=self.total,
            done=states.count("done"),
            failed=states.count("failed"),
            running=states.count("running"),
            metric=self.metric,
            best=self.best,
            first_stage=self.first_stage,
        )
        print(line, flush=True)
        self._printed_at = time.monotonic()
