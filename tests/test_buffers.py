"""Non-persistent buffers survive loading (trainables/buffers.py): the remote-code path GTE takes,
through the real `trust_remote_code` loader, and the project's own checkpoints of such a model."""

from __future__ import annotations

import torch
from remote_code_model import save_toy_remote_model
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from study.spec import ModelSpec
from trainables.buffers import find_broken_buffers, restore_non_persistent_buffers
from trainables.models import (
    STAND_INS,
    _stand_in_config,
    load_cross_encoder,
    model_from_config,
    stand_in_tokenizer_path,
)


def _logits(model, tokenizer) -> torch.Tensor:
    batch = tokenizer(["what is rope", "rotary tables"], ["position encodings rotate", "sine and cosine"],
                      padding=True, return_tensors="pt")
    model.eval()
    with torch.no_grad():
        return model(**batch).logits


def test_remote_code_model_reloads_with_its_buffers(tmp_path):
    directory = save_toy_remote_model(tmp_path / "toy")
    raw = AutoModelForSequenceClassification.from_pretrained(directory, trust_remote_code=True)
    assert raw.is_remote_code()
    # transformers 5.x alone: the rotary tables come back as uninitialised storage. Which of them
    # hold wrong values depends on what the reused memory held (a table freed a moment ago by
    # save_toy_remote_model can come back intact), so the check is: some broken, none other.
    rotary = {"rotary.inv_freq", "rotary.cos_cached", "rotary.sin_cached"}
    broken = {b.split(":")[0] for b in find_broken_buffers(raw)}
    assert broken and broken <= rotary
    assert broken <= set(restore_non_persistent_buffers(raw)) <= rotary
    assert find_broken_buffers(raw) == []

    tokenizer, model = load_cross_encoder(ModelSpec(name="toy", checkpoint=str(directory), trust_remote_code=True))
    assert find_broken_buffers(model) == []
    dim = model.config.hidden_size // model.config.num_attention_heads
    expected = 1.0 / (model.config.rope_theta ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
    torch.testing.assert_close(model.rotary.inv_freq, expected)
    assert torch.isfinite(_logits(model, tokenizer)).all()


def test_project_checkpoint_of_remote_code_model_reloads_with_identical_logits(tmp_path):
    from study.grids import build_study
    from trainables.checkpointing import TrainingProgress, save_checkpoint
    from trainables.optimizers import build_optimizer
    from trainables.schedules import build_scheduler

    directory = save_toy_remote_model(tmp_path / "toy", seed=3)
    spec = ModelSpec(name="toy", checkpoint=str(directory), trust_remote_code=True)
    tokenizer, model = load_cross_encoder(spec)
    trial = build_study("thesis", scale="smoke").trials[0].model_copy(update={"model": spec})
    optimizer = build_optimizer(model, trial.optimizer)
    save_checkpoint(
        tmp_path / "ckpt", spec=trial, model=model, tokenizer=tokenizer, optimizer=optimizer,
        scheduler=build_scheduler(optimizer, trial.schedule, total_steps=10), progress=TrainingProgress(1, 5),
    )
    before = _logits(model, tokenizer)
    # the folder holds the module files: it loads on its own (as trainables/evaluate_checkpoint.py does)
    assert (tmp_path / "ckpt" / "modeling_toy_rope.py").exists()
    reloaded_tokenizer, reloaded = load_cross_encoder(spec.model_copy(update={"checkpoint": str(tmp_path / "ckpt")}))
    assert torch.equal(_logits(reloaded, reloaded_tokenizer), before)


def test_native_models_keep_their_buffers_and_logits(tmp_path):
    """For transformers' own classes the rebuild changes nothing: same logits after a reload."""
    for family in STAND_INS:
        torch.manual_seed(0)
        model = model_from_config(_stand_in_config(f"standin:{family}"))
        model.save_pretrained(tmp_path / family)
        AutoTokenizer.from_pretrained(stand_in_tokenizer_path()).save_pretrained(tmp_path / family)
        tokenizer, reloaded = load_cross_encoder(ModelSpec(name=family, checkpoint=str(tmp_path / family)))
        torch.testing.assert_close(_logits(reloaded, tokenizer), _logits(model, tokenizer), rtol=0, atol=1e-6)
        assert find_broken_buffers(reloaded) == []
