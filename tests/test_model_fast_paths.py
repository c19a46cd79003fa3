"""Faster model paths that must give the same numbers: first-token-only last layer, SDPA attention."""

from __future__ import annotations

import copy
import importlib.util

import pytest
import torch

from study.spec import ModelSpec
from trainables.first_token import FirstTokenBertLayer, compute_first_token_only
from trainables.models import attention_preference, load_cross_encoder


def _tiny_bert(attention: str):
    from transformers import AutoModelForSequenceClassification, BertConfig

    config = BertConfig(
        num_labels=1,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        hidden_dropout_prob=0.0,  # dropout draws other random numbers on fewer positions: off to compare
        attention_probs_dropout_prob=0.0,
    )
    torch.manual_seed(0)
    return AutoModelForSequenceClassification.from_config(config, attn_implementation=attention)


def _padded_batch() -> dict[str, torch.Tensor]:
    ids = torch.randint(1000, 2000, (4, 11), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    mask[3, 4:] = 0
    types = torch.zeros_like(ids)
    types[:, 5:] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_first_token_last_layer_gives_the_same_logits_and_gradients(attention, mode):
    full = _tiny_bert(attention)
    fast = copy.deepcopy(full)
    assert compute_first_token_only(fast)
    assert type(fast.bert.encoder.layer[-1]) is FirstTokenBertLayer
    assert type(fast.bert.encoder.layer[0]) is not FirstTokenBertLayer
    batch = _padded_batch()
    for model in (full, fast):
        getattr(model, mode)()
        model(**batch).logits.square().sum().backward()
    torch.testing.assert_close(fast(**batch).logits, full(**batch).logits, rtol=0, atol=1e-6)
    assert fast.state_dict().keys() == full.state_dict().keys()
    for (name, a), b in zip(full.named_parameters(), fast.parameters(), strict=True):
        torch.testing.assert_close(b.grad, a.grad, rtol=0, atol=1e-6, msg=name)


def test_padding_never_reaches_the_first_token():
    model = _tiny_bert("sdpa").eval()
    compute_first_token_only(model)
    batch = _padded_batch()
    short = {k: v[3:, :4] for k, v in batch.items()}  # row 3 without its padding
    with torch.inference_mode():
        torch.testing.assert_close(model(**short).logits, model(**batch).logits[3:], rtol=0, atol=1e-6)


def test_only_bert_classifiers_change():
    for checkpoint in ("standin:modernbert-tiny", "standin:roformer-tiny"):
        _, model = load_cross_encoder(ModelSpec(name="m", checkpoint=checkpoint))
        assert not compute_first_token_only(model)
        assert not any(isinstance(m, FirstTokenBertLayer) for m in model.modules())
    _, bert = load_cross_encoder(ModelSpec(name="m", checkpoint="standin:bert-tiny"))
    assert isinstance(bert.bert.encoder.layer[-1], FirstTokenBertLayer)  # load_cross_encoder applies it


def test_a_saved_first_token_model_loads_as_a_plain_bert(tmp_path):
    from transformers import AutoModelForSequenceClassification

    model = _tiny_bert("sdpa").eval()
    compute_first_token_only(model)
    model.save_pretrained(tmp_path)
    plain = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    assert not any(isinstance(m, FirstTokenBertLayer) for m in plain.modules())
    with torch.inference_mode():
        torch.testing.assert_close(plain(**_padded_batch()).logits, model(**_padded_batch()).logits, rtol=0, atol=1e-6)


def test_attention_prefers_sdpa_and_falls_back_per_family():
    assert attention_preference("cpu", half_precision=False) == ("sdpa", "eager")
    assert attention_preference("cpu", half_precision=True) == ("sdpa", "eager")  # flash attention is CUDA-only
    expected = {"standin:bert-tiny": "sdpa", "standin:modernbert-tiny": "sdpa", "standin:roformer-tiny": "eager"}
    for checkpoint, attention in expected.items():
        _, model = load_cross_encoder(ModelSpec(name="m", checkpoint=checkpoint))
        assert model.config._attn_implementation == attention, checkpoint


@pytest.mark.skipif(importlib.util.find_spec("flash_attn") is not None, reason="flash-attn is installed here")
def test_flash_attention_without_the_package_falls_back_to_sdpa():
    _, model = load_cross_encoder(
        ModelSpec(name="m", checkpoint="standin:modernbert-tiny"), attention=("flash_attention_2", "sdpa", "eager")
    )
    assert model.config._attn_implementation == "sdpa"
