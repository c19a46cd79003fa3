"""The GPU path's guarantees, checked on the CPU: fp32 scores under bf16 autocast, a loud error
when a GPU trial finds no usable CUDA, the trial's thread count, and divergence not retried."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from eval.head_precision import fp32_head, head_modules
from eval.rerank import score_pairs
from study.data.tokenized import TokenizedPairs
from trainables.models import model_from_config


def _tiny_bert():
    from transformers import BertConfig

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=1000, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, num_labels=1
    )
    return model_from_config(config).eval()


def _random_pairs(count: int, length: int = 24) -> TokenizedPairs:
    rng = np.random.default_rng(0)
    ids = rng.integers(5, 1000, size=count * length).astype(np.int32)
    return TokenizedPairs(ids, None, np.arange(count + 1, dtype=np.int64) * length, pad_token_id=0)


def test_scores_under_bf16_autocast_are_fp32_and_do_not_tie():
    model, pairs = _tiny_bert(), _random_pairs(1000)
    cpu = torch.device("cpu")
    fp32 = score_pairs(model, pairs, batch_size=250, device=cpu)
    mixed = score_pairs(model, pairs, batch_size=250, device=cpu, autocast_dtype=torch.bfloat16)

    # what reranking did before: the whole classifier, head included, under bf16 autocast
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        batch = pairs.batch(np.arange(len(pairs)))
        bf16_head = model(**batch).logits.reshape(-1).float().numpy()

    distinct = {name: len(np.unique(s)) for name, s in (("fp32", fp32), ("mixed", mixed), ("bf16", bf16_head))}
    print(distinct)
    assert distinct["fp32"] == 1000
    assert distinct["mixed"] >= 990  # the fp32 head: (almost) every score distinct
    assert distinct["bf16"] < 700  # the bf16 head: scores collapse onto bf16's grid
    assert mixed.dtype == np.float32


def test_the_head_is_restored_after_scoring():
    model = _tiny_bert()
    modules = head_modules(model)
    assert model.classifier in modules and model.bert.pooler in modules and model.bert not in modules
    with fp32_head(model, "cpu"):
        assert all("forward" in m.__dict__ for m in modules)
    assert all("forward" not in m.__dict__ for m in modules)
