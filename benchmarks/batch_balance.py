"""Label balance per training batch: random batches (the thesis's protocol) vs length-bucketed ones.

Length buckets put pairs of similar token count into one batch. Wherever positives and negatives
differ in length, a bucket then holds more of one label than the data set does, and the optimizer
sees batches whose gradients lean one way: a confound for a study of optimizers. This measures it
on a study's own training pairs and tokenizer, for both settings of `training.batching`:

    python -m benchmarks.batch_balance                              # the demo grid's MiniLM trial
    python -m benchmarks.batch_balance --config examples/local-collection.yaml

Per setting: the positives' share over all pairs, the standard deviation of the positives' share
per batch (random batches: binomial, about sqrt(p(1-p)/batch)), the mean absolute deviation of a
batch's share from the data set's, and the share of batches holding a single label.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

BATCHINGS: tuple[str, ...] = ("random", "bucketed")


@dataclass(frozen=True)
class Balance:
    batching: str
    positives: float  # share of positive pairs in the data
    batch_share_sd: float  # standard deviation of the positives' share per batch
    mean_abs_deviation: float  # mean |batch share - data share|
    single_label: float  # share of batches holding one label only
    batches: int


def label_balance(
    lengths: np.ndarray, labels: np.ndarray, batch_size: int, *, batching: str, seed: int, epochs: int = 3
) -> Balance:
    """The per-batch label balance of `epochs` epochs of batches, built as a trial builds them."""
    from trainables.training import epoch_batches

    shares = []
    for epoch in range(1, epochs + 1):
        for batch in epoch_batches(lengths, batch_size, batching=batching, seed=seed, epoch=epoch):
            shares.append(float((labels[batch] > 0).mean()))
    shares_array = np.asarray(shares)
    data_share = float((labels > 0).mean())
    return Balance(
        batching=batching,
        positives=data_share,
        batch_share_sd=float(shares_array.std()),
        mean_abs_deviation=float(np.abs(shares_array - data_share).mean()),
        single_label=float(np.mean((shares_array == 0) | (shares_array == 1))),
        batches=len(shares),
    )


def _trial_data(config: str | None, scale: str) -> tuple[np.ndarray, np.ndarray, int, int, str]:
    """(token lengths, labels, batch size, seed, description) of a study's first trial."""
    from study.data import registry
    from study.data.tokenized import tokenize_pairs
    from study.grids import build_study, load_study_file, restrict
    from trainables.models import load_cross_encoder, model_input_names

    spec = load_study_file(config) if config else restrict(build_study("thesis", scale=scale), models=["minilm"])
    trial = spec.trials[0]
    tokenizer, model = load_cross_encoder(trial.model)
    pairs = registry.load_training_pairs(trial.training.data, seed=trial.training.seed)
    tokens = tokenize_pairs(
        tokenizer,
        [p.query for p in pairs],
        [p.passage for p in pairs],
        max_length=trial.model.max_length,
        with_token_type_ids="token_type_ids" in model_input_names(model),
    )
    labels = np.array([p.label for p in pairs], dtype=np.float32)
    return tokens.lengths, labels, trial.training.batch_size, trial.training.seed, f"{spec.name}: {trial.name}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.batch_balance", description=__doc__.split("\n")[0])
    parser.add_argument("--config", help="a study spec in YAML: its first trial's data and tokenizer (default: demo)")
    parser.add_argument("--scale", default="demo", help="without --config: the thesis grid's MiniLM trial at this scale")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args(argv)
    lengths, labels, batch_size, seed, what = _trial_data(args.config, args.scale)
    pos, neg = lengths[labels > 0], lengths[labels <= 0]
    print(f"{what}: {len(labels)} pairs, batch {batch_size}, {args.epochs} epochs")
    print(f"  tokens per pair: positives mean {pos.mean():.1f}, negatives mean {neg.mean():.1f}")
    print("  batching  positives  sd(batch share)  mean|batch - data|  single-label batches")
    for batching in BATCHINGS:
        b = label_balance(lengths, labels, batch_size, batching=batching, seed=seed, epochs=args.epochs)
        print(
            f"  {b.batching:<9} {b.positives:>9.3f}  {b.batch_share_sd:>15.3f}  {b.mean_abs_deviation:>18.3f}"
            f"  {b.single_label:>20.3f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
