"""Lion vs AdamW, per model and epoch: paired tests over queries on the saved per-query values.

Each comparison pairs the two optimizers' values of one metric on the same queries
(`<trial>/per_query/<set>.epoch<N>.json`), trained with the same seed. With several seeds there is
one comparison per seed plus one on each query's mean over the seeds both optimizers ran. The
family for Holm's correction is one model at one epoch: every metric reported x every seed.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path

from eval.measures import DISPLAY_NAMES
from study.reporting.stats import holm, paired_t_test, randomization_test
from study.reporting.study_data import StudyData
from study.reporting.tables import Grid

ALPHA = 0.05
BASELINE, CHALLENGER = "adamw", "lion"


@dataclass(frozen=True, kw_only=True)
class PairedTest:
    """Two paired tests over queries: p-values before and after Holm's correction, and what they say."""

    t_p: float
    randomization_p: float
    t_p_holm: float = math.nan
    randomization_p_holm: float = math.nan

    @property
    def verdict(self) -> str:
        """Significant when both Holm-adjusted p-values are below ALPHA; one alone is weak evidence."""
        t, r = self.t_p_holm < ALPHA, self.randomization_p_holm < ALPHA
        if t and r:
            return "significant"
        if t or r:
            return "t-test only" if t else "randomization only"
        return "not significant"

    def p_texts(self) -> list[str]:
        """The cells under P_HEADERS: the four p-values and the verdict."""
        p_values = (self.t_p, self.randomization_p, self.t_p_holm, self.randomization_p_holm)
        return [*(format_p(p) for p in p_values), self.verdict]

    def p_fields(self) -> dict:
        names = ("t_p", "randomization_p", "t_p_holm", "randomization_p_holm")
        return {name: getattr(self, name) for name in names} | {"verdict": self.verdict}


P_HEADERS = ["p t-test", "p rand.", "p t-test (Holm)", "p rand. (Holm)", "Verdict"]


def paired_tests(a: list[float], b: list[float], *, n_resamples: int) -> dict[str, float]:
    """The p-values of mean(a - b) = 0 by both tests (a t-test needs two queries)."""
    return {
        "t_p": paired_t_test(a, b) if len(a) > 1 else math.nan,
        "randomization_p": randomization_test(a, b, n_resamples=n_resamples),
    }


@dataclass(frozen=True)
class Comparison(PairedTest):
    model: str  # with a YAML study's variant tag in brackets, if any
    epoch: int
    seeds: str  # "12", or "12,13 (query means)"
    eval_set: str
    metric: str
    n_queries: int
    adamw: float  # mean over queries
    lion: float

    @property
    def difference(self) -> float:
        return self.lion - self.adamw


def compare_optimizers(
    study: StudyData, metrics: list[tuple[str, str]], *, n_resamples: int = 10_000
) -> list[Comparison]:
    """Every Lion vs AdamW comparison the per-query files allow, Holm-adjusted per model and epoch."""
    comparisons: list[Comparison] = []
    settings = dict.fromkeys((t.model, t.variant) for t in study.trials)
    for model, variant in settings:
        label = model + (f" [{variant}]" if variant else "")
        trials = {(t.optimizer, t.seed): t for t in study.trials if (t.model, t.variant) == (model, variant)}
        seeds = sorted(s for (o, s) in trials if o == BASELINE and (CHALLENGER, s) in trials)
        epochs = sorted(
            {row["epoch"] for s in seeds for o in (BASELINE, CHALLENGER) for row in trials[(o, s)].rows} - {0}
        )
        for epoch in epochs:
            family = []
            for role, metric in metrics:
                eval_set = study.eval_set(role)
                per_seed = {}
                for seed in seeds:
                    pair = [
                        per_query_values(trials[(o, seed)].trial_dir, eval_set, epoch, metric) for o in (BASELINE, CHALLENGER)
                    ]
                    if all(pair) and set(pair[0]) & set(pair[1]):
                        per_seed[seed] = pair
                        family.append(_compare(label, epoch, str(seed), eval_set, metric, *pair, n_resamples))
                if len(per_seed) > 1:
                    seeds_label = ",".join(map(str, per_seed)) + " (query means)"
                    means = [query_means([p[i] for p in per_seed.values()]) for i in (0, 1)]
                    family.append(_compare(label, epoch, seeds_label, eval_set, metric, *means, n_resamples))
            comparisons += holm_adjusted(family)
    return comparisons


def summary_lines(comparisons: list[Comparison], study: StudyData | None = None) -> list[str]:
    """Plain statements of what is and is not significant at ALPHA after Holm's correction; with
    `study`, its caveats first and each model's confounds beside its statement."""
    if not comparisons:
        return ["No Lion vs AdamW comparison is possible yet: no model has both optimizers evaluated after training."]
    general, per_model = caveats(study) if study else ("", {})
    lines = [general] if general else []
    for model in dict.fromkeys(c.model for c in comparisons):
        mine = [c for c in comparisons if c.model == model]
        both = [c for c in mine if c.verdict == "significant"]
        one = [c for c in mine if c.verdict in ("t-test only", "randomization only")]
        if not both:
            lines.append(
                f"{model}: none of {len(mine)} differences is significant at {ALPHA} by both tests: "
                "these queries give no evidence that Lion and AdamW differ."
            )
        else:
            lion = sum(c.difference > 0 for c in both)
            direction = ", ".join(
                f"{who} higher in {n}" for who, n in (("Lion", lion), ("AdamW", len(both) - lion)) if n
            )
            lines.append(
                f"{model}: {len(both)} of {len(mine)} differences are significant at {ALPHA} by both tests "
                f"({direction}): {_where(both)}."
            )
        others = len(mine) - len(both) - len(one)
        one_text = f"{len(one)} by one test only (weak evidence: {_where(one)}); " if one else ""
        lines.append(f"  {one_text}{others} not significant.")
        if model.split(" [")[0] in per_model:
            lines.append(f"  {per_model[model.split(' [')[0]]}")
    return lines


