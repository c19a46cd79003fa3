"""The thesis's evaluation loss: BCE on held-out training-distribution pairs, over training steps.

The thesis's Figures 5.1, 5.5 and 5.8 plot an "evaluation loss" over steps; sentence-transformers
(the library it trained with) computes that loss on a held-out split of the training pairs, every N
steps. So a trial holds out (study/data/training_cache.py: `split_heldout`) whole queries of its training pairs (`training.heldout_pairs` pairs at
least, disjoint by query from what it trains on, chosen by a hash of the query text so every seed
and optimizer holds out the same queries of the same pool) and scores them every
`training.heldout_every` steps, at epoch 0 and at every epoch's end. The loss over the evaluation
sets' reranking candidates is another quantity (`<set>/candidate_loss`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

    from study.data.tokenized import TokenizedPairs

HELDOUT_LOSS = "heldout_loss"  # the key in result rows and step-log lines


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
