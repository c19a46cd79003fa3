"""Query-passage pairs tokenized once into flat arrays, then sliced into padded batches.

Flat int32 arrays with offsets keep millions of pairs compact (no Python list per pair), and the
lengths they expose drive length-sorted evaluation batches.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from study.tracking.loop_progress import progress

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

_CHUNK = 4096  # pairs per tokenizer call: large enough for the fast tokenizer's batching


@dataclass(frozen=True)
class TokenizedPairs:
    input_ids: np.ndarray  # int32, all pairs concatenated
    token_type_ids: np.ndarray | None  # int8, same layout; None when the model takes none
    offsets: np.ndarray  # int64, pair i is [offsets[i], offsets[i + 1])
    pad_token_id: int

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def batch(self, indices: Sequence[int] | np.ndarray) -> dict[str, torch.Tensor]:
        """Pad the chosen pairs to the longest among them (dynamic padding)."""
        import torch

        lengths = self.lengths[indices]
        width = int(lengths.max())
        ids = np.full((len(lengths), width), self.pad_token_id, dtype=np.int64)
        mask = np.zeros((len(lengths), width), dtype=np.int64)
        types = np.zeros((len(lengths), width), dtype=np.int64) if self.token_type_ids is not None else None
        for row, (index, length) in enumerate(zip(indices, lengths)):
            start = self.offsets[index]
            ids[row, :length] = self.input_ids[start : start + length]
            mask[row, :length] = 1
            if types is not None:
                types[row, :length] = self.token_type_ids[start : start + length]
        out = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}
        if types is not None:
            out["token_type_ids"] = torch.from_numpy(types)
        return out


def tokenize_pairs(
    tokenizer: PreTrainedTokenizerBase,
    queries: Sequence[str],
    passages: Sequence[str],
    *,
    max_length: int,
    with_token_type_ids: bool,
) -> TokenizedPairs:
    """`[CLS] query [SEP] passage [SEP]` for each pair, truncated to `max_length` tokens."""
    if len(queries) != len(passages):
        raise ValueError(f"expects as many queries as passages, but got {len(queries)} and {len(passages)}")
    ids_parts: list[np.ndarray] = []
    type_parts: list[np.ndarray] = []
    lengths: list[int] = []
    chunks = range(0, len(queries), _CHUNK)
    for start in progress(chunks, desc="tokenizing pairs", total=len(chunks), min_total=5, unit="chunks of 4096"):
        encoded = tokenizer(
            list(queries[start : start + _CHUNK]),
            list(passages[start : start + _CHUNK]),
            truncation=True,
            max_length=max_length,
            return_attention_mask=False,
            return_token_type_ids=with_token_type_ids,
        )
        for row in encoded["input_ids"]:
            ids_parts.append(np.asarray(row, dtype=np.int32))
            lengths.append(len(row))
        if with_token_type_ids:
            type_parts.extend(np.asarray(row, dtype=np.int8) for row in encoded["token_type_ids"])
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    empty = np.zeros(0, dtype=np.int32)
    return TokenizedPairs(
        input_ids=np.concatenate(ids_parts) if ids_parts else empty,
        token_type_ids=(np.concatenate(type_parts) if type_parts else empty.astype(np.int8))
        if with_token_type_ids
        else None,
        offsets=offsets,
        pad_token_id=int(tokenizer.pad_token_id or 0),
    )