def caveats(study: StudyData) -> tuple[str, dict[str, str]]:
    """What the test results must be read with: (the scale and seeds, per model what differs besides the optimizer)."""
    seeds = len(study.seeds)
    general = (
        f"Read with: scale {study.scale}"
        + (": stand-in models on generated data, so these tests check the pipeline; they are not findings about "
           "Lion or AdamW." if study.scale in ("smoke", "demo") else ".")
        + f" {seeds} seed{'s' if seeds != 1 else ''}: the tests take queries as the sample, so they say whether "
        "these trained models differ on these queries"
        + (", not whether another seed would give the same answer." if seeds == 1 else ".")
    )
    per_model = {}
    for model in study.models:
        settings = {}
        for t in study.trials:
            if t.model == model and t.optimizer in (BASELINE, CHALLENGER):
                spec = json.loads((Path(t.trial_dir) / "params.json").read_text())["trial"]
                settings[t.optimizer] = (spec["optimizer"]["lr"], spec["schedule"]["name"], spec["schedule"]["warmup_steps"])
        if len(settings) == 2 and settings[BASELINE] != settings[CHALLENGER]:
            (lr_a, sched_a, warm_a), (lr_l, sched_l, warm_l) = settings[BASELINE], settings[CHALLENGER]
            per_model[model] = (
                f"confound: Lion ran at lr {lr_l:g} ({sched_l}, {warm_l} warm-up steps), AdamW at lr {lr_a:g} "
                f"({sched_a}, {warm_a}): a difference is the optimizer and these settings together."
            )
    return general, per_model


def _where(comparisons: list[Comparison]) -> str:
    """'epoch 1: nDCG@10 (Lion; s12, seed mean), MAP (AdamW; s13); epoch 2: ...'"""
    by_epoch: dict[int, dict[tuple[str, str], list[str]]] = {}
    for c in comparisons:
        winner = "Lion" if c.difference > 0 else "AdamW"
        seed = "seed mean" if "query means" in c.seeds else f"s{c.seeds}"
        by_epoch.setdefault(c.epoch, {}).setdefault((DISPLAY_NAMES.get(c.metric, c.metric), winner), []).append(seed)
    return "; ".join(
        f"epoch {epoch}: "
        + ", ".join(f"{metric} ({winner}; {', '.join(seeds)})" for (metric, winner), seeds in cells.items())
        for epoch, cells in sorted(by_epoch.items())
    )


def _compare(model, epoch, seeds, eval_set, metric, adamw: dict, lion: dict, n_resamples: int) -> Comparison:
    queries = sorted(set(adamw) & set(lion))
    a = [adamw[q] for q in queries]
    b = [lion[q] for q in queries]
    return Comparison(
        model,
        epoch,
        seeds,
        eval_set,
        metric,
        len(queries),
        adamw=sum(a) / len(a),
        lion=sum(b) / len(b),
        **paired_tests(b, a, n_resamples=n_resamples),
    )


def holm_adjusted(family: list) -> list:
    """The family's comparisons (dataclasses with t_p and randomization_p) with their Holm-adjusted p-values."""
    out = list(family)
    for field in ("t_p", "randomization_p"):
        index = [i for i, c in enumerate(out) if not math.isnan(getattr(c, field))]
        adjusted = holm([getattr(out[i], field) for i in index])
        for i, p in zip(index, adjusted):
            out[i] = replace(out[i], **{f"{field}_holm": p})
    return out


def per_query_values(trial_dir: str, eval_set: str, epoch: int, metric: str) -> dict[str, float] | None:
    path = Path(trial_dir) / "per_query" / f"{eval_set}.epoch{epoch}.json"
    if not path.exists():
        return None
    values = json.loads(path.read_text()).get(metric)
    return values or None


def query_means(runs: list[dict[str, float]]) -> dict[str, float]:
    queries = set.intersection(*(set(r) for r in runs))
    return {q: sum(r[q] for r in runs) / len(runs) for q in queries}


def significance_grid(comparisons: list[Comparison]) -> Grid:
    grid = Grid(
        "Significance",
        f"Lion vs AdamW, paired over queries; p-values two-sided, Holm-corrected per model and epoch (alpha {ALPHA})",
        [
            "Model",
            "Epoch",
            "Seed",
            "Metric",
            "Queries",
            "AdamW",
            "Lion",
            "Δ (Lion-AdamW)",
            *P_HEADERS,
        ],
    )
    for i, c in enumerate(comparisons):
        grid.rows.append(
            [
                c.model,
                str(c.epoch),
                c.seeds,
                DISPLAY_NAMES.get(c.metric, c.metric),
                str(c.n_queries),
                f"{c.adamw:.4f}",
                f"{c.lion:.4f}",
                f"{c.difference:+.4f}",
                *c.p_texts(),
            ]
        )
        if c.verdict == "significant":
            grid.marked.add((i, 12))
        grid.csv_rows.append(
            {
                "model": c.model,
                "epoch": c.epoch,
                "seeds": c.seeds,
                "eval_set": c.eval_set,
                "metric": c.metric,
                "n_queries": c.n_queries,
                "adamw": c.adamw,
                "lion": c.lion,
                "difference": c.difference,
                **c.p_fields(),
            }
        )
    return grid


def format_p(p: float) -> str:
    if math.isnan(p):
        return "-"
    return f"{p:.2e}" if p < 0.001 else f"{p:.3f}"
