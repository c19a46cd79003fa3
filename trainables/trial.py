"""One trial from start (or checkpoint) to finish, independent of Ray.

`run_trial` wires the parts together: data -> model -> optimizer and schedule -> epoch 0 evaluation
-> (train one epoch -> evaluate -> checkpoint -> report) per epoch. Inside an epoch it may also
checkpoint (every `checkpoint_every_steps` / `_minutes`) and evaluate (every `validate_every_steps`);
such reports say `mid_epoch: True` and are not epoch rows (study/results.py skips them). Ray's trainable
(trainables/reranker.py) only supplies the trial directory, the checkpoint to restore and the
report function, so the same code runs in tests without Ray.
"""

from __future__ import annotations

import functools
import json
import math
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from eval.evaluator import evaluate_first_stage, evaluate_reranker
from eval.measures import PRIMARY_METRIC
from study.data import registry
from study.data.cache import cached_candidates
from study.data.lock import data_guard
from study.data.training_cache import cached_training_tokens
from study.spec import TrialSpec
from trainables.checkpointing import TrainingProgress, load_checkpoint, save_checkpoint, seed_everything
from trainables.cuda_check import require_cuda
from trainables.determinism import set_deterministic
from trainables.heldout import HELDOUT_LOSS, HeldOut
from trainables.models import attention_preference, load_cross_encoder, model_input_names
from trainables.optimizers import build_optimizer, eval_mode, optimizer_state_bytes, train_mode
from trainables.schedules import build_scheduler
from trainables.training import EpochState, epoch_batches, train_one_epoch

# report(metrics, checkpoint_dir): called once per evaluated epoch and per mid-epoch checkpoint or
# evaluation, while checkpoint_dir exists (None: a mid-epoch evaluation without a checkpoint).
Report = Callable[[dict, "Path | None"], None]

STEP_LOG = "steps.jsonl"
# Tune keeps the best checkpoints by this key: the ranking metric at epoch ends, NaN (ranked last
# whatever the mode) for mid-epoch ones, which are kept only while they are the latest.
CHECKPOINT_SCORE = "checkpoint_score"
MID_EPOCH = "mid_epoch"


