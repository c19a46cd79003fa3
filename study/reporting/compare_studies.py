"""Studies side by side: "did my change help?" (`python -m study.report A B ...`).

Every study's last evaluated epoch per setting (model x optimizer x variant, and seed) goes into one
table, one column per study for each metric. Where study B (C, ...) evaluated the same setting on
the same evaluation set as study A, the per-query values (`<trial>/per_query/<set>.epoch<N>.json`)
are paired over the queries both hold, and tested like the report's Lion vs AdamW comparison (a
paired t-test and a randomization test, Holm-corrected over every comparison of that study with A).
Where both studies ran a setting with the same seeds (two or more), two more views: the per-query
means over those seeds, tested the same way ("seed mean"), and each seed's difference of the metric,
its mean with a 95% t-interval over the seeds -- the seed-to-seed variation the per-query tests leave out.
"""

from __future__ import annotations

import string
from dataclasses import dataclass

from eval.measures import DISPLAY_NAMES
from study import results
from study.reporting import significance
from study.reporting.study_data import StudyData, metric_value

ALPHA = significance.ALPHA


@dataclass(frozen=True, kw_only=True)
class Paired(significance.PairedTest):
    """One setting of study A against the same setting of another study, paired over queries (its
    p-values, Holm's correction and verdict are the report's own: significance.PairedTest)."""

    study: str  # the label of the study compared with A ("B", "C", ...)
    setting: str
    eval_set: str
    metric: str
    epochs: tuple[int, int]  # (A's, the other's)
    n_queries: int
    mean_a: float
    mean_b: float


@dataclass(frozen=True)
class SeedDifference:
    """One setting of another study against A over the seeds both ran: the mean of the per-seed
    differences (other - A) of a metric at each trial's last epoch, with its 95% t-interval."""

    study: str
    setting: str
    eval_set: str
    metric: str
    seeds: tuple[int, ...]
    mean_a: float
    mean_b: float
    difference: float
    half_width: float  # of the 95% interval over seeds


def labels(studies: list[StudyData]) -> list[str]:
    return list(string.ascii_uppercase[: len(studies)])


def setting_of(trial: results.TrialResult, *, with_seed: bool) -> str:
    name = f"{trial.model}-{trial.optimizer}" + (f" [{trial.variant}]" if trial.variant else "")
    return name + (f" s{trial.seed}" if with_seed else "")


def _last_rows(study: StudyData, with_seed: bool) -> dict[str, tuple[results.TrialResult, dict]]:
    return {setting_of(t, with_seed=with_seed): (t, t.rows[-1]) for t in study.trials if t.rows}


def _by_seed(study: StudyData) -> dict[str, dict[int, tuple[results.TrialResult, dict]]]:
    """Setting (without seed) -> seed -> (trial, its last row)."""
    out: dict[str, dict[int, tuple[results.TrialResult, dict]]] = {}
    for t in study.trials:
        if t.rows:
            out.setdefault(setting_of(t, with_seed=False), {})[t.seed] = (t, t.rows[-1])
    return out


def _shared_seeds(a: dict[int, tuple], b: dict[int, tuple]) -> list[int]:
    """The seeds both ran, when there are at least two of them (one seed has no spread to show)."""
    seeds = sorted(set(a) & set(b))
    return seeds if len(seeds) >= 2 else []


def _with_seed(studies: list[StudyData]) -> bool:
    """Settings carry their seed when a study ran several; single-seed studies pair whatever seed they ran."""
    return any(len(s.seeds) > 1 for s in studies)


def side_by_side(studies: list[StudyData]) -> list[dict]:
    """One row per setting: its last epoch's table metrics (on the first study's first evaluation set), per study."""
    names, with_seed = labels(studies), _with_seed(studies)
    last = [_last_rows(s, with_seed) for s in studies]
    eval_set = studies[0].eval_sets[0]
    metrics = _table_metrics(studies[0], eval_set)
    rows = []
    for setting in dict.fromkeys(k for rows_of in last for k in sorted(rows_of)):
        row: dict = {"Setting": setting, "Epoch": " / ".join(str(r[setting][1]["epoch"]) if setting in r else "-" for r in last)}
        for metric in metrics:
            for name, rows_of in zip(names, last):
                value = metric_value(rows_of[setting][1], f"{eval_set}/{metric}") if setting in rows_of else None
                row[f"{DISPLAY_NAMES.get(metric, metric)} {name}"] = "-" if value is None else f"{value:.4f}"
        rows.append(row)
    return rows


