"""Learning-rate schedules: linear warmup, then constant, linear decay or cosine decay to zero."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from study.spec import ScheduleSpec


def lr_multiplier(step: int, *, name: str, warmup_steps: int, total_steps: int) -> float:
    """Factor applied to the base learning rate before optimizer step `step` (0-based)."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps  # reaches 1.0 on the last warmup step
    if name == "constant":
        return 1.0
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    if name == "linear":
        return 1.0 - progress
    if name == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"unknown schedule {name!r}; expected constant, linear or cosine")


def build_scheduler(
    optimizer: torch.optim.Optimizer, spec: ScheduleSpec, *, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step scheduler; its state_dict goes into checkpoints so a resumed trial continues it."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: lr_multiplier(
            step, name=spec.name, warmup_steps=spec.warmup_steps, total_steps=total_steps
        ),
    )
