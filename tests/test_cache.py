from __future__ import annotations

import numpy as np

from study.data.cache import cached_candidates
from study.data.registry import load_eval_set
from study.spec import EvalSetSpec, ModelSpec
from trainables.models import load_cross_encoder


def test_tokenized_candidates_are_built_once_and_reused(tmp_path):
    tokenizer, _ = load_cross_encoder(ModelSpec(name="m", checkpoint="standin:bert-tiny"))
    eval_set = load_eval_set(EvalSetSpec(name="builtin-smoke-dl"))
    kwargs = dict(max_length=64, with_token_type_ids=True, depth=10, directory=tmp_path)

    first = cached_candidates(eval_set, tokenizer, **kwargs)
    entries = list((tmp_path / "tokenized").iterdir())
    assert len(entries) == 1 and entries[0].name.startswith("builtin-smoke-dl-")
    mtime = entries[0].stat().st_mtime_ns

    again = cached_candidates(eval_set, tokenizer, **kwargs)
    assert list((tmp_path / "tokenized").iterdir()) == entries  # the same key after tokenizing
    assert entries[0].stat().st_mtime_ns == mtime  # read, not rebuilt
    assert again.qids == first.qids and again.docids == first.docids
    np.testing.assert_array_equal(again.tokens.input_ids, first.tokens.input_ids)
    np.testing.assert_array_equal(again.tokens.token_type_ids, first.tokens.token_type_ids)
    np.testing.assert_array_equal(again.labels, first.labels)
    assert max(first.tokens.lengths) <= 64 and len(first) == 10 * len(eval_set.candidates)

    cached_candidates(eval_set, tokenizer, **(kwargs | {"max_length": 32}))
    assert len(list((tmp_path / "tokenized").iterdir())) == 2  # another key, another entry
