"""Ranking metrics, declared once by name and computed with ir_measures.

Names here are the project's canonical metric names (the keys in every report). Each maps to an
ir_measures measure, and the names follow ir_measures: a plain binary measure (AP, RR@10, R-Prec, P@k,
R@k) counts rel >= 1 as relevant, trec_eval's default and the thesis's reading ("standard trec_eval";
its TREC DL 2019 numbers are only possible at rel >= 1, see tests/test_relevance_threshold.py). On a
set whose own convention is stricter (TREC DL: rel >= 2, the track's and the literature's), the same
measures are computed again at that grade and named apart, `AP(rel=2)`, `P(rel=2)@10`, so results
carry both. nDCG uses the graded gains and has no threshold.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

Run = Mapping[str, Mapping[str, float]]
Qrels = Mapping[str, Mapping[str, int]]

CUTOFFS: tuple[int, ...] = (5, 10, 20, 100)

# name -> ir_measures template; "{rel}" is filled with the binary relevance threshold (1 for plain names).
_TEMPLATES: dict[str, str] = {
    **{f"nDCG@{k}": f"nDCG@{k}" for k in CUTOFFS},
    "AP": "AP(rel={rel})",
    "RR@10": "RR(rel={rel})@10",
    "R-Prec": "Rprec(rel={rel})",
    **{f"P@{k}": f"P(rel={{rel}})@{k}" for k in CUTOFFS},
    **{f"R@{k}": f"R(rel={{rel}})@{k}" for k in CUTOFFS},
}

METRICS: tuple[str, ...] = tuple(_TEMPLATES)  # the plain names: binary measures at rel >= 1
BINARY: tuple[str, ...] = tuple(name for name, template in _TEMPLATES.items() if "{rel}" in template)
_AT_THRESHOLD = re.compile(r"(?P<base>[A-Za-z-]+)\(rel=(?P<rel>[1-9][0-9]*)\)(?P<cutoff>@[0-9]+)?")
PRIMARY_METRIC = "nDCG@10"
PRIMARY_MODE = "max"

# Result-key prefix and file tag of the first stage's scores (the candidates in their own order).
FIRST_STAGE = "first_stage"

# How the thesis's tables name some metrics (MAP is the mean of AP, MRR@10 the mean of RR@10).
DISPLAY_NAMES: dict[str, str] = {"AP": "MAP", "RR@10": "MRR@10"}


def at_threshold(name: str, rel: int) -> str:
    """A binary measure's name at relevance grade `rel`: ("P@10", 2) -> "P(rel=2)@10"; rel 1 is the plain name."""
    if name not in BINARY:
        raise ValueError(f"{name!r} has no relevance threshold; binary measures are {', '.join(BINARY)}")
    if rel == 1:
        return name
    base, _, cutoff = name.partition("@")
    return f"{base}(rel={rel})" + (f"@{cutoff}" if cutoff else "")


def metric_names(binary_rel_threshold: int = 1) -> tuple[str, ...]:
    """Every metric computed on a set whose own convention counts rel >= `binary_rel_threshold` as relevant."""
    strict = () if binary_rel_threshold == 1 else tuple(at_threshold(n, binary_rel_threshold) for n in BINARY)
    return METRICS + strict


def _parse(name: str) -> tuple[str, int]:
    """(plain name, threshold) of a canonical name; ValueError, with the closest name, for an unknown one."""
    from study.names import check_name

    match = _AT_THRESHOLD.fullmatch(name)
    if match and (base := match["base"] + (match["cutoff"] or "")) in BINARY:
        return base, int(match["rel"])
    check_name(name, metric_names(2), what="metric")  # the known list shows the graded form, P(rel=2)@10
    return name, 1


def check_metric_names(names: Iterable[str]) -> None:
    """Raise ValueError for a name that is not a known metric, suggesting the closest one."""
    for name in names:
        _parse(name)


def ir_measure(name: str):
    """The ir_measures measure object behind a canonical metric name."""
    import ir_measures

    base, rel = _parse(name)
    return ir_measures.parse_measure(_TEMPLATES[base].format(rel=rel))


def evaluate(
    run: Run,
    qrels: Qrels,
    *,
    binary_rel_threshold: int = 1,
    metrics: Iterable[str] | None = None,
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Score a run: (mean per metric, per metric the value of every judged query).

    Without `metrics`: every metric of a set whose convention is `binary_rel_threshold`
    (`metric_names`). Judged queries missing from the run score 0, as they would for a system that
    returned nothing, instead of being silently dropped from the mean.
    """
    import ir_measures

    names = list(metric_names(binary_rel_threshold) if metrics is None else metrics)
    measures = {ir_measure(n): n for n in names}
    per_query: dict[str, dict[str, float]] = {n: {qid: 0.0 for qid in qrels} for n in names}
    for row in ir_measures.iter_calc(list(measures), qrels, run):
        per_query[measures[row.measure]][row.query_id] = float(row.value)
    means = {n: (sum(v.values()) / len(v) if v else 0.0) for n, v in per_query.items()}
    return means, per_query
