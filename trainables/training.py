"""One epoch of pointwise cross-encoder training: forward, BCE, backward, clip, step, schedule.

The loop never synchronises with the device except every `log_every` steps, when it writes one
step-log line and checks that the loss is still finite; transformers' attention-mask check syncs
on batches with padding, so unpadded batches run without a mask. Batches are random (the thesis's
protocol: shuffled pairs, each batch padded to its longest pair) or, as an option, length-bucketed (little
padding) yet in a random order; on a GPU, DataLoader workers pad them into pinned memory while the
device computes.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
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


@dataclass
class EpochState:
    """How far an epoch got: the batches done and the running sums of its loss and its step-log
    window. A mid-epoch checkpoint saves it, so a resumed epoch skips those batches and ends with
    the same mean loss and step log as an uninterrupted one."""

    batches_done: int
    loss_sum: torch.Tensor  # on the training device: summed without a host sync
    window_loss: torch.Tensor
    window_steps: int = 0
    window_pairs: int = 0
    pairs: int = 0
    seconds: float = 0.0  # training time before this process took the epoch over

    @classmethod
    def fresh(cls, device: torch.device) -> EpochState:
        return cls(0, torch.zeros((), device=device), torch.zeros((), device=device))

    def to_dict(self) -> dict:
        """Plain values and CPU tensors: what torch.load(weights_only=True) reads back."""
        return {
            "batches_done": self.batches_done,
            "loss_sum": self.loss_sum.detach().cpu(),
            "window_loss": self.window_loss.detach().cpu(),
            "window_steps": self.window_steps,
            "window_pairs": self.window_pairs,
            "pairs": self.pairs,
            "seconds": self.seconds,
        }

    @classmethod
    def from_dict(cls, state: dict, device: torch.device) -> EpochState:
        return cls(
            **state | {"loss_sum": state["loss_sum"].to(device), "window_loss": state["window_loss"].to(device)}
        )


# Batches per bucketing window: the pairs of 64 batches are sorted by length before they are cut
# into batches. On MS MARCO-like lengths this leaves ~0.5% padding (random batches: ~17%) and
# about half the batches with none at all, which then run without an attention mask.
BUCKET_BATCHES = 64


def shuffled_batches(
    lengths: np.ndarray, batch_size: int, *, seed: int, epoch: int, bucket_batches: int = BUCKET_BATCHES
) -> list[np.ndarray]:
    """Length-bucketed batches in a fresh random order per epoch, derived from (seed, epoch) only.

    Shuffle all pairs; cut the order into windows of `bucket_batches` batches; sort each window by
    length and cut it into batches; shuffle the batches of all windows together. Every pair comes
    once per epoch, each batch holds pairs of similar length drawn at random from its window, and
    long and short batches alternate at random. A resumed trial rebuilds the same batches.
    """
    if batch_size < 1 or bucket_batches < 1:
        raise ValueError(f"expects batch_size and bucket_batches >= 1, but got {batch_size} and {bucket_batches}")
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    window = batch_size * bucket_batches
    batches: list[np.ndarray] = []
    for start in range(0, len(order), window):
        chunk = order[start : start + window]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def epoch_batches(lengths: np.ndarray, batch_size: int, *, batching: str, seed: int, epoch: int) -> list[np.ndarray]:
    """The batches of one epoch. `random`: a fresh permutation cut into batches (the thesis's
    protocol). `bucketed`: length-bucketed batches (shuffled_batches), which change which pairs
    meet in a batch and so, where positives and negatives differ in length, the label balance."""
    if batching == "random":
        return shuffled_batches(lengths, batch_size, seed=seed, epoch=epoch, bucket_batches=1)
    if batching == "bucketed":
        return shuffled_batches(lengths, batch_size, seed=seed, epoch=epoch)
    raise ValueError(f"unknown batching {batching!r}; expected random or bucketed")


class _PaddedBatches(torch.utils.data.Dataset):
    """Batch i of an epoch, padded, with its labels: what a DataLoader worker builds."""

    def __init__(self, pairs: TokenizedPairs, labels: np.ndarray, batches: list[np.ndarray]):
        self.pairs, self.labels, self.batches = pairs, labels, batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        indices = self.batches[i]
        inputs = self.pairs.batch(indices)
        if inputs["attention_mask"].all():  # no padding: without a mask the model skips the mask check that syncs
            del inputs["attention_mask"]
        return inputs, torch.from_numpy(self.labels[indices])


def padded_batches(
    pairs: TokenizedPairs, labels: np.ndarray, batches: list[np.ndarray], *, workers: int = 0, pin_memory: bool = False
) -> Iterator[tuple[dict[str, torch.Tensor], torch.Tensor]]:
    """(inputs, labels) per batch, in order. With workers > 0, built in worker processes ahead of use."""
    dataset = _PaddedBatches(pairs, labels, batches)
    if workers == 0:
        yield from (dataset[i] for i in range(len(dataset)))
        return
    # A generator of its own: the loader draws its worker seed from it instead of from the global RNG,
    # which dropout uses, so a resumed epoch (a new loader) sees the same dropout masks.
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=None,
        shuffle=False,
        num_workers=workers,
        pin_memory=pin_memory,
        prefetch_factor=4,
        generator=torch.Generator(),
    )
    yield from loader


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
    loader_workers: int = 0,
    state: EpochState | None = None,
    after_step: Callable[[int, EpochState], None] | None = None,
) -> EpochStats:
    """Train on `batches` (index arrays into `pairs`) in order; `loader_workers` > 0 pads them in
    DataLoader worker processes (into pinned memory on CUDA), so the device never waits for the host.

    `state` continues an epoch checkpointed part-way (its done batches are skipped; `first_step` is
    still the step the epoch began at); `after_step(global_step, state)` runs after every step, with
    the model in train mode, and may checkpoint or evaluate (it must leave the model in train mode).
    """
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    state = state or EpochState.fresh(device)
    todo = batches[state.batches_done :]
    stream = padded_batches(pairs, labels, todo, workers=loader_workers, pin_memory=device.type == "cuda")
    window_start = epoch_start = time.perf_counter()
    seconds_before = state.seconds
    step = first_step + state.batches_done
    for i, (inputs, targets) in enumerate(stream, start=state.batches_done + 1):
        batch = {k: v.to(device, non_blocking=True) for k, v in inputs.items()}
        target = targets.to(device, non_blocking=True)
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
        state.batches_done = i
        state.loss_sum += loss.detach()
        state.window_loss += loss.detach()
        state.window_steps += 1
        state.window_pairs += len(targets)
        state.pairs += len(targets)
        if i % log_every == 0 or i == len(batches):
            mean = state.window_loss.item() / state.window_steps
            _check_finite(mean, epoch=epoch, step=step)
            now = time.perf_counter()
            on_log(
                {
                    "epoch": epoch,
                    "step": step,
                    "loss": mean,
                    "lr": scheduler.get_last_lr()[0],
                    "grad_norm": float(grad_norm),
                    "pairs_per_s": state.window_pairs / max(now - window_start, 1e-9),
                }
            )
            state.window_loss.zero_()
            state.window_steps, state.window_pairs, window_start = 0, 0, now
        if after_step is not None:
            paused = time.perf_counter()
            state.seconds = seconds_before + paused - epoch_start
            after_step(step, state)
            # checkpoints and evaluations are not training time
            epoch_start += time.perf_counter() - paused
            window_start += time.perf_counter() - paused
    seconds = seconds_before + time.perf_counter() - epoch_start
    mean_loss = state.loss_sum.item() / max(len(batches), 1)
    _check_finite(mean_loss, epoch=epoch, step=step)
    return EpochStats(mean_loss, len(batches), state.pairs, seconds)


def _check_finite(loss: float, *, epoch: int, step: int) -> None:
    if not math.isfinite(loss):
        raise NonFiniteLossError(
            f"training loss became {loss} by step {step} (epoch {epoch}): the run diverged. "
            "Lower the learning rate, keep gradient clipping on, or use fp32 precision."
        )
