"""Pointwise binary cross-entropy on the cross-encoder's single logit (the thesis's Eq. 4.9)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def pointwise_bce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean BCE-with-logits; `logits` of shape (batch,) or (batch, 1), labels in {0, 1}."""
    logits = logits.reshape(-1).float()  # in fp32 even under bf16 autocast
    if logits.shape != labels.shape:
        raise ValueError(f"expects one logit per label, but got {tuple(logits.shape)} and {tuple(labels.shape)}")
    return F.binary_cross_entropy_with_logits(logits, labels.float())
