"""Weights & Biases tracking, a side channel: one W&B run per trial, grouped by study.

Built on Ray's WandbLoggerCallback (ray.air.integrations.wandb, checked against Ray 2.60), with
three changes:
- every hook is guarded: a W&B failure is logged once, tracking stops, and the study goes on;
- the run also gets the trial's step log (`steps.jsonl`: loss, lr, grad norm, pairs/s as
  `train/*`), all on one x-axis, the global training step;
- offline mode needs no API key, and the W&B run directory is `<study>/<trial>/wandb/`.
Tune's file loggers run before it (study/orchestrate.py), so results reach disk first. The API key
is read by wandb from its usual places (WANDB_API_KEY, `wandb login`); it is never written to a
spec, a result or a log (Ray's own callback would put it in a runtime_env, which Ray logs).
"""

from __future__ import annotations

import json
import logging
import netrc
import os
from pathlib import Path
from urllib.parse import urlparse

import ray
from ray.air.integrations.wandb import WandbLoggerCallback, _QueueItem, _WandbLoggingActor
from ray.air.util.node import _force_on_current_node

from study.cluster.whole_files import is_local
from study.names import check_name

logger = logging.getLogger(__name__)

WANDB_MODES: tuple[str, ...] = ("off", "offline", "online")
DEFAULT_PROJECT = "reranker-optimizer-study"  # WANDB_PROJECT overrides it
STEP_LOG = "steps.jsonl"  # written by trainables/trial.py
UPLOAD_TIMEOUT_S = 300  # at the end of a study, the most W&B runs may take to finish uploading (Ray's default: 30)
INTERRUPTED_UPLOAD_TIMEOUT_S = 30  # after Ctrl+C: the user is waiting, and `wandb sync` uploads the rest


def check_wandb_installed() -> None:
    try:
        import wandb  # noqa: F401
    except ImportError:
        raise RuntimeError(
            "--wandb needs the wandb package, which is not installed: pip install -e '.[wandb]' "
            "(or run with --wandb off)"
        ) from None


