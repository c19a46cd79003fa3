"""The Ray Tune function trainable: one trial = one model x optimizer setting, trained and evaluated.

It only adapts `run_trial` to Tune: the trial's config holds the resolved TrialSpec as JSON, Tune
supplies the trial directory and (on a retry or resume) the last checkpoint, and every epoch's
metrics go back through `tune.report` with that epoch's checkpoint (and so do mid-epoch checkpoints:
Tune restores a retried trial from the latest one). `config["score_metric"]` names the metric whose
value ranks the checkpoints Tune keeps (trainables/trial.py's CHECKPOINT_SCORE).

The trial writes its files (run files, per-query metrics, step log) into Tune's trial working
directory on whichever node runs it; at every report, and when the trial ends, the files that
changed are copied to the study's storage whole (trainables/artifacts.py: Tune's own artifact copy,
left off in study/orchestrate.py, rewrites them in place). A trial restored on another node first
gets its step log back from storage, so the log continues rather than starts over.

A diverged trial (NonFiniteLossError) is not trained again: the divergence is deterministic, but
Ray 2.60's FailureConfig retries every failure alike (no per-exception policy; `fail_fast` would
stop the whole study). So the trial leaves a marker in its storage, and a retry (or a --resume)
that finds it fails again at once with the same message, before loading anything: the trial ends
errored after its retries, each of which takes seconds, not an epoch.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from study.spec import TrialSpec
from trainables.artifacts import Publisher, write_whole
from trainables.quiet_logs import quiet_trial_logs
from trainables.training import NonFiniteLossError
from trainables.trial import STEP_LOG, run_trial

DIVERGED_MARKER = "diverged.txt"


def train_reranker(config: dict) -> None:
    from ray import tune

    quiet_trial_logs()
    spec = TrialSpec.model_validate(config["trial"])
    trial_storage = tune.get_context().get_storage()
    trial_dir = Path(trial_storage.trial_working_directory)
    files = Publisher(trial_dir, trial_storage.storage_filesystem, trial_storage.trial_fs_path)

    def report(metrics: dict, checkpoint_dir: Path | None) -> None:
        _exit_if_asked(metrics)
        files.publish()  # before the report: a reported epoch's files are in the storage
        checkpoint = tune.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None
        tune.report(metrics, checkpoint=checkpoint)

    _stop_if_diverged(trial_storage)
    checkpoint = tune.get_checkpoint()
    if checkpoint:
        _fetch_step_log(trial_storage, trial_dir)
    restore = _checkpoint_directory(checkpoint) if checkpoint else contextlib.nullcontext()
    try:
        with restore as restore_dir:
            run_trial(
                spec,
                trial_dir=trial_dir,
                report=report,
                restore_from=Path(restore_dir) if restore_dir else None,
                score_metric=config.get("score_metric"),
            )
    except NonFiniteLossError as err:
        _write_stored(trial_storage, DIVERGED_MARKER, str(err))
        raise
    finally:
        files.publish()  # the step log's last lines (and whatever a failing trial wrote)


def _checkpoint_directory(checkpoint):
    """A context giving the checkpoint as a local directory: where it lies on a local study's storage,
    else a temporary copy Tune makes."""
    from study.cluster.whole_files import local_path

    path = local_path(checkpoint.filesystem, checkpoint.path)
    return contextlib.nullcontext(path) if path else checkpoint.as_directory()


def _stop_if_diverged(trial_storage) -> None:
    """A retry of a diverged trial fails at once with the divergence's message (see the module's docstring)."""
    message = _read_stored(trial_storage, DIVERGED_MARKER)
    if message is not None:
        raise NonFiniteLossError(f"{message} (not retried: the divergence is deterministic)")


def _read_stored(trial_storage, name: str) -> str | None:
    import pyarrow.fs

    filesystem, path = trial_storage.storage_filesystem, f"{trial_storage.trial_fs_path}/{name}"
    if filesystem.get_file_info(path).type != pyarrow.fs.FileType.File:
        return None
    with filesystem.open_input_stream(path) as stream:
        return stream.read().decode()


def _write_stored(trial_storage, name: str, text: str) -> None:
    write_whole(trial_storage.storage_filesystem, f"{trial_storage.trial_fs_path}/{name}", text.encode())


# Fault injection for the resume tests. They point this variable at a directory before Ray starts
# and arm a fault by creating `<trial name>.exit-at-step-<N>` there: the trial process about to
# report step N exits at once, as if its worker died. The file is consumed, so the retry runs on.
FAULTS_ENV = "STUDY_TEST_FAULTS"


def _exit_if_asked(metrics: dict) -> None:
    faults = os.environ.get(FAULTS_ENV)
    if not faults:
        return
    try:
        (Path(faults) / f"{metrics.get('trial')}.exit-at-step-{metrics.get('global_step')}").unlink()
    except FileNotFoundError:
        return
    os._exit(1)


def _fetch_step_log(trial_storage, trial_dir: Path) -> None:
    """Bring the step log back from storage: the retry appends to it, and Tune's copy replaces the stored one.

    Only the step log: run files are one per epoch and stay in storage, and the files Tune's driver
    writes there (result.json, ...) must not be overwritten by older copies.
    """
    import pyarrow.fs

    filesystem = trial_storage.storage_filesystem
    stored = f"{trial_storage.trial_fs_path}/{STEP_LOG}"
    if filesystem.get_file_info(stored).type != pyarrow.fs.FileType.File:
        return
    trial_dir.mkdir(parents=True, exist_ok=True)
    with filesystem.open_input_stream(stored) as stream:
        (trial_dir / STEP_LOG).write_bytes(stream.read())


def trial_resources(config: dict) -> dict[str, float]:
    """Ray resources for one trial, read from its spec (so GTE and MiniLM can ask for different GPUs)."""
    resources = config["trial"].get("resources", {})
    return {"cpu": float(resources.get("cpus", 1.0)), "gpu": float(resources.get("gpus", 0.0))}
