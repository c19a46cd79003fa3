"""Rerank an evaluation set's candidates with a cross-encoder: model -> scores -> TREC run.

An evaluation set is tokenized once per trial (`CandidatePairs`) and scored after every epoch in
length-sorted batches, so padding is minimal and nothing is re-tokenized. The sort key is the exact
token count, which tokenizing up front gives for free: a character count (what
sentence-transformers sorts by) leaves up to ~17% padding on passages of mixed vocabulary.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from study.data.tokenized import TokenizedPairs, tokenize_pairs
from study.tracking.loop_progress import progress

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from study.data.types import EvalSet


@dataclass(frozen=True)
class CandidatePairs:
    """Every (query, candidate) pair of an evaluation set, tokenized, in a fixed order."""

    eval_set: EvalSet
    qids: list[str]
    docids: list[str]
    tokens: TokenizedPairs
    labels: np.ndarray  # 1.0 where the pair is judged relevant (binary threshold), else 0.0

    def __len__(self) -> int:
        return len(self.qids)


def tokenize_candidates(
    eval_set: EvalSet,
    tokenizer: PreTrainedTokenizerBase,
    *,
    max_length: int,
    with_token_type_ids: bool,
    depth: int | None = None,
) -> CandidatePairs:
    """Pairs of every query with its first `depth` candidates (all of them when depth is None)."""
    qids, docids = candidate_order(eval_set, depth)
    tokens = tokenize_pairs(
        tokenizer,
        [eval_set.queries[q] for q in qids],
        [eval_set.passages[d] for d in docids],
        max_length=max_length,
        with_token_type_ids=with_token_type_ids,
    )
    return with_tokens(eval_set, qids, docids, tokens)


def candidate_order(eval_set: EvalSet, depth: int | None) -> tuple[list[str], list[str]]:
    """The fixed (qid, docid) order in which pairs are tokenized, scored and cached."""
    qids, docids = [], []
    for qid in sorted(eval_set.candidates):
        for docid in eval_set.candidates[qid][:depth]:
            qids.append(qid)
            docids.append(docid)
    return qids, docids


def with_tokens(eval_set: EvalSet, qids: list[str], docids: list[str], tokens: TokenizedPairs) -> CandidatePairs:
    threshold = eval_set.binary_rel_threshold
    labels = np.array(
        [float(eval_set.qrels.get(q, {}).get(d, 0) >= threshold) for q, d in zip(qids, docids)],
        dtype=np.float32,
    )
    return CandidatePairs(eval_set, qids, docids, tokens, labels)


def length_sorted_batches(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Indices grouped into batches of similar length (longest first, so memory peaks early)."""
    order = np.argsort(-lengths, kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def score_pairs(
    model: PreTrainedModel,
    tokens: TokenizedPairs,
    *,
    batch_size: int,
    device: torch.device,
    autocast_dtype: torch.dtype | None = None,
) -> np.ndarray:
    """One float32 logit per pair, in the pairs' original order. Under bf16 autocast the encoder
    runs in bf16 and the head in fp32 (eval/head_precision.py), so scores do not tie on bf16's grid."""
    import torch

    from eval.head_precision import fp32_head

    scores = torch.empty(len(tokens), dtype=torch.float32, device=device)
    was_training = model.training
    model.eval()
    autocast = (
        torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype else contextlib.nullcontext()
    )
    with torch.inference_mode(), autocast, fp32_head(model, device.type):
        batches = length_sorted_batches(tokens.lengths, batch_size)
        # a bar for large sets only (as in loop_progress: 20k pairs); it counts batches queued to the device
        for indices in progress(batches, desc="reranking", total=len(batches), min_total=-(-20_000 // batch_size), unit="batches"):
            batch = {k: v.to(device, non_blocking=True) for k, v in tokens.batch(indices).items()}
            logits = model(**batch).logits.reshape(-1).float()
            scores[torch.from_numpy(indices).to(device)] = logits
    model.train(was_training)
    return scores.cpu().numpy()  # the one host sync per evaluation


def to_run(pairs: CandidatePairs, scores: np.ndarray) -> dict[str, dict[str, float]]:
    run: dict[str, dict[str, float]] = {}
    for qid, docid, score in zip(pairs.qids, pairs.docids, scores.tolist()):
        run.setdefault(qid, {})[docid] = score
    return run