def api_key_available() -> bool:
    """True when W&B can log online: WANDB_API_KEY is set or `wandb login` stored a key in ~/.netrc."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or "api.wandb.ai"
    try:
        return netrc.netrc().authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def wandb_callbacks(mode: str, *, study_name: str) -> list:
    """The Tune callbacks for `--wandb MODE`: none for off, else one guarded W&B logger."""
    check_name(mode, WANDB_MODES, what="--wandb mode")
    if mode == "off":
        return []
    if mode == "online" and not api_key_available():
        print(
            "W&B: no API key (WANDB_API_KEY or `wandb login`), so logging offline; "
            "upload later with `wandb sync <study>/<trial>/wandb/offline-run-*`.",
            flush=True,
        )
        mode = "offline"
    try:
        check_wandb_installed()
        project = os.environ.get("WANDB_PROJECT") or DEFAULT_PROJECT
        callback = GuardedWandbCallback(project=project, group=study_name, mode=mode)
    except Exception as err:  # noqa: BLE001 -- tracking never stops a study
        logger.warning("W&B tracking is off for this study: %s", err)
        return []
    where = " (in <study>/<trial>/wandb/; upload with `wandb sync`)" if mode == "offline" else ""
    print(f"W&B: {mode}, project {project}, group {study_name}, one run per trial{where}", flush=True)
    return [callback]


class StepLoggingActor(_WandbLoggingActor):
    """Ray's per-trial W&B logging actor, also logging the trial's step log.

    Epoch results are logged at step `global_step` and the step-log lines at their own step, so
    training curves and evaluation metrics share one x-axis; step lines are flushed before each
    result, which keeps W&B's steps increasing.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # The trainable writes its step log into its Tune working directory, which for a trial on
        # this node is `<experiment>/working_dirs/<trial>` beside this actor's logdir,
        # `<experiment>/driver_artifacts/<trial>` (Ray 2.60's StorageContext layout); Tune copies
        # it into the study directory with each checkpoint.
        logdir = Path(self._logdir)
        self._steps_path = logdir.parent.parent / "working_dirs" / logdir.name / STEP_LOG
        self._steps_read = 0  # bytes of the step log already logged
        self._last_step = -1

    def run(self):
        try:
            self._log_until_end()
        except Exception as err:  # noqa: BLE001 -- W&B problems end this run, never the trial
            logger.warning("W&B logging for trial %s stopped: %s: %s", self._trial_name, type(err).__name__, err)

    def _log_until_end(self) -> None:
        os.environ["WANDB_START_METHOD"] = "thread"
        os.environ.setdefault("WANDB_SILENT", "true")  # the driver prints where the runs are
        run = self._wandb.init(*self.args, **self.kwargs)
        while True:
            kind, content = self.queue.get()
            if kind == _QueueItem.END:
                break
            if kind == _QueueItem.CHECKPOINT:
                self._handle_checkpoint(content)
                continue
            log, config_update = self._handle_result(content)
            self._log_new_steps(run)
            run.config.update(config_update, allow_val_change=True)
            step = int(log.get("global_step", log.get("training_iteration", 0)))
            self._log(run, log, step)
        self._log_new_steps(run)
        run.finish()

    def _log_new_steps(self, run) -> None:
        if not self._steps_path.exists():
            return
        with self._steps_path.open("rb") as f:
            f.seek(self._steps_read)
            chunk = f.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]  # a line still being written waits for next time
        self._steps_read += len(complete)
        for line in complete.decode("utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                self._log(run, {f"train/{k}": v for k, v in row.items() if k != "step"}, int(row["step"]))

    def _log(self, run, values: dict, step: int) -> None:
        if step < self._last_step:  # a retried trial repeats steps; W&B would drop them anyway
            return
        run.log(values, step=step)
        self._last_step = step


class GuardedWandbCallback(WandbLoggerCallback):
    """WandbLoggerCallback whose failures are logged once and then switch tracking off."""

    _logger_actor_cls = StepLoggingActor

    def __init__(self, *, project: str, group: str, mode: str):
        super().__init__(project=project, group=group, mode=mode, upload_timeout=UPLOAD_TIMEOUT_S)
        self._mode = mode
        self._failed = False

    def setup(self, *args, **kwargs):
        if self._mode == "online":  # Ray's setup only finds the API key, which offline runs do not need
            self._guard(super().setup, *args, **kwargs)

    def on_trial_start(self, *args, **kwargs):
        self._guard(super().on_trial_start, *args, **kwargs)

    def on_trial_restore(self, *args, **kwargs):
        self._guard(super().on_trial_restore, *args, **kwargs)

    def on_trial_save(self, *args, **kwargs):
        self._guard(super().on_trial_save, *args, **kwargs)

    def on_trial_result(self, *args, **kwargs):
        self._guard(super().on_trial_result, *args, **kwargs)

    def on_trial_complete(self, *args, **kwargs):
        self._guard(super().on_trial_complete, *args, **kwargs)

    def on_trial_error(self, *args, **kwargs):
        self._guard(super().on_trial_error, *args, **kwargs)

    def on_experiment_end(self, trials, **info):
        self._guard(self._close_runs, trials, **info)

    def _close_runs(self, trials, **info) -> None:
        """Close every W&B run, waiting a bounded time.

        A trial stopped by Ctrl+C never completes, so Ray never tells its logging actor to end and
        would wait the whole upload timeout for it (300 s); here it is told to end, and the wait after
        an interruption is INTERRUPTED_UPLOAD_TIMEOUT_S.
        """
        unfinished = [t for t in self._trial_logging_actors if t.status not in ("TERMINATED", "ERROR")]
        for trial in unfinished:
            self._signal_logging_actor_stop(trial=trial)
        if unfinished:
            self._upload_timeout = min(self._upload_timeout, INTERRUPTED_UPLOAD_TIMEOUT_S)
            print(
                f"W&B: closing the runs of {len(unfinished)} unfinished trials (at most {self._upload_timeout} s); "
                "upload what is left later with `wandb sync <study>/<trial>/wandb/<run>`",
                flush=True,
            )
        super().on_experiment_end(trials, **info)

    def _start_logging_actor(self, trial, exclude_results, **wandb_init_kwargs):
        if self._remote_logger_class is None:
            # Ray would hand WANDB_API_KEY to the actor in its runtime_env, and Ray's runtime-env
            # agent writes runtime_envs to its log in clear text. The actor runs on this node, so
            # it finds the key as this process does (inherited environment, or ~/.netrc).
            self._remote_logger_class = ray.remote(
                num_cpus=0, max_restarts=-1, max_task_retries=-1, **_force_on_current_node()
            )(self._logger_actor_cls)
        # The W&B run directory goes into the trial's directory in the study (when that is local).
        if is_local(trial.storage.storage_filesystem):
            Path(trial.path).mkdir(parents=True, exist_ok=True)
            wandb_init_kwargs["dir"] = trial.path
        super()._start_logging_actor(trial, exclude_results, **wandb_init_kwargs)

    def _guard(self, hook, *args, **kwargs) -> None:
        if self._failed:
            return
        try:
            hook(*args, **kwargs)
        except Exception as err:  # noqa: BLE001 -- tracking never stops a study
            self._failed = True
            logger.warning(
                "W&B tracking stopped after %s: %s. The study goes on; its results are on disk.",
                type(err).__name__,
                err,
            )
