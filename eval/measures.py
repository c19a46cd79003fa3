"""Ranking metrics, declared once by name and computed with ir_measures.

Names here are the project's canonical metric names (the keys in every report). Each maps to an
ir_measures measure; binary measures get the evaluation set's relevance threshold, so on graded
judgments like TREC DL's, AP, R-Prec, P@k, R@k and RR count rel >= 2 as relevant, as the track does,
while nDCG uses the graded gains.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

Run = Mapping[str, Mapping[str, float]]
Qrels = Mapping[str, Mapping[str, int]]

CUTOFFS: tuple[int, ...] = (5, 10, 20, 100)

# name -> ir_measures template; "{rel}" is filled with the set's binary relevance threshold.
_TEMPLATES: dict[str, str] = {
    **{f"nDCG@{k}": f"nDCG@{k}" for k in CUTOFFS},
    "AP": "AP(rel={rel})",
    "RR@10": "RR(rel={rel})@10",
    "R-Prec": "Rprec(rel={rel})",
    **{f"P@{k}": f"P(rel={{rel}})@{k}" for k in CUTOFFS},
    **{f"R@{k}": f"R(rel={{rel}})@{k}" for k in CUTOFFS},
}

METRICS: tuple[str, ...] = tuple(_TEMPLATES)
PRIMARY_METRIC = "nDCG@10"
PRIMARY_MODE = "max"

# How the thesis's tables name some metrics (MAP is the mean of AP, MRR@10 the mean of RR@10).
DISPLAY_NAMES: dict[str, str] = {"AP": "MAP", "RR@10": "MRR@10"}


def check_metric_names(names: Iterable[str]) -> None:
    """Raise ValueError for a name that is not a known metric, suggesting the closest one."""
    from study.names import check_name

    for name in names:
        check_name(name, METRICS, what="metric")


def ir_measure(name: str, *, binary_rel_threshold: int):
    """The ir_measures measure object behind a canonical metric name."""
    import ir_measures

    check_metric_names([name])
    return ir_measures.parse_measure(_TEMPLATES[name].format(rel=binary_rel_threshold))


def evaluate(
    run: Run,
    qrels: Qrels,
    *,
    binary_rel_threshold: int,
    metrics: Iterable[str] = METRICS,
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Score a run: (mean per metric, per metric the value of every judged query).

    Judged queries missing from the run score 0, as they would for a system that returned nothing,
    instead of being silently dropped from the mean.
    """
    import ir_measures

    names = list(metrics)
    measures = {ir_measure(n, binary_rel_threshold=binary_rel_threshold): n for n in names}
    per_query: dict[str, dict[str, float]] = {n: {qid: 0.0 for qid in qrels} for n in names}
    for row in ir_measures.iter_calc(list(measures), qrels, run):
        per_query[measures[row.measure]][row.query_id] = float(row.value)
    means = {n: (sum(v.values()) / len(v) if v else 0.0) for n, v in per_query.items()}
    return means, per_query
