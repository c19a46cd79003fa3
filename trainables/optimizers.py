"""Optimizer factory: AdamW or Lion over the same parameter groups, so the comparison is fair.

Weight decay applies to weight matrices and embeddings, never to biases or normalisation weights
(the convention of BERT and of Hugging Face's Trainer), for both optimizers alike.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from study.spec import AdamWSpec, LionSpec

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


def build_optimizer(model: nn.Module, spec: AdamWSpec | LionSpec) -> torch.optim.Optimizer:
    groups = parameter_groups(model, spec.weight_decay)
    if spec.name == "adamw":
        # fused: one kernel pass over all tensors; on a CPU the per-tensor loop is ~3x slower, a
        # large share of a small model's step. Same update rule (and what HF's Trainer defaults to).
        return torch.optim.AdamW(groups, lr=spec.lr, betas=spec.betas, eps=spec.eps, fused=_fusable(model))
    if spec.name == "lion":
        from lion_pytorch import Lion

        # lion-pytorch calls exit() when use_triton=True and Triton is missing: ask only when it imports.
        return Lion(groups, lr=spec.lr, betas=spec.betas, use_triton=_triton_usable(model))
    raise ValueError(f"unknown optimizer {spec.name!r}; expected 'adamw' or 'lion'")


def step_implementation(model: nn.Module, optimizer: str) -> str:
    """Which implementation build_optimizer gives this model's parameters (benchmarks/optimizer_step.py
    times each against the others): AdamW fused or for-loop; Lion Triton (per tensor) or plain."""
    if optimizer == "adamw":
        return "fused" if _fusable(model) else "forloop"
    return "triton" if _triton_usable(model) else "plain"


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes held in optimizer state tensors (Lion: one moment per parameter; AdamW: two)."""
    return sum(
        value.numel() * value.element_size()
        for state in optimizer.state.values()
        for value in state.values()
        if torch.is_tensor(value) and value.dim() > 0
    )


def _fusable(model: nn.Module) -> bool:
    return all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in model.parameters())


def _triton_usable(model: nn.Module) -> bool:
    if not any(p.is_cuda for p in model.parameters()):
        return False
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True
