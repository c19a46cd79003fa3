"""Metrics that reranking cannot move on a set: set-based cut-offs at or beyond the reranked depth.

A reranker only reorders each query's candidates. P@k and R@k count the relevant passages among the
top k, so once k reaches the number of candidates reranked per query (all 30 at smoke scale, the
top 30 of 1000 where a set's `depth` says so) the top k holds the same passages in every trial and
epoch: the metric is fixed by the first-stage ranking. Tables mark such metrics and plots leave them
out; nDCG@k, AP, RR and R-Prec depend on the order and always can move.
"""

from __future__ import annotations

import re
from pathlib import Path

from study.reporting.study_data import StudyData

_SET_CUTOFF = re.compile(r"^(P|R)@(\d+)$")


def reranked_depth(study: StudyData, eval_set: str) -> int | None:
    """Candidates reranked per query (the most any query has), read from a run file of the study."""
    for trial in study.trials:
        runs = sorted((Path(trial.trial_dir) / "runs").glob(f"{eval_set}.epoch*.trec"))
        if runs:
            counts: dict[str, int] = {}
            for line in runs[0].read_text().splitlines():
                qid = line.split(maxsplit=1)[0] if line.strip() else None
                if qid:
                    counts[qid] = counts.get(qid, 0) + 1
            return max(counts.values()) if counts else None
    return None


def fixed_metrics(study: StudyData, eval_set: str, metrics: list[str] | tuple[str, ...]) -> list[str]:
    """The metrics among `metrics` that cannot move on `eval_set` (see the module's docstring)."""
    depth = reranked_depth(study, eval_set)
    if depth is None:
        return []
    return [m for m in metrics if (match := _SET_CUTOFF.match(m)) and int(match.group(2)) >= depth]


def fixed_note(study: StudyData, eval_set: str, metrics: list[str] | tuple[str, ...]) -> str | None:
    fixed = fixed_metrics(study, eval_set, metrics)
    if not fixed:
        return None
    return (
        f"{', '.join(fixed)} on {eval_set} cannot move: only the top {reranked_depth(study, eval_set)} candidates "
        "per query are reranked, so those cut-offs hold the same passages in every row."
    )
