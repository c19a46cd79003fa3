"""One epoch of pointwise cross-encoder training: forward, BCE, backward, clip, step, schedule.

The loop never synchronises with the device except every `log_every` steps, when it writes one
step-log line and checks that the loss is still finite.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from study.data.tokenized import TokenizedPairs
from trainables.loss import pointwise_bce


class NonFiniteLossError(RuntimeError):
    """Training diverged; the trial stops with this reason and the study goes on."""


@dataclass(frozen=True)
class EpochStats:
    mean_loss: float
    steps: int
    pairs: int
    seconds: float

    @property
    def pairs_per_s(self) -> float:
        return self.pairs / self.seconds if self.seconds > 0 else 0.0


def shuffled_batches(n_pairs: int, batch_size: int, *, seed: int, epoch: int) -> list[np.ndarray]:
    """A fresh random order per epoch, derived from (seed, epoch) so a resumed trial sees the same one."""
    order = np.random.default_rng([seed, epoch]).permutation(n_pairs)
    return [order[i : i + batch_size] for i in range(0, n_pairs, batch_size)]


def train_one_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    pairs: TokenizedPairs,
    labels: np.ndarray,
    batches: list[np.ndarray],
    *,
    device: torch.device,
    autocast_dtype: torch.dtype | None,
    grad_clip: float | None,
    log_every: int,
    epoch: int,
    first_step: int,
    on_log: Callable[[dict], None],
) -> EpochStats:
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    labels_t = torch.from_numpy(labels)
    loss_sum = torch.zeros((), device=device)
    window_loss = torch.zeros((), device=device)
    window_steps, window_pairs, window_start = 0, 0, time.perf_counter()
    epoch_start = window_start
    step = first_step
    for i, indices in enumerate(batches, start=1):
        batch = {k: v.to(device, non_blocking=True) for k, v in pairs.batch(indices).items()}
        target = labels_t[indices].to(device, non_blocking=True)
        autocast = (
            torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype else contextlib.nullcontext()
        )
        with autocast:
            logits = model(**batch).logits
        loss = pointwise_bce(logits, target)
        loss.backward()
        # max_norm=inf measures the norm without clipping, so the step log has it either way.
        grad_norm = torch.nn.utils.clip_grad_norm_(params, grad_clip or math.inf)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        loss_sum += loss.detach()
        window_loss += loss.detach()
        window_steps += 1
        window_pairs += len(indices)
        if i % log_every == 0 or i == len(batches):
            mean = window_loss.item() / window_steps
            _check_finite(mean, epoch=epoch, step=step)
            now = time.perf_counter()
            on_log(
                {
                    "epoch": epoch,
                    "step": step,
                    "loss": mean,
                    "lr": scheduler.get_last_lr()[0],
                    "grad_norm": float(grad_norm),
                    "pairs_per_s": window_pairs / max(now - window_start, 1e-9),
                }
            )
            window_loss.zero_()
            window_steps, window_pairs, window_start = 0, 0, now
    seconds = time.perf_counter() - epoch_start
    mean_loss = loss_sum.item() / max(len(batches), 1)
    _check_finite(mean_loss, epoch=epoch, step=step)
    return EpochStats(mean_loss, len(batches), int(sum(len(b) for b in batches)), seconds)


def _check_finite(loss: float, *, epoch: int, step: int) -> None:
    if not math.isfinite(loss):
        raise NonFiniteLossError(
            f"training loss became {loss} by step {step} (epoch {epoch}): the run diverged. "
            "Lower the learning rate, keep gradient clipping on, or use fp32 precision."
        )
