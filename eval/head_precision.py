"""Score in fp32 under bf16 autocast: the classification head and its logit run outside autocast.

bf16 keeps 8 bits of mantissa, so logits computed in bf16 collapse onto a coarse grid: of 1000
candidates of one query only some hundreds keep distinct scores, ties reach the top 10, and
nDCG@10 / MAP / RR@10 then partly measure the order of docids. The encoder keeps its bf16 speed;
its last hidden state is upcast before the head (the pooler, where the family has one, and the
classifier), which is a few small matrix products per batch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel


def head_modules(model: PreTrainedModel) -> list[torch.nn.Module]:
    """What turns the encoder's hidden states into the logit: the model's own children other than
    the encoder (BERT: dropout, classifier; ModernBERT: head, drop, classifier) and the encoder's
    pooler where it has one (BERT's dense + tanh)."""
    encoder = model.base_model
    modules = [child for child in model.children() if child is not encoder]
    pooler = getattr(encoder, "pooler", None)
    if pooler is not None:
        modules.append(pooler)
    return modules


@contextlib.contextmanager
def fp32_head(model: PreTrainedModel, device_type: str) -> Iterator[None]:
    """Within the block, `model`'s head runs in fp32 with autocast off, whatever surrounds it."""
    import torch

    def upcast(value):
        if isinstance(value, torch.Tensor) and value.is_floating_point() and value.dtype != torch.float32:
            return value.float()
        return value

    def fp32(forward):
        def run(*args, **kwargs):
            with torch.autocast(device_type, enabled=False):
                return forward(*map(upcast, args), **{k: upcast(v) for k, v in kwargs.items()})

        return run

    wrapped = [(module, module.__dict__.get("forward")) for module in head_modules(model)]
    for module, _ in wrapped:
        module.forward = fp32(module.forward)  # an instance attribute shadows the class's forward
    try:
        yield
    finally:
        for module, own in wrapped:
            if own is None:
                del module.forward
            else:
                module.forward = own
