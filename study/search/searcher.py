"""Tune's OptunaSearch, told that some results carry no validation metric.

A trial also reports inside epochs: mid-epoch checkpoints without a metric (trainables/trial.py).
OptunaSearch would look the metric up in every result and fail on those; this one passes them by.
It lives in its own module because Tune pickles the searcher with the experiment (for `--resume`),
so its class must be importable by name.
"""

from __future__ import annotations

from ray.tune.search.optuna import OptunaSearch


class MidEpochAwareOptunaSearch(OptunaSearch):
    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if self.metric in result:
            super().on_trial_result(trial_id, result)
