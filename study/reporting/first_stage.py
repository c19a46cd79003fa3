"""Each trained model vs the first stage: did fine-tuning beat the candidates' own order (BM25)?

Each trial's model after its last epoch is paired over queries with the first stage on the same
candidates (`<trial>/per_query/<set>.first_stage.json`, written beside epoch 0), with the same two
tests as the Lion vs AdamW section, on each evaluation set's own table metrics (a study on one's own
collection names its own; the thesis grid's are Table 5.1's). The family for Holm's correction is
one trial: every metric reported on every set.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from eval.measures import DISPLAY_NAMES, FIRST_STAGE
from study.reporting.significance import (
    ALPHA,
    P_HEADERS,
    PairedTest,
    holm_adjusted,
    paired_tests,
)
from study.reporting.study_data import StudyData
from study.reporting.tables import Grid


@dataclass(frozen=True)
class VsFirstStage(PairedTest):
    trial: str
    epoch: int  # the trial's last evaluated epoch
    eval_set: str
    metric: str
    n_queries: int
    first_stage: float  # mean over queries
    reranker: float

    @property
    def difference(self) -> float:
        return self.reranker - self.first_stage


def first_stage_metrics(study: StudyData) -> list[tuple[str, str]]:
    """(evaluation set, metric) pairs to test: each set's table metrics from the spec, in its order;
    Table 5.1's where the spec names none."""
    if study.table_metrics:
        return [(eval_set, metric) for eval_set in study.eval_sets for metric in study.table_metrics.get(eval_set, ())]
    from study.reporting.thesis_numbers import THESIS_TABLES

    return [(study.eval_set(role), metric) for role, metric in THESIS_TABLES["Table 5.1"].metrics]


def compare_with_first_stage(
    study: StudyData, metrics: list[tuple[str, str]], *, n_resamples: int = 10_000
) -> list[VsFirstStage]:
    """Every trained trial against the first stage on the given (evaluation set, metric) pairs, at
    its last epoch, Holm-adjusted per trial."""
    comparisons: list[VsFirstStage] = []
    for trial in study.trials:
        trained = [row["epoch"] for row in trial.rows if row["epoch"] > 0]
        if not trained:
            continue
        epoch, family = max(trained), []
        for eval_set, metric in metrics:
            baseline = _per_query(trial.trial_dir, f"{eval_set}.{FIRST_STAGE}", metric)
            model = _per_query(trial.trial_dir, f"{eval_set}.epoch{epoch}", metric)
            queries = sorted(set(baseline or {}) & set(model or {}))
            if not queries:
                continue
            a, b = [model[q] for q in queries], [baseline[q] for q in queries]
            family.append(
                VsFirstStage(
                    trial.name,
                    epoch,
                    eval_set,
                    metric,
                    len(queries),
                    first_stage=sum(b) / len(b),
                    reranker=sum(a) / len(a),
                    **paired_tests(a, b, n_resamples=n_resamples),
                )
            )
        comparisons += holm_adjusted(family)
    return comparisons


def summary_lines(comparisons: list[VsFirstStage]) -> list[str]:
    """Per trial: where it is significantly above or below the first stage (both tests, after Holm)."""
    if not comparisons:
        return ["No trial has been compared with the first stage yet: none has trained an epoch."]
    lines = []
    for trial in dict.fromkeys(c.trial for c in comparisons):
        mine = [c for c in comparisons if c.trial == trial]
        above = [c for c in mine if c.verdict == "significant" and c.difference > 0]
        below = [c for c in mine if c.verdict == "significant" and c.difference < 0]
        with_set = len({c.metric for c in mine}) < len(mine)  # a metric on several sets: name the set
        parts = [
            f"{word} the first stage on {_metrics(group, with_set)}"
            for word, group in (("above", above), ("below", below))
            if group
        ]
        rest = len(mine) - len(above) - len(below)
        parts.append(f"{rest} of {len(mine)} differences not significant at {ALPHA} by both tests")
        lines.append(f"{trial} (epoch {mine[0].epoch}): " + "; ".join(parts) + ".")
    return lines


def first_stage_grid(comparisons: list[VsFirstStage]) -> Grid:
    headers = ["Trial", "Epoch", "Set", "Metric", "Queries", "First stage", "Reranker", "Δ (reranker-first stage)"]
    headers += P_HEADERS
    grid = Grid(
        "Each trained model vs the first stage",
        f"paired over queries on the same candidates; p-values two-sided, Holm-corrected per trial (alpha {ALPHA})",
        headers,
    )
    for i, c in enumerate(comparisons):
        grid.rows.append(
            [
                c.trial,
                str(c.epoch),
                c.eval_set,
                DISPLAY_NAMES.get(c.metric, c.metric),
                str(c.n_queries),
                f"{c.first_stage:.4f}",
                f"{c.reranker:.4f}",
                f"{c.difference:+.4f}",
                *c.p_texts(),
            ]
        )
        if c.verdict == "significant":
            grid.marked.add((i, len(headers) - 1))
        grid.csv_rows.append(
            {
                "trial": c.trial,
                "epoch": c.epoch,
                "eval_set": c.eval_set,
                "metric": c.metric,
                "n_queries": c.n_queries,
                "first_stage": c.first_stage,
                "reranker": c.reranker,
                "difference": c.difference,
                **c.p_fields(),
            }
        )
    return grid


def _metrics(group: list[VsFirstStage], with_set: bool) -> str:
    return ", ".join(
        f"{DISPLAY_NAMES.get(c.metric, c.metric)}{f' on {c.eval_set}' if with_set else ''} ({c.difference:+.4f})"
        for c in group
    )


def _per_query(trial_dir: str, stem: str, metric: str) -> dict[str, float] | None:
    path = Path(trial_dir) / "per_query" / f"{stem}.json"
    if not path.exists():
        return None
    return json.loads(path.read_text()).get(metric) or None
