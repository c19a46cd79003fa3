"""Study progress lines and the W&B side channel's guards (only the end-of-study wait uses the shared Ray instance)."""

from __future__ import annotations

import logging
import time

import pytest

from study.tracking.progress import Best, better, progress_line


def test_progress_line_counts_the_whole_study():
    line = progress_line(
        total=12, done=5, failed=1, running=2, metric="dl/nDCG@10", best=Best(0.7127, "minilm-adamw-s13", 3)
    )
    assert (
        line == "Study: 6/12 trials done (1 failed), 2 running, 4 pending; "
        "best dl/nDCG@10 = 0.7127 (minilm-adamw-s13, epoch 3)"
    )
    assert progress_line(total=6, done=0, failed=0, running=0, metric="m", best=None).endswith(
        "6 pending; no results yet"
    )


def test_best_so_far_follows_the_metric_direction():
    best = Best(0.5, "a", 1)
    assert better(0.6, best, "max") and not better(0.4, best, "max")
    assert better(0.4, best, "min") and better(0.1, None, "max")
    assert not better(float("nan"), None, "max")


@pytest.fixture
def no_wandb_credentials(tmp_path, monkeypatch):
    for name in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc, no ~/.config/wandb
    monkeypatch.setenv("NETRC", str(tmp_path / ".netrc"))


def test_online_without_an_api_key_logs_offline(no_wandb_credentials, capsys):
    from study.tracking.wandb_logger import GuardedWandbCallback, api_key_available, wandb_callbacks

    assert not api_key_available()
    [callback] = wandb_callbacks("online", study_name="s")
    assert isinstance(callback, GuardedWandbCallback) and callback.kwargs["mode"] == "offline"
    assert callback.group == "s"
    assert "no API key" in capsys.readouterr().out
    assert wandb_callbacks("off", study_name="s") == []
    with pytest.raises(ValueError, match="unknown --wandb mode 'ofline'. Did you mean 'offline'"):
        wandb_callbacks("ofline", study_name="s")


def test_a_wandb_failure_is_logged_once_and_never_raised(no_wandb_credentials, caplog):
    from study.tracking.wandb_logger import GuardedWandbCallback

    callback = GuardedWandbCallback(project="p", group="g", mode="online")
    with caplog.at_level(logging.WARNING, logger="study.tracking.wandb_logger"):
        callback.setup()  # Ray's setup finds no API key and raises; the guard keeps the study going
        callback.on_trial_result(iteration=1, trials=[], trial=None, result={})  # skipped from now on
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "W&B tracking stopped after ValueError: No WandB API key found" in warnings[0]
    assert "The study goes on; its results are on disk." in warnings[0]


class _Trial:
    """What the W&B callback reads of a Tune trial at the end of a study (hashable, like Tune's)."""

    def __init__(self, status: str):
        self.status = status


def test_interrupted_trials_end_their_wandb_runs_without_the_long_wait(ray_cluster, no_wandb_credentials, capsys):
    """After Ctrl+C a trial never completes, so Ray never ends its W&B run and waited the whole upload timeout."""
    import ray
    from ray.air.integrations.wandb import _QueueItem
    from ray.util.queue import Queue

    from study.tracking.wandb_logger import INTERRUPTED_UPLOAD_TIMEOUT_S, UPLOAD_TIMEOUT_S, GuardedWandbCallback

    @ray.remote(num_cpus=0)
    class RunUntilEnd:  # the loop of Ray's W&B logging actor: it returns only once its queue says END
        def run(self, queue) -> str:
            while queue.get()[0] != _QueueItem.END:
                pass
            return "ended"

    callback = GuardedWandbCallback(project="p", group="g", mode="offline")
    trial, queue, actor = _Trial("RUNNING"), Queue(), RunUntilEnd.remote()  # a trial stopped by Ctrl+C
    future = actor.run.remote(queue)
    callback._trial_queues[trial], callback._trial_logging_actors[trial] = queue, actor
    callback._trial_logging_futures[trial], callback._logging_future_to_trial[future] = future, trial
    finished = _Trial("TERMINATED")  # Tune already ended its run (and cleaned its actor up)

    started = time.monotonic()
    callback.on_experiment_end(trials=[trial, finished])
    waited = time.monotonic() - started
    assert waited < INTERRUPTED_UPLOAD_TIMEOUT_S < UPLOAD_TIMEOUT_S, waited
    assert ray.get(future, timeout=10) == "ended"  # told to end, not killed after a timeout
    assert not callback._trial_logging_actors and not callback._failed
    assert "closing the runs of 1 unfinished trials" in capsys.readouterr().out
