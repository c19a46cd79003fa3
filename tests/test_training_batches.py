"""Length-bucketed training batches: complete, deterministic, homogeneous in length, random in order."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from study.data.tokenized import TokenizedPairs
from trainables.training import padded_batches, shuffled_batches


def _lengths(n: int = 5000, seed: int = 0) -> np.ndarray:
    """Token counts like MS MARCO query-passage pairs (about 70-135 tokens)."""
    return np.random.default_rng(seed).integers(70, 136, size=n)


def _padding(lengths: np.ndarray, batches: list[np.ndarray]) -> float:
    """Tokens the batches hold (padded to their longest pair) per real token."""
    return sum(lengths[b].max() * len(b) for b in batches) / lengths.sum()


@pytest.mark.parametrize(("n", "batch_size"), [(5000, 16), (1001, 16), (7, 3), (16, 16)])
def test_every_pair_comes_exactly_once_per_epoch(n, batch_size):
    batches = shuffled_batches(_lengths(n), batch_size, seed=12, epoch=1)
    assert np.array_equal(np.sort(np.concatenate(batches)), np.arange(n))
    sizes = [len(b) for b in batches]
    assert len(batches) == -(-n // batch_size)  # as many steps as plain batching: the schedule is unchanged
    assert sizes.count(batch_size) >= len(batches) - 1


def test_batches_depend_only_on_seed_and_epoch():
    lengths = _lengths()
    first = shuffled_batches(lengths, 16, seed=12, epoch=2)
    again = shuffled_batches(lengths, 16, seed=12, epoch=2)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    for other in (shuffled_batches(lengths, 16, seed=12, epoch=3), shuffled_batches(lengths, 16, seed=13, epoch=2)):
        assert not all(np.array_equal(a, b) for a, b in zip(first, other))


def test_batches_are_mostly_length_homogeneous():
    lengths = _lengths()
    bucketed = shuffled_batches(lengths, 16, seed=12, epoch=1)
    random = shuffled_batches(lengths, 16, seed=12, epoch=1, bucket_batches=1)  # no bucketing
    assert _padding(lengths, random) > 1.15
    assert _padding(lengths, bucketed) < 1.02
    spreads = [lengths[b].max() - lengths[b].min() for b in bucketed]
    assert np.median(spreads) <= 1


def test_order_across_buckets_is_random():
    lengths = _lengths()
    longest_batch_positions = set()
    for epoch in range(1, 6):
        batches = shuffled_batches(lengths, 16, seed=12, epoch=epoch)
        means = [lengths[b].mean() for b in batches]
        rho = np.corrcoef(np.arange(len(means)), np.argsort(np.argsort(means)))[0, 1]  # Spearman's rank correlation
        assert abs(rho) < 0.2  # long and short batches alternate: no trend over the epoch
        longest_batch_positions.add(int(np.argmax(means)))
        # each window's pairs are a random sample: a batch holds pairs from all over the data set
        assert np.mean([np.ptp(b) for b in batches]) > len(lengths) / 10
    assert len(longest_batch_positions) == 5


def test_bad_batch_size_is_refused():
    with pytest.raises(ValueError, match="expects batch_size and bucket_batches >= 1, but got 0 and 64"):
        shuffled_batches(_lengths(10), 0, seed=1, epoch=1)


def test_worker_processes_build_the_same_batches_in_order():
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 9, size=40)
    pairs = TokenizedPairs(
        input_ids=rng.integers(5, 100, size=int(lengths.sum())).astype(np.int32),
        token_type_ids=None,
        offsets=np.concatenate([[0], np.cumsum(lengths)]),
        pad_token_id=0,
    )
    labels = rng.integers(0, 2, size=40).astype(np.float32)
    batches = shuffled_batches(lengths, 6, seed=3, epoch=1, bucket_batches=2)
    inline = list(padded_batches(pairs, labels, batches))
    workers = list(padded_batches(pairs, labels, batches, workers=2))
    assert len(inline) == len(workers) == len(batches)
    for (a_inputs, a_labels), (b_inputs, b_labels), indices in zip(inline, workers, batches):
        padded = lengths[indices].min() < lengths[indices].max()  # only padded batches carry a mask
        assert a_inputs.keys() == b_inputs.keys() == {"input_ids"} | ({"attention_mask"} if padded else set())
        for key in a_inputs:
            assert torch.equal(a_inputs[key], b_inputs[key])
        assert torch.equal(a_labels, b_labels) and torch.equal(a_labels, torch.from_numpy(labels[indices]))
        assert a_inputs["input_ids"].shape == (len(indices), lengths[indices].max())


def test_default_batches_are_random_as_in_the_thesis():
    from study.spec import TrainingSpec
    from trainables.training import epoch_batches

    assert TrainingSpec().batching == "random"
    lengths = _lengths()
    random = epoch_batches(lengths, 16, batching="random", seed=12, epoch=1)
    bucketed = epoch_batches(lengths, 16, batching="bucketed", seed=12, epoch=1)
    assert np.array_equal(np.sort(np.concatenate(random)), np.arange(len(lengths)))
    assert _padding(lengths, random) > 1.15 > 1.02 > _padding(lengths, bucketed)
    with pytest.raises(ValueError, match="unknown batching 'sorted'"):
        epoch_batches(lengths, 16, batching="sorted", seed=12, epoch=1)


def test_length_buckets_skew_the_label_balance_where_labels_differ_in_length():
    from benchmarks.batch_balance import label_balance

    rng = np.random.default_rng(1)
    labels = (rng.random(4000) < 0.5).astype(np.float32)
    lengths = np.where(labels > 0, rng.integers(90, 140, 4000), rng.integers(60, 110, 4000))  # positives longer
    random = label_balance(lengths, labels, 16, batching="random", seed=12, epochs=1)
    bucketed = label_balance(lengths, labels, 16, batching="bucketed", seed=12, epochs=1)
    assert abs(random.batch_share_sd - np.sqrt(0.25 / 16)) < 0.02  # binomial, as random batches should be
    assert bucketed.batch_share_sd > 2 * random.batch_share_sd
    assert bucketed.single_label > 0.2 > random.single_label


def test_the_label_balance_benchmark_reports_both_batchings(capsys):
    from benchmarks.batch_balance import main

    assert main(["--scale", "smoke", "--epochs", "1"]) == 0
    out = capsys.readouterr().out
    assert "minilm-adamw" in out and "\n  random " in out and "\n  bucketed " in out
