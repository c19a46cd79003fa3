"""Padding-free forward passes give the padded computation's logits and gradients, per family."""

from __future__ import annotations

import copy
from typing import ClassVar

import pytest
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

import trainables.packed
from study.spec import ModelSpec
from trainables.first_token import compute_first_token_only
from trainables.models import load_cross_encoder
from trainables.packed import PackedBertModel, PackedModernBertModel, packing_of, set_padding_free

_NO_DROPOUT = {
    "bert": dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0),
    "modernbert": dict(embedding_dropout=0.0, attention_dropout=0.0, mlp_dropout=0.0, classifier_dropout=0.0),
}


def _model(family: str, **extra):
    from transformers import AutoModelForSequenceClassification, BertConfig, ModernBertConfig

    common = dict(num_labels=1, hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=64)
    if family == "bert":
        config = BertConfig(**common, **_NO_DROPOUT[family], **extra)
    else:
        config = ModernBertConfig(**common, **_NO_DROPOUT[family], pad_token_id=0, **extra)
    torch.manual_seed(0)
    return AutoModelForSequenceClassification.from_config(config, attn_implementation="sdpa")


def _batch(with_types: bool) -> dict[str, torch.Tensor]:
    """Right-padded rows of lengths 13, 9, 4 and 13, as the tokenizer pads them."""
    ids = torch.randint(1000, 2000, (4, 13), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0
    mask[2, 4:] = 0
    ids[mask == 0] = 0
    batch = {"input_ids": ids, "attention_mask": mask}
    if with_types:
        types = torch.zeros_like(ids)
        types[:, 3:] = 1
        batch["token_type_ids"] = types * mask
    return batch


def _assert_same(padded, packed, batch, mode: str) -> None:
    for model in (padded, packed):
        getattr(model, mode)()
        model.zero_grad(set_to_none=True)
        model(**batch).logits.square().sum().backward()
    torch.testing.assert_close(packed(**batch).logits, padded(**batch).logits, rtol=0, atol=2e-6)
    assert packed.state_dict().keys() == padded.state_dict().keys()
    for (name, a), b in zip(padded.named_parameters(), packed.parameters(), strict=True):
        if a.grad is None:
            assert b.grad is None or not b.grad.any(), name
            continue
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-5, atol=2e-6, msg=name)


CASES = {
    "bert": ("bert", {}, False),
    "bert-first-token": ("bert", {}, True),  # what load_cross_encoder builds for BERT classifiers
    "modernbert": ("modernbert", dict(local_attention=6), False),  # sliding window narrower than the batch
    "modernbert-mean": ("modernbert", dict(local_attention=6, classifier_pooling="mean"), False),
}


@pytest.mark.parametrize("attention", ["per-sequence", "grid"])
@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_padding_free_gives_the_padded_logits_and_gradients(case, mode, attention, monkeypatch):
    """Both attention paths: per sequence (the CPU's) and over the re-padded grid (a GPU's)."""
    monkeypatch.setattr(trainables.packed, "per_sequence_attention", lambda device: attention == "per-sequence")
    family, extra, first_token = CASES[case]
    padded = _model(family, **extra)
    if first_token:
        assert compute_first_token_only(padded)
    packed = copy.deepcopy(padded)
    assert set_padding_free(packed)
    assert isinstance(getattr(packed, "bert", None) or packed.model, (PackedBertModel, PackedModernBertModel))
    _assert_same(padded, packed, _batch(with_types=family == "bert"), mode)


def test_padding_free_is_the_loaded_default_and_can_be_turned_off():
    for checkpoint, attribute in (("standin:bert-tiny", "bert"), ("standin:modernbert-tiny", "model")):
        _, model = load_cross_encoder(ModelSpec(name="m", checkpoint=checkpoint))
        assert type(getattr(model, attribute)).__name__.startswith("Packed"), checkpoint
        _, plain = load_cross_encoder(ModelSpec(name="m", checkpoint=checkpoint), padding_free=False)
        assert not type(getattr(plain, attribute)).__name__.startswith("Packed"), checkpoint
    _, roformer = load_cross_encoder(ModelSpec(name="m", checkpoint="standin:roformer-tiny"))
    assert not set_padding_free(roformer)  # no packed forward for this family: its own runs


