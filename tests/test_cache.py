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


TRIPLES = "".join(  # triples.train.small.tsv's layout: query, positive passage, negative passage
    f"question {i} about wings\tpassage {i} says wings lift\tpassage {i} is about tables\n" for i in range(40)
)


def test_training_pairs_are_sampled_and_tokenized_once_per_data_seed_and_tokenizer(tmp_path, monkeypatch):
    """A hit reads the entry without touching the source; the seed, max_length, max_pairs or an edited
    source file make another entry."""
    import os

    from study.data import registry
    from study.data.training_cache import cached_training_tokens
    from study.spec import TrainDataSpec

    tokenizer, _ = load_cross_encoder(ModelSpec(name="m", checkpoint="standin:bert-tiny"))
    triples = tmp_path / "triples.train.small.tsv"
    triples.write_text(TRIPLES, encoding="utf-8")
    data = TrainDataSpec(source="msmarco-passage-train", file=str(triples), max_pairs=20)
    kwargs = {"seed": 3, "max_length": 32, "with_token_type_ids": True, "directory": tmp_path / "cache"}

    def entries() -> list:
        return sorted((tmp_path / "cache" / "training").glob("*.npz"))

    (tokens, labels), _ = cached_training_tokens(data, tokenizer, **kwargs)
    pairs = registry.load_training_pairs(data, seed=3)
    assert len(tokens) == len(pairs) == 20 and labels.tolist() == [p.label for p in pairs]
    assert len(entries()) == 1 and entries()[0].name.startswith("msmarco-passage-train-")
    assert not list((tmp_path / "cache" / "training").glob("*.tmp*"))

    def must_not_sample(*args, **kwargs):
        raise AssertionError("a cache hit sampled the source again")

    monkeypatch.setattr(registry, "load_training_pairs", must_not_sample)
    (again, again_labels), _ = cached_training_tokens(data, tokenizer, **kwargs)
    np.testing.assert_array_equal(again.input_ids, tokens.input_ids)
    np.testing.assert_array_equal(again.token_type_ids, tokens.token_type_ids)
    np.testing.assert_array_equal(again.offsets, tokens.offsets)
    np.testing.assert_array_equal(again_labels, labels)
    monkeypatch.undo()

    cached_training_tokens(data, tokenizer, **(kwargs | {"seed": 4}))
    cached_training_tokens(data, tokenizer, **(kwargs | {"max_length": 16}))
    cached_training_tokens(data.model_copy(update={"max_pairs": 10}), tokenizer, **kwargs)
    assert len(entries()) == 4
    triples.write_text(TRIPLES.replace("wings lift", "wings lift a lot"), encoding="utf-8")
    os.utime(triples, ns=(1, 1))  # a different modification time, whatever the clock's resolution
    (edited, _), _ = cached_training_tokens(data, tokenizer, **kwargs)
    assert len(entries()) == 5 and not np.array_equal(edited.offsets, tokens.offsets)

    # Held-out pairs: whole queries apart from the training pairs, cached beside them, read back equal.
    (train, _), (held, held_labels) = cached_training_tokens(data, tokenizer, **kwargs, heldout_pairs=4)
    assert len(train) + len(held) == 20 and len(held) >= 4 and len(held_labels) == len(held)
    assert len(entries()) == 7
    monkeypatch.setattr(registry, "load_training_pairs", must_not_sample)
    (_, _), (held_again, _) = cached_training_tokens(data, tokenizer, **kwargs, heldout_pairs=4)
    np.testing.assert_array_equal(held_again.input_ids, held.input_ids)


def test_holding_out_most_training_pairs_is_warned(tmp_path, caplog):
    """The default 1000 held-out pairs swallow a small collection's pairs (Cranfield's example once
    trained on one query): the log says how many are left to train on."""
    from study.data.training_cache import cached_training_tokens
    from study.spec import TrainDataSpec

    tokenizer, _ = load_cross_encoder(ModelSpec(name="m", checkpoint="standin:bert-tiny"))
    triples = tmp_path / "triples.train.small.tsv"
    triples.write_text(TRIPLES, encoding="utf-8")
    data = TrainDataSpec(source="msmarco-passage-train", file=str(triples), max_pairs=20)
    kwargs = {"seed": 3, "max_length": 32, "with_token_type_ids": True, "directory": tmp_path / "cache"}
    with caplog.at_level("WARNING", logger="study.data.training_cache"):
        cached_training_tokens(data, tokenizer, **kwargs, heldout_pairs=4)
        assert "heldout_pairs" not in caplog.text
        (train, _), (held, _) = cached_training_tokens(data, tokenizer, **kwargs, heldout_pairs=1000)
    assert len(held) > len(train) >= 1
    assert f"leaving {len(train)} to train on" in caplog.text
