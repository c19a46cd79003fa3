"""Run a StudySpec on Ray Tune: one trial per TrialSpec, results collected from the study directory."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from eval.measures import PRIMARY_METRIC, PRIMARY_MODE
from study import results
from study.spec import StudySpec


@dataclass(frozen=True)
class StudyOutcome:
    study_dir: Path
    trials: list[results.TrialResult]
    columns: list[results.Column]
    paths: dict[str, Path]


def primary_metric_key(spec: StudySpec) -> str:
    """The one metric that ranks trials and checkpoints: nDCG@10 on the first evaluation set."""
    return f"{spec.primary_eval_set}/{PRIMARY_METRIC}"


def study_dir(spec: StudySpec) -> Path:
    return Path(spec.storage).expanduser().resolve() / spec.name


def run_study(spec: StudySpec, *, address: str | None = None, verbose: int = 1, wandb: str = "off") -> StudyOutcome:
    """Run every trial of `spec` on Ray Tune; `wandb` (off | offline | online) mirrors trials to W&B."""
    # Tune's classic table lets us choose its columns (the new output shows every metric); the
    # snapshot warning fires on every epoch of short smoke trials and says nothing actionable.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    from ray import tune
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    from study.progress import StudyProgress
    from study.ray_cluster import connect
    from trainables.reranker import train_reranker, trial_resources

    directory = study_dir(spec)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "study_spec.json").write_text(spec.model_dump_json(indent=2))
    print(connect(address), flush=True)

    metric = primary_metric_key(spec)
    # Tune's file loggers first, so results reach disk before any tracking callback sees them.
    callbacks = [JsonLoggerCallback(), CSVLoggerCallback(), StudyProgress(len(spec.trials), metric, PRIMARY_MODE)]
    if wandb != "off":  # study.tracking imports wandb itself, which takes seconds
        from study.tracking import wandb_callbacks

        callbacks += wandb_callbacks(wandb, study_name=spec.name)
    tuner = tune.Tuner(
        tune.with_resources(train_reranker, trial_resources),
        param_space={"trial": tune.grid_search([t.model_dump(mode="json") for t in spec.trials])},
        tune_config=tune.TuneConfig(
            metric=metric,
            mode=PRIMARY_MODE,
            max_concurrent_trials=spec.max_concurrent,
            trial_name_creator=_trial_name,
            trial_dirname_creator=_trial_name,
        ),
        run_config=tune.RunConfig(
            name=spec.name,
            storage_path=str(directory.parent),
            checkpoint_config=tune.CheckpointConfig(
                num_to_keep=spec.checkpoints_to_keep,
                checkpoint_score_attribute=metric,
                checkpoint_score_order=PRIMARY_MODE,
            ),
            failure_config=tune.FailureConfig(max_failures=spec.max_failures),
            progress_reporter=_progress_table(spec, metric),
            callbacks=callbacks,
            verbose=verbose,
        ),
    )
    tuner.fit()
    return collect(spec)


def collect(spec: StudySpec) -> StudyOutcome:
    """Summarise whatever the study directory holds now (finished, failed or running trials)."""
    directory = study_dir(spec)
    trials = results.load_trials(directory)
    columns = results.table_columns([e.model_dump() for e in spec.trials[0].evaluation])
    paths = results.write_results(directory, trials, columns)
    return StudyOutcome(directory, trials, columns, paths)


def _progress_table(spec: StudySpec, metric: str):
    from ray.tune import CLIReporter

    columns = {"epoch": "epoch", "train_loss": "train loss", metric: f"{PRIMARY_METRIC} ({spec.primary_eval_set})"}
    for evaluation in spec.trials[0].evaluation[1:]:
        for name in evaluation.table_metrics:
            columns[f"{evaluation.name}/{name}"] = f"{name} ({evaluation.name})"
    return CLIReporter(
        metric_columns=columns,
        parameter_columns={"trial/optimizer/lr": "lr"},
        max_report_frequency=30,
        sort_by_metric=True,  # metric and mode come from TuneConfig
    )


def _trial_name(trial) -> str:
    config = trial.config["trial"]
    tag = f"-{config['tag']}" if config.get("tag") else ""
    return f"{config['model']['name']}-{config['optimizer']['name']}{tag}-{trial.trial_id}"