def test_only_right_padded_batches_are_packed():
    mask = _batch(with_types=False)["attention_mask"]
    packing = packing_of(mask)
    assert packing is not None and packing.index.numel() == int(mask.sum())
    assert packing.index.tolist() == mask.reshape(-1).nonzero().squeeze(1).tolist()
    assert packing.first.tolist() == [0, 13, 22, 26] and packing.lengths == (13, 9, 4, 13)
    assert packing_of(torch.zeros_like(mask)) is None  # empty rows: the model's own forward
    assert packing_of(torch.ones_like(mask)) is None  # nothing to skip
    assert packing_of(mask.flip(1)) is None  # left padding: positions would differ, the model's own forward runs


def test_a_padding_free_model_saves_as_a_plain_one(tmp_path):
    from transformers import AutoModelForSequenceClassification

    model = _model("bert").eval()
    set_padding_free(model)
    model.save_pretrained(tmp_path)
    plain = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    assert type(plain.bert).__name__ == "BertModel"
    batch = _batch(with_types=True)
    with torch.inference_mode():
        torch.testing.assert_close(plain(**batch).logits, model(**batch).logits, rtol=0, atol=2e-6)


def _sdpa_calls(monkeypatch) -> list[torch.Tensor | None]:
    """The attention masks SDPA is called with, from now on."""
    masks = []
    real = F.scaled_dot_product_attention

    def counting(*args, attn_mask=None, **kwargs):
        masks.append(attn_mask)
        return real(*args, attn_mask=attn_mask, **kwargs)

    monkeypatch.setattr(trainables.packed.F, "scaled_dot_product_attention", counting)
    return masks


@pytest.mark.parametrize("case", sorted(CASES))
def test_on_the_cpu_attention_runs_per_sequence_without_padding(case, monkeypatch):
    family, extra, first_token = CASES[case]
    model = _model(family, **extra).eval()
    if first_token:
        compute_first_token_only(model)
    set_padding_free(model)
    masks = _sdpa_calls(monkeypatch)
    batch = _batch(with_types=family == "bert")
    with torch.no_grad():
        model(**batch)
    layers = model.config.num_hidden_layers
    assert len(masks) == 4 * layers  # one call per sequence and layer, none over the padded grid
    if family == "bert":
        assert all(m is None for m in masks)  # no padding, so nothing to mask
    else:  # sliding window of +-3 positions: only the rows longer than 4 tokens need the band
        banded = [m for m in masks if m is not None]
        assert all(m.shape[-1] in (13, 9) and not m.all() for m in banded) and len(banded) < len(masks)


class _HostSyncs(TorchFunctionMode):
    """Counts the tensor calls that wait for the device on CUDA (a value back on the host)."""

    SYNCING: ClassVar[set] = {
        torch.Tensor.__bool__, torch.Tensor.item, torch.Tensor.tolist, torch.Tensor.cpu, torch.Tensor.numpy,
        torch.Tensor.__int__, torch.Tensor.__float__, torch.Tensor.nonzero, torch.nonzero, torch.Tensor.__index__,
        torch.masked_select, torch.Tensor.masked_select, torch.unique, torch.Tensor.unique,
    }  # fmt: skip

    def __init__(self):
        super().__init__()
        self.calls: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in self.SYNCING:
            self.calls.append(getattr(func, "__name__", str(func)))
        elif func in (torch.Tensor.repeat_interleave, torch.repeat_interleave) and kwargs.get("output_size") is None:
            self.calls.append("repeat_interleave without output_size")
        elif func is torch.Tensor.__getitem__ and any(
            isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in (args[1] if isinstance(args[1], tuple) else (args[1],))
        ):
            self.calls.append("boolean indexing")
        return func(*args, **kwargs)


@pytest.mark.parametrize("attention", ["per-sequence", "grid"])
def test_the_packed_forward_syncs_with_the_host_once(attention, monkeypatch):
    """On CUDA every value read back on the host waits for the queue; the packing reads one list."""
    monkeypatch.setattr(trainables.packed, "per_sequence_attention", lambda device: attention == "per-sequence")
    batch = _batch(with_types=False)
    with _HostSyncs() as syncs:
        assert packing_of(batch["attention_mask"]) is not None
    assert syncs.calls == ["tolist"]
    for family, extra in (("bert", {}), ("modernbert", {"local_attention": 6})):
        model = _model(family, **extra).eval()
        set_padding_free(model)
        with torch.no_grad(), _HostSyncs() as syncs:
            model.bert(**batch) if family == "bert" else model.model(**batch)
        assert syncs.calls == ["tolist"], family