def run_trial(
    spec: TrialSpec,
    *,
    trial_dir: Path,
    report: Report,
    restore_from: Path | None = None,
    score_metric: str | None = None,
) -> None:
    """Train and evaluate one trial, reporting as it goes. `score_metric` is the metric key that
    ranks its checkpoints (default: nDCG@10 on the first evaluation set)."""
    score_metric = score_metric or f"{spec.evaluation[0].name}/{PRIMARY_METRIC}"
    trial_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(spec.training.seed)
    set_deterministic(spec.training.deterministic)  # before the trial's first CUDA call
    device, autocast_dtype = device_and_autocast(spec)

    tokenizer, model = load_cross_encoder(
        spec.model,
        attention=attention_preference(device.type, half_precision=autocast_dtype is not None),
        padding_free=spec.training.padding_free,
    )
    model.to(device)
    if spec.training.compile:
        model.compile(dynamic=True)  # in place: parameter names, and so checkpoints, stay the same
    with_types = "token_type_ids" in model_input_names(model)

    with data_guard(spec):  # prepared data is read as is; else one process per machine builds it
        eval_pairs = evaluation_candidates(spec, tokenizer, with_types=with_types)
        (train_tokens, train_labels), heldout_entry = training_tokens(spec, tokenizer, with_types=with_types)
    heldout = HeldOut(*heldout_entry) if heldout_entry is not None else None

    def heldout_loss() -> dict:
        """The thesis's evaluation loss (trainables/heldout.py), keyed for a result row or step-log line."""
        if heldout is None:
            return {}
        kwargs = {"batch_size": spec.evaluation[0].batch_size, "device": device, "autocast_dtype": autocast_dtype}
        return {HELDOUT_LOSS: heldout.loss(model, **kwargs)}

    batches_per_epoch = -(-len(train_tokens) // spec.training.batch_size)
    optimizer = build_optimizer(model, spec.optimizer)
    scheduler = build_scheduler(optimizer, spec.schedule, total_steps=batches_per_epoch * spec.training.epochs)

    def evaluate(epoch: int, *, step: int | None = None) -> dict:
        """Evaluate every set; run files go to the trial directory, or, inside an epoch, to mid_epoch/step<N>/."""
        eval_mode(optimizer, spec.optimizer.name)  # schedule-free: evaluate (and save) the averaged weights
        metrics: dict = {}
        out_dir = trial_dir if step is None else trial_dir / MID_EPOCH / f"step{step}"
        for eval_spec, pairs in zip(spec.evaluation, eval_pairs):
            metrics |= evaluate_reranker(
                model,
                pairs,
                epoch=epoch,
                out_dir=out_dir,
                run_tag=f"{spec.name}-epoch{epoch}" + (f"-step{step}" if step is not None else ""),
                batch_size=eval_spec.batch_size,
                device=device,
                autocast_dtype=autocast_dtype,
            )
        return metrics | (heldout_loss() if step is None else {})

    def checkpoint_and_report(metrics: dict, progress: TrainingProgress, *, save: bool = True) -> None:
        metrics |= _identity(spec) | {"epoch": progress.epoch, "global_step": progress.global_step}
        metrics["total_steps"] = batches_per_epoch * spec.training.epochs  # the driver's ETA (study/tracking/progress.py)
        metrics["optimizer_state_bytes"] = optimizer_state_bytes(optimizer)
        metrics["model_parameters"] = sum(p.numel() for p in model.parameters())  # beside the thesis's §4.1.2
        metrics["peak_memory_bytes"], metrics["peak_memory_source"] = peak_memory(device)
        if progress.partial_epoch is None:
            metrics[CHECKPOINT_SCORE] = metrics.get(score_metric, math.nan)
        else:
            metrics |= {MID_EPOCH: True, CHECKPOINT_SCORE: math.nan}
        if not save:
            report(metrics, None)
            return
        with tempfile.TemporaryDirectory(prefix="ckpt-") as tmp:
            save_checkpoint(
                Path(tmp),
                spec=spec,
                model=model,
                tokenizer=tokenizer,
                optimizer=optimizer,
                scheduler=scheduler,
                progress=progress,
            )
            report(metrics, Path(tmp))

    if restore_from is not None:
        progress = load_checkpoint(restore_from, model=model, optimizer=optimizer, scheduler=scheduler)
    else:
        progress = TrainingProgress(epoch=0, global_step=0)
        # The first stage's own order, scored once beside epoch 0: the baseline row of every table.
        first_stage = {k: v for pairs in eval_pairs for k, v in evaluate_first_stage(pairs, out_dir=trial_dir).items()}
        checkpoint_and_report(evaluate(0) | first_stage, progress)

    with (trial_dir / STEP_LOG).open("a", encoding="utf-8") as step_log:

        def log_step(line: dict) -> None:
            step_log.write(json.dumps(line) + "\n")
            step_log.flush()

        last_checkpoint = time.monotonic()

        def mid_epoch_point(step: int, state: EpochState, *, n_batches: int, done_before: int) -> None:
            """After each step: checkpoint and/or evaluate when due (and not at the epoch's end)."""
            nonlocal last_checkpoint
            if state.batches_done == n_batches:
                return  # the epoch's end: evaluated and checkpointed below
            if _due(step, spec.training.heldout_every) and heldout is not None:
                log_step({"epoch": done_before + 1, "step": step} | heldout_loss())
            save = _due(step, spec.training.checkpoint_every_steps) or (
                spec.training.checkpoint_every_minutes is not None
                and time.monotonic() - last_checkpoint >= 60 * spec.training.checkpoint_every_minutes
            )
            validate = _due(step, spec.training.validate_every_steps)
            if not (save or validate):
                return
            metrics = evaluate(done_before, step=step) if validate else {}
            model.train()
            train_mode(optimizer, spec.optimizer.name)
            here = TrainingProgress(epoch=done_before, global_step=step, partial_epoch=state.to_dict())
            checkpoint_and_report(metrics, here, save=save)
            if save:
                last_checkpoint = time.monotonic()

        for epoch in range(progress.epoch + 1, spec.training.epochs + 1):
            batches = epoch_batches(
                train_tokens.lengths,
                spec.training.batch_size,
                batching=spec.training.batching,
                seed=spec.training.seed,
                epoch=epoch,
            )
            partial = progress.partial_epoch
            state = EpochState.from_dict(partial, device) if partial else EpochState.fresh(device)
            epoch_start_step = progress.global_step - state.batches_done
            train_mode(optimizer, spec.optimizer.name)
            stats = train_one_epoch(
                model,
                optimizer,
                scheduler,
                train_tokens,
                train_labels,
                batches,
                device=device,
                autocast_dtype=autocast_dtype,
                grad_clip=spec.training.grad_clip,
                log_every=spec.training.log_every,
                epoch=epoch,
                first_step=epoch_start_step,
                on_log=log_step,
                loader_workers=_loader_workers(spec, device),
                state=state,
                after_step=functools.partial(mid_epoch_point, n_batches=len(batches), done_before=epoch - 1),
            )
            progress = TrainingProgress(epoch=epoch, global_step=epoch_start_step + stats.steps)
            metrics = evaluate(epoch) | {
                "train_loss": stats.mean_loss,
                "train_pairs_per_s": stats.pairs_per_s,
                "train_seconds": stats.seconds,
            }
            checkpoint_and_report(metrics, progress)


def evaluation_candidates(spec: TrialSpec, tokenizer, *, with_types: bool) -> list:
    """The trial's evaluation sets, tokenized (from the cache, or tokenized and cached)."""
    return [
        cached_candidates(
            registry.load_eval_set(e),
            tokenizer,
            max_length=spec.model.max_length,
            with_token_type_ids=with_types,
            depth=e.depth,
        )
        for e in spec.evaluation
    ]


def training_tokens(spec: TrialSpec, tokenizer, *, with_types: bool) -> tuple:
    """The trial's training pairs and its held-out pairs (None without), each as tokens and labels
    (from the cache, or built and cached)."""
    return cached_training_tokens(
        spec.training.data,
        tokenizer,
        seed=spec.training.seed,
        max_length=spec.model.max_length,
        with_token_type_ids=with_types,
        heldout_pairs=spec.training.heldout_pairs,
    )


def _due(step: int, every: int | None) -> bool:
    return every is not None and step % every == 0


def _identity(spec: TrialSpec) -> dict:
    """Labels carried in every result row, so tables never lose which trial (or stand-in) it was."""
    return {
        "trial": spec.name,
        "model": spec.model.name,
        "optimizer": spec.optimizer.name,
        "scale": spec.scale,
        "stand_in_for": spec.model.stand_in_for or "",
        "seed": spec.training.seed,
    }


def is_measurement(metric: str) -> bool:
    """Metrics about the machine (speed, time, memory): they differ between identical runs, so a
    resumed trial reproduces every metric but these."""
    return any(part in metric for part in ("per_s", "seconds", "peak_memory"))


def peak_memory(device: torch.device) -> tuple[int, str]:
    """(bytes, source) of this process's peak memory so far: CUDA-allocated on a GPU, RSS on a CPU."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device)), "cuda"
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return int(peak if sys.platform == "darwin" else peak * 1024), "cpu-rss"


def _loader_workers(spec: TrialSpec, device: torch.device) -> int:
    """DataLoader workers that pad batches while the GPU computes: the trial's other CPUs. On a
    CPU-only trial the cores are better spent on the model itself."""
    return max(0, int(spec.resources.cpus) - 1) if device.type == "cuda" else 0


def device_and_autocast(spec: TrialSpec) -> tuple[torch.device, torch.dtype | None]:
    """The trial's device, and bf16 autocast on CUDA when the spec asks for it (CPU runs fp32).

    A trial that asks for a GPU and finds CUDA unusable stops (trainables/cuda_check.py). Either
    way torch gets the trial's CPUs as threads, not the node's OMP_NUM_THREADS (64 on Modal)."""
    torch.set_num_threads(max(1, int(spec.resources.cpus)))
    if spec.resources.gpus > 0:
        require_cuda(spec.resources.gpus)
        return torch.device("cuda"), (torch.bfloat16 if spec.training.precision == "bf16-mixed" else None)
    return torch.device("cpu"), None

