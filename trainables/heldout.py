"""The thesis's evaluation loss: BCE on held-out training-distribution pairs, over training steps.

The thesis's Figures 5.1, 5.5 and 5.8 plot an "evaluation loss" over steps; sentence-transformers
(the library it trained with) computes that loss on a held-out split of the training pairs, every N
steps. So a trial holds out whole queries of its training pairs (`training.heldout_pairs` pairs at
least, disjoint by query from what it trains on, chosen by a hash of the query text so every seed
and optimizer holds out the same queries of the same pool) and scores them every
`training.heldout_every` steps, at epoch 0 and at every epoch's end. The loss over the evaluation
sets' reranking candidates is another quantity (`<set>/candidate_loss`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from study.data.types import TrainingPair

if TYPE_CHECKING:
    import torch

    from study.data.tokenized import TokenizedPairs

HELDOUT_LOSS = "heldout_loss"  # the key in result rows and step-log lines


def split_heldout(pairs: Sequence[TrainingPair], n_pairs: int) -> tuple[list[TrainingPair], list[TrainingPair]]:
    """(training pairs, held-out pairs): whole queries, taken in the order of a hash of their text
    until at least `n_pairs` pairs are held out. At least one query always stays for training."""
    if n_pairs <= 0:
        return list(pairs), []
    by_query: dict[str, int] = {}
    for pair in pairs:
        by_query[pair.query] = by_query.get(pair.query, 0) + 1
    held: set[str] = set()
    count = 0
    for query in sorted(by_query, key=_query_hash)[:-1]:  # never every query
        if count >= n_pairs:
            break
        held.add(query)
        count += by_query[query]
    return [p for p in pairs if p.query not in held], [p for p in pairs if p.query in held]


def _query_hash(query: str) -> str:
    return hashlib.sha1(query.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class HeldOut:
    """Held-out pairs, tokenized once, with their labels."""

    tokens: TokenizedPairs
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def loss(
        self, model, *, batch_size: int, device: torch.device, autocast_dtype: torch.dtype | None = None
    ) -> float:
        """Mean BCE-with-logits over the held-out pairs (the model in eval mode, no gradients)."""
        from eval.evaluator import binary_cross_entropy
        from eval.rerank import score_pairs

        scores = score_pairs(model, self.tokens, batch_size=batch_size, device=device, autocast_dtype=autocast_dtype)
        return binary_cross_entropy(scores, self.labels)


def tokenize_heldout(tokenizer, pairs: Sequence[TrainingPair], *, max_length: int, with_types: bool) -> HeldOut | None:
    """The held-out pairs ready to score (None when there are none)."""
    if not pairs:
        return None
    from study.data.tokenized import tokenize_pairs

    tokens = tokenize_pairs(
        tokenizer,
        [p.query for p in pairs],
        [p.passage for p in pairs],
        max_length=max_length,
        with_token_type_ids=with_types,
    )
    return HeldOut(tokens, np.array([p.label for p in pairs], dtype=np.float32))
