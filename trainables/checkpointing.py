"""Checkpoints: everything a trial needs to continue exactly where it stopped.

A checkpoint directory holds the model as a usable Hugging Face folder (model.safetensors,
config.json, tokenizer files: `from_pretrained` loads it as a reranker) plus `training_state.pt`
(optimizer, scheduler, epoch, step, RNG states) and `trial_spec.json` (the resolved config).
A checkpoint taken inside an epoch also holds that epoch's partial state (batches done, loss sums:
trainables/training.py's EpochState), so the epoch continues with the next batch, not over again.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from study.spec import TrialSpec

STATE_FILE = "training_state.pt"
SPEC_FILE = "trial_spec.json"
WEIGHTS_FILE = "model.safetensors"


@dataclass(frozen=True)
class TrainingProgress:
    epoch: int  # last completed epoch (0 = evaluated before training)
    global_step: int  # optimizer steps taken, those of a partial epoch included
    partial_epoch: dict | None = None  # EpochState.to_dict() of epoch + 1 when checkpointed inside it


def save_checkpoint(
    directory: Path,
    *,
    spec: TrialSpec,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    progress: TrainingProgress,
) -> None:
    from safetensors.torch import save_model

    directory.mkdir(parents=True, exist_ok=True)
    save_model(model, str(directory / WEIGHTS_FILE))  # handles tied weights
    if model.is_remote_code():  # its module files, so the folder loads on its own (evaluate_checkpoint)
        from transformers.dynamic_module_utils import custom_object_save

        custom_object_save(model, directory, config=model.config)
    model.config.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    (directory / SPEC_FILE).write_text(spec.model_dump_json(indent=2))
    torch.save(
        {
            "epoch": progress.epoch,
            "global_step": progress.global_step,
            "partial_epoch": progress.partial_epoch,
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": _rng_state(),
        },
        directory / STATE_FILE,
    )


def load_checkpoint(
    directory: Path,
    *,
    model: PreTrainedModel,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> TrainingProgress:
    """Restore model, optimizer, scheduler and RNG states in place; return where training stopped."""
    from safetensors.torch import load_model

    state_path = directory / STATE_FILE
    if not state_path.exists():
        raise ValueError(f"{directory} is not a trial checkpoint: it has no {STATE_FILE}")
    load_model(model, str(directory / WEIGHTS_FILE), device=str(next(model.parameters()).device))
    state = torch.load(state_path, map_location="cpu", weights_only=True)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    _set_rng_state(state["rng"])
    return TrainingProgress(
        epoch=state["epoch"], global_step=state["global_step"], partial_epoch=state.get("partial_epoch")
    )


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state() -> dict:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": [kind, keys.tolist(), pos, has_gauss, gauss],  # plain types: loads with weights_only
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def _set_rng_state(state: dict) -> None:
    random.setstate(_as_tuples(state["python"]))
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuples(value):
    return tuple(_as_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value
