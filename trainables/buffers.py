"""Non-persistent buffers after `from_pretrained`: rebuild them, and check them.

transformers 5.x builds a model on the meta device, loads the checkpoint's tensors, and gives
non-persistent buffers (not in the checkpoint) fresh storage that only its own model classes
refill (through `_init_weights`). A remote-code model's buffers come back empty or holding garbage:
GTE's rotary `inv_freq` / `cos_cached` / `sin_cached` among them, so its attention would train on
broken position encodings without any error. The remedy works for any class: construct the same
class from the same config with its parameters on the meta device (free) and its buffers on the
CPU, as its `__init__` computes them, and copy those buffers in.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from transformers import PreTrainedModel


def non_persistent_buffer_names(model: nn.Module) -> list[str]:
    """Dotted names of buffers that `state_dict` leaves out (so no checkpoint restores them)."""
    names = []
    for prefix, module in model.named_modules():
        for name in module._non_persistent_buffers_set:
            if module._buffers.get(name) is not None:
                names.append(f"{prefix}.{name}" if prefix else name)
    return sorted(names)


def reference_buffers(model: PreTrainedModel) -> dict[str, torch.Tensor]:
    """The non-persistent buffers a fresh construction of `model`'s class computes from its config
    (on the CPU, parameters left on the meta device so nothing large is allocated)."""
    if not non_persistent_buffer_names(model):
        return {}
    with _parameters_on_meta():
        fresh = type(model)(model.config)
    wanted = set(non_persistent_buffer_names(model))
    return {name: buffer for name, buffer in fresh.named_buffers() if name in wanted}


def restore_non_persistent_buffers(model: PreTrainedModel) -> list[str]:
    """Copy every non-persistent buffer from a fresh construction into `model` (keeping each buffer's
    device and dtype); returns the names whose values changed."""
    changed = []
    for name, reference in reference_buffers(model).items():
        module, _, attr = _owner(model, name)
        current = module._buffers[attr]
        value = reference.to(device=current.device, dtype=current.dtype if current.is_floating_point() else None)
        if current.shape != value.shape or not torch.equal(current, value):
            changed.append(name)
        module._buffers[attr] = value
    return changed


def find_broken_buffers(model: PreTrainedModel, *, rtol: float = 1e-4, atol: float = 1e-5) -> list[str]:
    """Non-persistent buffers that are not finite or differ from what the model's class computes
    (empty list: all good). One line per problem, naming the buffer."""
    problems = []
    for name, reference in reference_buffers(model).items():
        module, _, attr = _owner(model, name)
        current = module._buffers[attr]
        if current.shape != reference.shape:
            problems.append(f"{name}: shape {tuple(current.shape)}, expected {tuple(reference.shape)}")
            continue
        if current.is_floating_point() and not torch.isfinite(current).all():
            problems.append(f"{name}: holds non-finite values")
            continue
        got = current.detach().cpu().to(reference.dtype)
        close = torch.allclose(got, reference, rtol=rtol, atol=atol) if reference.is_floating_point() else torch.equal(got, reference)
        if not close:
            error = (got.double() - reference.double()).abs().max().item()
            problems.append(f"{name}: differs from a fresh construction (max abs difference {error:.3g})")
    return problems


def _owner(model: nn.Module, name: str) -> tuple[nn.Module, str, str]:
    path, _, attr = name.rpartition(".")
    return (model.get_submodule(path) if path else model), path, attr


@contextlib.contextmanager
def _parameters_on_meta() -> Iterator[None]:
    """Parameters registered inside go to the meta device; buffers stay real (as accelerate's
    `init_empty_weights(include_buffers=False)`)."""
    original = nn.Module.register_parameter

    def register_parameter(module: nn.Module, name: str, param: nn.Parameter | None) -> None:
        original(module, name, param)
        if param is not None:
            kwargs = module._parameters[name].__dict__
            module._parameters[name] = type(param)(param.to("meta"), requires_grad=param.requires_grad)
            module._parameters[name].__dict__.update(kwargs)

    nn.Module.register_parameter = register_parameter
    try:
        yield
    finally:
        nn.Module.register_parameter = original
