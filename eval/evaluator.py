"""Evaluate a reranker on one candidate set: scores -> TREC run file -> ir_measures metrics.

Writes, per epoch, the run (`runs/<set>.epoch<N>.trec`) and every query's value of every metric
(`per_query/<set>.epoch<N>.json`), which the significance tests read later. The first stage (the
candidates in their own order: BM25, or the official run) is scored the same way once, as the
baseline every reranker must beat (`runs/<set>.first_stage.trec`, `per_query/<set>.first_stage.json`).
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from eval import measures
from eval.measures import FIRST_STAGE
from eval.rerank import CandidatePairs, score_pairs, to_run
from eval.trec import write_run

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel


def evaluate_reranker(
    model: PreTrainedModel,
    pairs: CandidatePairs,
    *,
    epoch: int,
    out_dir: Path,
    run_tag: str,
    batch_size: int,
    device: torch.device,
    autocast_dtype: torch.dtype | None = None,
) -> dict[str, float]:
    """Metrics of this set, keyed `<set>/<metric>`, plus `<set>/candidate_loss` (BCE over
    the reranking candidates against binary judgments: not the thesis's evaluation loss, which is over
    held-out training pairs, trainables/heldout.py) and `<set>/eval_pairs_per_s`."""
    name = pairs.eval_set.name
    start = time.perf_counter()
    scores = score_pairs(model, pairs.tokens, batch_size=batch_size, device=device, autocast_dtype=autocast_dtype)
    seconds = time.perf_counter() - start
    run = to_run(pairs, scores)
    write_run(run, out_dir / "runs" / f"{name}.epoch{epoch}.trec", tag=run_tag)
    means, per_query = measures.evaluate(
        run, pairs.eval_set.qrels, binary_rel_threshold=pairs.eval_set.binary_rel_threshold
    )
    _write_json_atomically(out_dir / "per_query" / f"{name}.epoch{epoch}.json", per_query)
    result = {f"{name}/{metric}": value for metric, value in means.items()}
    result[f"{name}/candidate_loss"] = binary_cross_entropy(scores, pairs.labels)
    result[f"{name}/eval_pairs_per_s"] = len(pairs) / seconds if seconds > 0 else math.nan
    return result


def evaluate_first_stage(pairs: CandidatePairs, *, out_dir: Path) -> dict[str, float]:
    """The candidates' own order scored like a reranker's: the same pairs (depth included), the same
    measures. Keys `first_stage/<set>/<metric>`."""
    name = pairs.eval_set.name
    rank_in_query: dict[str, int] = {}
    scores = np.empty(len(pairs), dtype=np.float64)
    for i, qid in enumerate(pairs.qids):  # pairs keep each query's candidates in first-stage order
        rank_in_query[qid] = rank_in_query.get(qid, 0) + 1
        scores[i] = -rank_in_query[qid]
    run = to_run(pairs, scores)
    write_run(run, out_dir / "runs" / f"{name}.{FIRST_STAGE}.trec", tag=FIRST_STAGE)
    means, per_query = measures.evaluate(
        run, pairs.eval_set.qrels, binary_rel_threshold=pairs.eval_set.binary_rel_threshold
    )
    _write_json_atomically(out_dir / "per_query" / f"{name}.{FIRST_STAGE}.json", per_query)
    return {f"{FIRST_STAGE}/{name}/{metric}": value for metric, value in means.items()}


def binary_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean BCE-with-logits of the scores against binary labels."""
    logits = logits.astype(np.float64)
    # log(1 + e^x) - y*x, computed stably
    return float(np.mean(np.logaddexp(0.0, logits) - labels * logits))


def _write_json_atomically(path: Path, payload: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload))
    os.replace(tmp, path)