def paired_tests(studies: list[StudyData], *, n_resamples: int = 10_000) -> list[Paired]:
    """Each later study against the first, per shared setting, evaluation set and table metric."""
    with_seed = _with_seed(studies)
    first = _last_rows(studies[0], with_seed)
    out: list[Paired] = []
    for name, study in zip(labels(studies)[1:], studies[1:]):
        family = []
        for setting, (trial_b, row_b) in _last_rows(study, with_seed).items():
            if setting not in first:
                continue
            trial_a, row_a = first[setting]
            for eval_set in [s for s in studies[0].eval_sets if s in study.eval_sets]:
                for metric in _table_metrics(studies[0], eval_set):
                    a = significance.per_query_values(trial_a.trial_dir, eval_set, row_a["epoch"], metric)
                    b = significance.per_query_values(trial_b.trial_dir, eval_set, row_b["epoch"], metric)
                    where = dict(study=name, setting=setting, eval_set=eval_set, metric=metric)
                    if test := _paired(a or {}, b or {}, epochs=(row_a["epoch"], row_b["epoch"]), n_resamples=n_resamples, **where):
                        family.append(test)
        if with_seed:
            family += _seed_mean_tests(studies[0], study, name, n_resamples)
        out += significance.holm_adjusted(family)
    return out


def _seed_mean_tests(a: StudyData, b: StudyData, name: str, n_resamples: int) -> list[Paired]:
    """Per setting both ran with the same seeds: per-query means over those seeds, paired over queries."""
    tests = []
    by_seed_a = _by_seed(a)
    for setting, runs_b in _by_seed(b).items():
        seeds = _shared_seeds(by_seed_a.get(setting, {}), runs_b)
        for eval_set in [s for s in a.eval_sets if s in b.eval_sets] if seeds else []:
            for metric in _table_metrics(a, eval_set):
                sides = []
                for runs in (by_seed_a[setting], runs_b):
                    values = [significance.per_query_values(runs[s][0].trial_dir, eval_set, runs[s][1]["epoch"], metric) for s in seeds]
                    sides.append(significance.query_means(values) if all(values) else {})
                epochs = (by_seed_a[setting][seeds[0]][1]["epoch"], runs_b[seeds[0]][1]["epoch"])  # a grid's seeds run alike
                where = dict(study=name, setting=f"{setting} (seed mean)", eval_set=eval_set, metric=metric)
                if test := _paired(sides[0], sides[1], epochs=epochs, n_resamples=n_resamples, **where):
                    tests.append(test)
    return tests


def _paired(a: dict[str, float], b: dict[str, float], *, epochs: tuple[int, int], n_resamples: int, **where) -> Paired | None:
    """A's and B's per-query values paired over the queries both hold, tested; None when they share none."""
    queries = sorted(set(a) & set(b))
    if not queries:
        return None
    xs, ys = [a[q] for q in queries], [b[q] for q in queries]
    return Paired(
        **where,
        epochs=epochs,
        n_queries=len(queries),
        mean_a=sum(xs) / len(xs),
        mean_b=sum(ys) / len(ys),
        **significance.paired_tests(ys, xs, n_resamples=n_resamples),
    )


def seed_differences(studies: list[StudyData]) -> list[SeedDifference]:
    """Each later study against the first, per setting both ran with the same two or more seeds."""
    from study.reporting.stats import mean_ci

    out = []
    by_seed_a = _by_seed(studies[0])
    for name, study in zip(labels(studies)[1:], studies[1:]):
        for setting, runs_b in _by_seed(study).items():
            seeds = _shared_seeds(by_seed_a.get(setting, {}), runs_b)
            for eval_set in [s for s in studies[0].eval_sets if s in study.eval_sets] if seeds else []:
                for metric in _table_metrics(studies[0], eval_set):
                    key = f"{eval_set}/{metric}"
                    pairs = [(metric_value(by_seed_a[setting][s][1], key), metric_value(runs_b[s][1], key)) for s in seeds]
                    if any(a is None or b is None for a, b in pairs):
                        continue
                    difference, half_width = mean_ci([b - a for a, b in pairs])
                    out.append(
                        SeedDifference(
                            study=name,
                            setting=setting,
                            eval_set=eval_set,
                            metric=metric,
                            seeds=tuple(seeds),
                            mean_a=sum(a for a, _ in pairs) / len(pairs),
                            mean_b=sum(b for _, b in pairs) / len(pairs),
                            difference=difference,
                            half_width=half_width,
                        )
                    )
    return out


