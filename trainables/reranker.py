"""The Ray Tune function trainable: one trial = one model x optimizer setting, trained and evaluated.

It only adapts `run_trial` to Tune: the trial's config holds the resolved TrialSpec as JSON, Tune
supplies the trial directory and (on a retry or resume) the last checkpoint, and every epoch's
metrics go back through `tune.report` with that epoch's checkpoint.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from study.spec import TrialSpec
from trainables.trial import run_trial


def train_reranker(config: dict) -> None:
    from ray import tune

    spec = TrialSpec.model_validate(config["trial"])
    trial_dir = Path(tune.get_context().get_trial_dir())

    def report(metrics: dict, checkpoint_dir: Path) -> None:
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(checkpoint_dir))

    checkpoint = tune.get_checkpoint()
    restore = checkpoint.as_directory() if checkpoint else contextlib.nullcontext()
    with restore as restore_dir:
        run_trial(spec, trial_dir=trial_dir, report=report, restore_from=Path(restore_dir) if restore_dir else None)


def trial_resources(config: dict) -> dict[str, float]:
    """Ray resources for one trial, read from its spec (so GTE and MiniLM can ask for different GPUs)."""
    resources = config["trial"].get("resources", {})
    return {"cpu": float(resources.get("cpus", 1.0)), "gpu": float(resources.get("gpus", 0.0))}
