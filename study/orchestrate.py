"""Run a StudySpec on Ray Tune: one trial per TrialSpec, results collected from the study directory.

The study directory is `<storage>/<name>`; storage may be a URI (s3://, gs://, ...) that every
node of a cluster reaches, in which case the results are read back into a local mirror
(./studies/<name>) and the result files are written to both places.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from eval.measures import PRIMARY_METRIC, PRIMARY_MODE
from study import results
from study.cluster import storage
from study.spec import StudySpec

LOCAL_MIRROR = "studies"  # where a study stored at a URI is read back to, relative to the working directory


@dataclass(frozen=True)
class StudyOutcome:
    study_dir: Path
    trials: list[results.TrialResult]
    columns: list[results.Column]
    paths: dict[str, Path]
    location: str | None = None  # the study's URI, when it is not stored locally


def primary_metric_key(spec: StudySpec) -> str:
    """The one metric that ranks trials and checkpoints: nDCG@10 on the first evaluation set."""
    return f"{spec.primary_eval_set}/{PRIMARY_METRIC}"


def study_dir(spec: StudySpec) -> Path:
    """The local directory with the study's results: the study itself, or its mirror for URI storage."""
    if storage.is_uri(spec.storage):
        return Path(LOCAL_MIRROR).resolve() / spec.name
    return Path(spec.storage).expanduser().resolve() / spec.name


def run_study(
    spec: StudySpec,
    *,
    address: str | None = None,
    verbose: int = 0,
    resume: bool = False,
    env_vars: dict[str, str] | None = None,
    wandb: str = "off",
    command: str = "run_study() from Python",
) -> StudyOutcome:
    """Run (or with `resume`, continue) the study; `env_vars` go to every trial process on every
    node; `wandb` (off | offline | online) mirrors trials to W&B; `command` goes into the study's
    manifest.json. `verbose` 0 shows one progress line
    for the whole study; 1 (`--verbose`) adds Tune's per-trial table every 30 s and its log lines."""
    # Tune's classic table lets us choose its columns (the new output shows every metric); the
    # snapshot warning fires on every epoch of short smoke trials and says nothing actionable.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # Mid-epoch checkpoints are reported without the ranking metric (trainables/trial.py).
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    from ray import tune
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    from study.cluster.connect import check_trial_resources, connect
    from study.cluster.tune_sync import StudyFilesOutOfTuneSync
    from study.cluster.whole_files import sweep_temporaries, tune_storage
    from study.tracking.progress import StudyProgress
    from trainables.reranker import train_reranker, trial_resources
    from trainables.trial import CHECKPOINT_SCORE

    location = storage.study_location(spec.storage, spec.name)
    print(f"Study directory: {location}", flush=True)
    quiet_tune_logs(verbose)
    print(connect(address, env_vars=env_vars), flush=True)
    check_trial_resources({t.name: {"cpus": t.resources.cpus, "gpus": t.resources.gpus} for t in spec.trials})
    if not resume:  # written once Ray is up and the trials fit: a refused start leaves no study behind
        storage.write_text(storage.join(location, storage.SPEC_FILE), spec.model_dump_json(indent=2))
    from study.tracking.manifest import MANIFEST_FILE, write_manifest

    # What made the study (versions, commit, command, machine, data checksums); a resume adds its own.
    manifest_name = MANIFEST_FILE.replace(".json", ".resumed.json") if resume else MANIFEST_FILE
    write_manifest(
        lambda name, text: storage.write_text(storage.join(location, manifest_name), text),
        spec.model_dump(mode="json"),
        command,
    )

    trainable = tune.with_resources(train_reranker, trial_resources)
    # Tune writes a local study through a filesystem that renames each file into place whole.
    storage_options = tune_storage(storage.split_location(location)[0])
    if resume:
        if storage_options["storage_filesystem"]:
            sweep_temporaries(Path(location))  # what a killed driver was writing: the last whole version stays
        # Finished trials stay finished; unfinished and errored ones continue from their last checkpoint.
        tune.Tuner.restore(
            location,
            trainable,
            resume_unfinished=True,
            resume_errored=True,
            storage_filesystem=storage_options["storage_filesystem"],
        ).fit()
        return collect(spec)

    metric = primary_metric_key(spec)
    # Tune's file loggers first, so results reach disk before any tracking callback sees them.
    callbacks = [
        JsonLoggerCallback(),
        CSVLoggerCallback(),
        StudyProgress(len(spec.trials), metric, PRIMARY_MODE),
        StudyFilesOutOfTuneSync(),  # kept with the Tuner, so a resume has it too
    ]
    if wandb != "off":  # study.tracking.wandb_logger imports wandb itself, which takes seconds
        from study.tracking.wandb_logger import wandb_callbacks

        callbacks += wandb_callbacks(wandb, study_name=spec.name)
    tuner = tune.Tuner(
        trainable,
        param_space={"trial": tune.grid_search([t.model_dump(mode="json") for t in spec.trials]), "score_metric": metric},
        tune_config=tune.TuneConfig(
            metric=metric,
            mode=PRIMARY_MODE,
            max_concurrent_trials=spec.max_concurrent,
            trial_name_creator=_trial_name,
            trial_dirname_creator=_trial_name,
        ),
        run_config=tune.RunConfig(
            name=spec.name,
            **storage_options,
            checkpoint_config=tune.CheckpointConfig(
                num_to_keep=spec.checkpoints_to_keep,
                checkpoint_score_attribute=CHECKPOINT_SCORE,  # the metric; mid-epoch checkpoints rank last
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


def quiet_tune_logs(verbose: int) -> None:
    """At verbosity 0, Tune's INFO lines in the driver (where it wrote its state, total run time) go:
    the study's own lines say where results are and how long trials took."""
    import logging

    logging.getLogger("ray.tune").setLevel(logging.INFO if verbose else logging.WARNING)


def collect(spec: StudySpec) -> StudyOutcome:
    """Summarise whatever the study directory holds now (finished, failed or running trials)."""
    directory = study_dir(spec)
    location = storage.study_location(spec.storage, spec.name) if storage.is_uri(spec.storage) else None
    if location:
        storage.mirror_study(location, directory)
    trials = results.load_trials(directory)
    columns = results.table_columns([e.model_dump() for e in spec.trials[0].evaluation])
    paths = results.write_results(directory, trials, columns)
    if location:
        for path in paths.values():
            storage.write_text(storage.join(location, path.name), path.read_text())
    return StudyOutcome(directory, trials, columns, paths, location)


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