def _table_metrics(study: StudyData, eval_set: str) -> list[str]:
    import json

    spec = json.loads((study.directory / "study_spec.json").read_text()) if (study.directory / "study_spec.json").exists() else None
    evaluation = spec["trials"][0]["evaluation"] if spec else []
    for e in evaluation:
        if e["name"] == eval_set:
            return list(e.get("table_metrics") or ["nDCG@10"])
    return ["nDCG@10"]


def comparison_text(studies: list[StudyData], *, n_resamples: int = 10_000) -> str:
    """What the console (and compare.md) shows: the legend, the side-by-side table, the paired tests and their caveats."""
    names = labels(studies)
    lines = ["Studies compared (each setting's last evaluated epoch):"]
    lines += [f"  {n} = {s.name}: scale {s.scale}, {len(s.trials)} trials, seeds {', '.join(map(str, s.seeds))} ({s.directory})" for n, s in zip(names, studies)]
    lines += ["", f"Metrics on {studies[0].eval_sets[0]} (Epoch: {' / '.join(names)}):", results.format_table(side_by_side(studies))]
    tests = paired_tests(studies, n_resamples=n_resamples)
    lines += ["", f"Paired tests over shared queries, each study against A (Holm-corrected per study; alpha {ALPHA}):"]
    if not tests:
        lines.append("  none: no setting was evaluated on the same queries in A and another study")
        return "\n".join(lines)
    lines.append(results.format_table([_test_row(t) for t in tests]))
    for name in names[1:]:
        mine = [t for t in tests if t.study == name]
        both = [t for t in mine if t.verdict == "significant"]
        higher = sum(t.mean_b > t.mean_a for t in both)
        lines.append(
            f"{name} vs A: {len(both)} of {len(mine)} differences significant by both tests"
            + (f" ({name} higher in {higher}, A higher in {len(both) - higher})" if both else "")
        )
    differences = seed_differences(studies)
    if differences:
        lines += ["", "Across seeds: each seed's difference (other - A) at the last epoch, mean ± 95% CI over the shared seeds:"]
        lines.append(results.format_table([_seed_row(d) for d in differences]))
    lines.append(_caveat(studies))
    return "\n".join(lines)


def _seed_row(d: SeedDifference) -> dict:
    return {
        "Study": d.study,
        "Setting": d.setting,
        "Set": d.eval_set,
        "Metric": DISPLAY_NAMES.get(d.metric, d.metric),
        "Seeds": ",".join(map(str, d.seeds)),
        "A": f"{d.mean_a:.4f}",
        "Other": f"{d.mean_b:.4f}",
        "Δ ± 95% CI": f"{d.difference:+.4f} ± {d.half_width:.4f}",
        "CI excludes 0": "yes" if abs(d.difference) > d.half_width else "no",
    }


def _test_row(t: Paired) -> dict:
    return {
        "Study": t.study,
        "Setting": t.setting,
        "Set": t.eval_set,
        "Metric": DISPLAY_NAMES.get(t.metric, t.metric),
        "Epochs": f"{t.epochs[0]}/{t.epochs[1]}",
        "Queries": t.n_queries,
        "A": f"{t.mean_a:.4f}",
        "Other": f"{t.mean_b:.4f}",
        "Δ": f"{t.mean_b - t.mean_a:+.4f}",
        "p t (Holm)": significance.format_p(t.t_p_holm),
        "p rand. (Holm)": significance.format_p(t.randomization_p_holm),
        "Verdict": t.verdict,
    }


def _caveat(studies: list[StudyData]) -> str:
    scales = sorted({s.scale for s in studies})
    text = (
        "Caveat: the tests treat queries as the sample; one training run per setting says nothing about "
        "seed-to-seed variation (run --seeds for that: the seeds' own differences are then shown with their interval), "
        "and every other difference between the studies (data, epochs, schedule) is part of what is compared."
    )
    if any(scale != "full" for scale in scales):
        text += f" Scale {', '.join(scales)}: stand-in models on generated data, a check of the pipeline, not a finding."
    return text
