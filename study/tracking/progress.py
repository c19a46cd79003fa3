"""The whole study's progress in the driver's console: trials done / running / pending, steps, ETA, best so far.

This one line replaces Tune's per-trial table at the default verbosity (`--verbose` brings the table
back). It prints when a trial starts, finishes or fails, and on results at most every `every_s`
seconds. The ETA comes from measured time per training step (evaluations included), so it is only
shown once a trial has trained at least one epoch.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field

from ray.tune import Callback

from eval.measures import FIRST_STAGE

# A search's pairs run their Tune loops in threads of one driver, all calling one StudyProgress
# (study/search/parallel.py). A module lock, not an attribute: Tune pickles its callbacks.
_LOCK = threading.RLock()


@dataclass(frozen=True)
class Best:
    value: float
    trial: str
    epoch: int


@dataclass
class TrialSteps:
    """One trial's training progress, as its reports tell it."""

    total: int = 0  # the trial's total training steps (0: not reported yet)
    done: int = 0
    first_step: int = 0  # where the timing starts: the first report (set-up and epoch 0 are not steps)
    first_s: float | None = None  # Tune's time_total_s at that report
    last_s: float = 0.0

    def update(self, result: dict) -> None:
        self.total = int(result.get("total_steps") or self.total)
        self.done, self.last_s = int(result.get("global_step") or 0), float(result.get("time_total_s") or 0.0)
        if self.first_s is None:  # a restored trial starts counting where it is
            self.first_step, self.first_s = self.done, self.last_s

    @property
    def timed(self) -> tuple[int, float]:
        """(steps, seconds) measured since the first report."""
        return max(self.done - self.first_step, 0), self.last_s - (self.first_s or 0.0)


@dataclass
class Eta:
    """Remaining training steps x measured seconds per step / trials running at once."""

    trials: dict[str, TrialSteps] = field(default_factory=dict)

    def steps(self, total_trials: int) -> tuple[int, int] | None:
        """(done, total) steps across the study; pending trials count as the mean known trial."""
        known = [t for t in self.trials.values() if t.total]
        if not known:
            return None
        mean_total = sum(t.total for t in known) / len(known)
        done = sum(min(t.done, t.total) for t in known)
        total = sum(t.total for t in known) + round(mean_total * max(total_trials - len(known), 0))
        return done, total

    def seconds_left(self, total_trials: int, parallel: int) -> float | None:
        timed = [t.timed for t in self.trials.values()]
        steps, seconds = sum(s for s, _ in timed), sum(s for _, s in timed)
        progress = self.steps(total_trials)
        if steps <= 0 or seconds <= 0 or progress is None:
            return None
        done, total = progress
        return (total - done) * seconds / steps / max(parallel, 1)


def format_duration(seconds: float) -> str:
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def progress_line(
    *,
    total: int,
    done: int,
    failed: int,
    running: int,
    metric: str,
    best: Best | None,
    first_stage: float | None = None,
    steps: tuple[int, int] | None = None,
    eta_s: float | None = None,
    label: str = "Study",
) -> str:
    """One line: 'Study: 2/6 trials done (1 failed), 2 running, 2 pending; steps 340/1020 (33%), ETA 3m20s;
    best <metric> = 0.71 (<trial>, epoch 3); first stage 0.50' (the candidates' own order, what the
    rerankers must beat)."""
    pending = max(total - done - failed - running, 0)
    finished = done + failed
    failures = f" ({failed} failed)" if failed else ""
    where = ""
    if steps:
        where = f"; steps {steps[0]}/{steps[1]} ({100 * steps[0] / max(steps[1], 1):.0f}%)"
        if eta_s is not None and finished < total:
            where += f", ETA {format_duration(eta_s)}"
    leader = f"best {metric} = {best.value:.4f} ({best.trial}, epoch {best.epoch})" if best else "no results yet"
    baseline = f"; first stage {first_stage:.4f}" if first_stage is not None else ""
    return f"{label}: {finished}/{total} trials done{failures}, {running} running, {pending} pending{where}; {leader}{baseline}"


def better(value: float, best: Best | None, mode: str) -> bool:
    if not math.isfinite(value):
        return False
    if best is None:
        return True
    return value > best.value if mode == "max" else value < best.value


class StudyProgress(Callback):
    """A Tune callback in the driver. It keeps its own count of trial states, because Tune calls
    these hooks before it updates `trial.status`. A search shares one instance across its model x
    optimizer pairs (one Tuner each, side by side), so the line counts the whole search."""

    def __init__(self, total_trials: int, metric: str, mode: str, *, every_s: float = 30.0, label: str = "Study"):
        self.total, self.metric, self.mode, self.every_s, self.label = total_trials, metric, mode, every_s, label
        self.best: Best | None = None
        self.first_stage: float | None = None  # the metric of the candidates' own order (trials report it at epoch 0)
        self.states: dict[str, str] = {}  # trial id -> running | done | failed
        self.eta = Eta()
        self.most_parallel = 1
        self._printed_at = 0.0

    def on_trial_start(self, iteration, trials, trial, **info):
        with _LOCK:
            self.states[trial.trial_id] = "running"
            self.most_parallel = max(self.most_parallel, list(self.states.values()).count("running"))
            self._print()

    def on_trial_result(self, iteration, trials, trial, result, **info):
        with _LOCK:
            baseline = result.get(f"{FIRST_STAGE}/{self.metric}")
            if isinstance(baseline, (int, float)):
                self.first_stage = float(baseline)
            self.eta.trials.setdefault(trial.trial_id, TrialSteps()).update(result)
            value = result.get(self.metric)
            if isinstance(value, (int, float)) and better(float(value), self.best, self.mode):
                self.best = Best(float(value), str(result.get("trial") or trial), int(result.get("epoch", -1)))
            if time.monotonic() - self._printed_at >= self.every_s:
                self._print()

    def on_trial_complete(self, iteration, trials, trial, **info):
        with _LOCK:
            self.states[trial.trial_id] = "done"
            self._print()

    def on_trial_error(self, iteration, trials, trial, **info):
        with _LOCK:
            self.states[trial.trial_id] = "failed"
            self._print()

    def line(self) -> str:
        states = list(self.states.values())
        return progress_line(
            total=self.total,
            done=states.count("done"),
            failed=states.count("failed"),
            running=states.count("running"),
            metric=self.metric,
            best=self.best,
            first_stage=self.first_stage,
            steps=self.eta.steps(self.total),
            eta_s=self.eta.seconds_left(self.total, self.most_parallel),
            label=self.label,
        )

    def _print(self) -> None:
        print(self.line(), flush=True)
        self._printed_at = time.monotonic()
