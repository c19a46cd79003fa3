"""Optimizer factory: any registered optimizer (search_spaces/optimizers.py) over the same parameter
groups, so the comparison is fair.

Weight decay applies to weight matrices and embeddings, never to biases or normalisation weights
(the convention of BERT and of Hugging Face's Trainer), for every optimizer alike.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from search_spaces.optimizers import REGISTRY, fusable, triton_usable

if TYPE_CHECKING:
    from study.spec import OptimizerSpec

_NORM_TYPES: tuple[type[nn.Module], ...] = (nn.LayerNorm, nn.GroupNorm, nn.BatchNorm1d, nn.RMSNorm)


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups: decayed (weights) and not decayed (biases, norm weights). Frozen params are left out."""
    no_decay: set[str] = set()
    for module_name, module in model.named_modules():
        is_norm = isinstance(module, _NORM_TYPES) or "norm" in type(module).__name__.lower()
        for param_name, _ in module.named_parameters(recurse=False):
            full_name = f"{module_name}.{param_name}" if module_name else param_name
            if is_norm or param_name == "bias":
                no_decay.add(full_name)
    decay, keep = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (keep if name in no_decay else decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": keep, "weight_decay": 0.0},
    ]


def build_optimizer(model: nn.Module, spec: OptimizerSpec) -> torch.optim.Optimizer:
    """The registered optimizer `spec.name` over the shared parameter groups, in training mode."""
    entry = REGISTRY[spec.name]
    optimizer = entry.build(parameter_groups(model, spec.weight_decay), spec, model)
    train_mode(optimizer, spec.name)
    return optimizer


def train_mode(optimizer: torch.optim.Optimizer, name: str) -> None:
    """Before training steps: schedule-free optimizers move the weights to their training point."""
    if REGISTRY[name].modes:
        optimizer.train()


def eval_mode(optimizer: torch.optim.Optimizer, name: str) -> None:
    """Before evaluation and checkpoints: schedule-free optimizers move the weights to their average,
    the point that is evaluated and saved (a checkpoint then holds the weights that were evaluated)."""
    if REGISTRY[name].modes:
        optimizer.eval()


def step_implementation(model: nn.Module, optimizer: str) -> str:
    """Which implementation build_optimizer gives this model's parameters (benchmarks/optimizer_step.py
    times each against the others): AdamW fused or for-loop; Lion Triton (per tensor) or plain."""
    if optimizer == "adamw":
        return "fused" if fusable(model) else "forloop"
    return "triton" if triton_usable(model) else "plain"


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes held in optimizer state tensors (Lion: one moment per parameter; AdamW: two)."""
    return sum(
        value.numel() * value.element_size()
        for state in optimizer.state.values()
        for value in state.values()
        if torch.is_tensor(value) and value.dim() > 0
    )
