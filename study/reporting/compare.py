"""The report of an optimizer comparison (study/search/compare.py): tuned against tuned.

Per model it writes, into <comparison>/compare_report.md (tables also as CSV under tables/):
- quality: each optimizer's tuned and default configurations on every table metric at the last
  epoch, mean +- the 95% t-interval over the confirmation seeds;
- paired tests between the tuned optimizers, per query, per seed and on the query means over seeds
  (paired t-test and randomization test, Holm-corrected per model; as reporting/significance.py);
- time to target (AlgoPerf): the steps and training seconds the selected search trial needed until
  its validation metric first reached TARGET_FRACTION of the best value any optimizer found;
- tuning cost: the trials, steps and training seconds each optimizer's search spent;
- plots/<model>-convergence.png: best validation value so far against cumulative trial-steps;
- a paragraph of what the numbers support.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from eval.measures import DISPLAY_NAMES
from study.reporting.significance import ALPHA, per_query_values, query_means
from study.reporting.stats import holm, mean_ci, paired_t_test, randomization_test
from study.reporting.study_data import StudyData, load_study, metric_value
from study.results import TrialResult, format_table, write_atomic

REPORT_MD = "compare_report.md"


@dataclass(frozen=True)
class CompareReport:
    markdown: Path
    tables: list[Path]
    plots: list[Path]
    summary: str


@dataclass
class _Model:
    name: str
    quality: list[dict] = field(default_factory=list)
    tests: list[dict] = field(default_factory=list)
    timing: list[dict] = field(default_factory=list)
    paragraph: str = ""


def write_compare_report(directory: str | Path, *, n_resamples: int = 10_000, plots: bool = True) -> CompareReport:
    """Read the comparison in `directory` (its search and confirmation studies) and write its report."""
    from study.search.compare_spec import CONFIRM_NAME, load
    from study.search.run import load_search_trials

    directory = Path(directory)
    spec = load(directory)
    search = spec.search_spec()
    confirm = load_study(directory / CONFIRM_NAME)
    metrics = _table_metrics(confirm)
    searched = {pair.name: load_search_trials(search, pair) for pair in search.pairs}
    sections, written_tables, written_plots = [], [], []
    for model in confirm.models:
        report = _Model(model)
        chosen = _chosen(confirm, model, spec.optimizers)
        report.quality = _quality_rows(confirm, model, spec.optimizers, metrics)
        report.tests = _pairwise_tests(chosen, metrics, n_resamples)
        trials = {o: [t.result for t in searched.get(f"{model}-{o}", [])] for o in spec.optimizers}
        report.timing = _timing_rows(trials, search.metric_key, spec.target_fraction, search.num_samples)
        report.paragraph = _paragraph(model, report, spec, search, metrics)
        for stem, rows in (("quality", report.quality), ("tests", report.tests), ("timing", report.timing)):
            written_tables.append(write_atomic(directory / "tables" / f"{model}-{stem}.csv", _csv(rows)))
        if plots:
            written_plots.append(_convergence_plot(model, trials, search.metric_key, directory / "plots"))
        sections.append(report)
    markdown = _markdown(spec, search, sections)
    path = write_atomic(directory / REPORT_MD, markdown)
    summary = "\n\n".join(
        f"{r.name}:\n{format_table(_visible(r.quality))}\n\n{format_table(r.timing)}\n\n{r.paragraph}" for r in sections
    )
    return CompareReport(path, written_tables, written_plots, summary)


# ---- quality at the last epoch ------------------------------------------------------------------


def _table_metrics(study: StudyData) -> list[tuple[str, str]]:
    """(eval set, metric) for every table metric of every evaluation set, in the spec's order."""
    import json

    spec = json.loads((study.directory / "study_spec.json").read_text())
    return [(e["name"], m) for e in spec["trials"][0]["evaluation"] for m in e["table_metrics"]]


def _last_epoch(trials: list[TrialResult]) -> int:
    return min(max((r["epoch"] for r in t.rows), default=0) for t in trials) if trials else 0


def _chosen(study: StudyData, model: str, optimizers: tuple[str, ...]) -> dict[str, list[TrialResult]]:
    """Per optimizer, the confirmation runs of its tuned configuration (its default where the
    search selected the default)."""
    out = {}
    for optimizer in optimizers:
        runs = [t for t in study.trials if (t.model, t.optimizer) == (model, optimizer)]
        tuned = [t for t in runs if t.variant == "tuned"]
        out[optimizer] = tuned or [t for t in runs if t.variant == "default"]
    return out


def _quality_rows(study: StudyData, model: str, optimizers, metrics) -> list[dict]:
    rows = []
    for optimizer in optimizers:
        runs = [t for t in study.trials if (t.model, t.optimizer) == (model, optimizer)]
        has_tuned = any(t.variant == "tuned" for t in runs)
        for variant in ("tuned", "default"):
            group = [t for t in runs if t.variant == (variant if has_tuned else "default")]
            if not group:
                continue
            epoch = _last_epoch(group)
            row = {
                "optimizer": optimizer,
                "config": variant if has_tuned else f"{variant} (= default)" if variant == "tuned" else variant,
                "epoch": epoch,
                "seeds": len(group),
            }
            for eval_set, metric in metrics:
                values = [
                    v for t in group for r in t.rows if r["epoch"] == epoch and (v := metric_value(r, f"{eval_set}/{metric}")) is not None
                ]
                mean, half = mean_ci(values) if values else (math.nan, math.nan)
                row[f"{DISPLAY_NAMES.get(metric, metric)} ({eval_set})"] = _pm(mean, half)
                row[f"_{eval_set}/{metric}"] = (mean, half)
            rows.append(row)
    return rows


def _pm(mean: float, half: float) -> str:
    if math.isnan(mean):
        return "-"
    return f"{mean:.4f}" if math.isnan(half) else f"{mean:.4f} ± {half:.4f}"


# ---- paired tests between tuned optimizers ------------------------------------------------------


def _pairwise_tests(chosen: dict[str, list[TrialResult]], metrics, n_resamples: int) -> list[dict]:
    """Every optimizer pair x metric, per seed and on the query means over the seeds both ran;
    one Holm family per model."""
    family = []
    for a, b in itertools.combinations(chosen, 2):
        runs_a = {t.seed: t for t in chosen[a]}
        runs_b = {t.seed: t for t in chosen[b]}
        seeds = sorted(set(runs_a) & set(runs_b))
        if not seeds:
            continue
        epoch = min(_last_epoch(chosen[a]), _last_epoch(chosen[b]))
        for eval_set, metric in metrics:
            per_seed = {}
            for seed in seeds:
                pair = [per_query_values(r[seed].trial_dir, eval_set, epoch, metric) for r in (runs_a, runs_b)]
                if all(pair) and set(pair[0]) & set(pair[1]):
                    per_seed[seed] = pair
                    family.append(_test(a, b, str(seed), eval_set, metric, *pair, n_resamples))
            if len(per_seed) > 1:
                means = [query_means([p[i] for p in per_seed.values()]) for i in (0, 1)]
                family.append(_test(a, b, "mean", eval_set, metric, *means, n_resamples))
    for key in ("p t-test", "p rand."):
        index = [i for i, row in enumerate(family) if not math.isnan(row[key])]
        for i, p in zip(index, holm([family[i][key] for i in index])):
            family[i][f"{key} (Holm)"] = p
    for row in family:
        t, r = row.get("p t-test (Holm)", math.nan) < ALPHA, row.get("p rand. (Holm)", math.nan) < ALPHA
        row["verdict"] = "significant" if t and r else "one test only" if t or r else "not significant"
    return family


def _test(a: str, b: str, seed: str, eval_set: str, metric: str, values_a: dict, values_b: dict, n_resamples: int) -> dict:
    queries = sorted(set(values_a) & set(values_b))
    xa, xb = [values_a[q] for q in queries], [values_b[q] for q in queries]
    return {
        "a": a,
        "b": b,
        "seed": seed,
        "metric": f"{DISPLAY_NAMES.get(metric, metric)} ({eval_set})",
        "queries": len(queries),
        "mean a": sum(xa) / len(xa),
        "mean b": sum(xb) / len(xb),
        "Δ (b-a)": (sum(xb) - sum(xa)) / len(xa),
        "p t-test": paired_t_test(xb, xa) if len(queries) > 1 else math.nan,
        "p rand.": randomization_test(xb, xa, n_resamples=n_resamples),
        "p t-test (Holm)": math.nan,
        "p rand. (Holm)": math.nan,
    }


# ---- time to target and tuning cost (from the search) -------------------------------------------


def validation_curve(trial: TrialResult, metric_key: str) -> list[tuple[int, float, float]]:
    """(step, training seconds so far, validation value) at every validation of a search trial.
    Seconds inside an epoch are the epoch's seconds pro rata to its steps (only epoch ends carry them)."""
    rows = sorted(trial.rows, key=lambda r: r.get("global_step", 0))
    epoch_ends = [(r["global_step"], r.get("train_seconds") or 0.0) for r in rows if r.get("train_seconds") is not None]
    curve = []
    for row in rows:
        value = metric_value(row, metric_key)
        if value is None:
            continue
        step = row.get("global_step", 0)
        seconds, previous = 0.0, 0
        for end, spent in epoch_ends:
            if step >= end:
                seconds += spent
            else:
                seconds += spent * (step - previous) / max(1, end - previous)
                break
            previous = end
        curve.append((step, seconds, value))
    return curve


def _timing_rows(trials: dict[str, list[TrialResult]], metric_key: str, fraction: float, budget: int) -> list[dict]:
    curves = {o: [validation_curve(t, metric_key) for t in runs] for o, runs in trials.items()}
    values = [v for runs in curves.values() for curve in runs for _, _, v in curve]
    best_found = max(values, default=math.nan)
    target = fraction * best_found
    rows = []
    for optimizer, runs in curves.items():
        best = max(((max(v for _, _, v in c), i) for i, c in enumerate(runs) if c), default=None)
        hit = None
        if best is not None:
            hit = next(((s, sec) for s, sec, v in runs[best[1]] if v >= target), None)
        stopped = sum(1 for t in trials[optimizer] if _stopped_early(t))
        rows.append(
            {
                "optimizer": optimizer,
                "best validation": best[0] if best else math.nan,
                f"steps to {fraction:.0%} of best": hit[0] if hit else "not reached",
                f"train s to {fraction:.0%}": f"{hit[1]:.1f}" if hit else "not reached",
                "search trials": f"{len(trials[optimizer])}/{budget}",
                "stopped early": stopped,
                "search steps": sum(t.steps for t in trials[optimizer]),
                "search train s": f"{sum(r.get('train_seconds') or 0.0 for t in trials[optimizer] for r in t.rows):.1f}",
            }
        )
    return rows


def _stopped_early(trial: TrialResult) -> bool:
    """Stopped by the search's scheduler: ended short of its epochs without an error (study/results.py
    calls such a trial incomplete; after a search has ended, only the scheduler leaves one so)."""
    return trial.status == "incomplete" and max((r["epoch"] for r in trial.rows), default=0) < trial.epochs_planned


def _convergence_plot(model: str, trials: dict[str, list[TrialResult]], metric_key: str, out_dir: Path) -> Path:
    """Best validation value so far against cumulative trial-steps, one line per optimizer."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 4))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for optimizer, runs in trials.items():
        xs, ys, spent, best = [], [], 0, -math.inf
        for trial in runs:  # in Optuna's order (study/search/run.py sorts them)
            spent += trial.steps
            curve = validation_curve(trial, metric_key)
            if curve:
                best = max(best, max(v for _, _, v in curve))
            if best > -math.inf:
                xs.append(spent)
                ys.append(best)
        axes.step(xs, ys, where="post", marker="o", label=optimizer)
    axes.set_xlabel("cumulative training steps over search trials")
    axes.set_ylabel(f"best {metric_key} so far")
    axes.set_title(f"{model}: how fast each search converges")
    axes.legend()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{model}-convergence.png"
    figure.savefig(path, dpi=100, bbox_inches="tight")
    return path


# ---- the paragraph and the Markdown ------------------------------------------------------------


def _winner_first(test: dict) -> tuple[str, str]:
    return (test["b"], test["a"]) if test["Δ (b-a)"] > 0 else (test["a"], test["b"])


def _paragraph(model: str, report: _Model, spec, search, metrics) -> str:
    eval_set, metric = metrics[0]
    key = f"_{eval_set}/{metric}"
    label = f"{DISPLAY_NAMES.get(metric, metric)} on {eval_set}"
    tuned = {r["optimizer"]: r[key] for r in report.quality if not r["config"].startswith("default")}
    default = {r["optimizer"]: r[key] for r in report.quality if r["config"] == "default"}
    kept_default = [r["optimizer"] for r in report.quality if r["config"] == "tuned (= default)"]
    ranked = sorted(tuned.items(), key=lambda item: -item[1][0] if not math.isnan(item[1][0]) else math.inf)
    n_seeds = len(spec.confirm_seeds)
    parts = [
        f"{model}: with {search.num_samples} search trials per optimizer and {n_seeds} confirmation seed"
        f"{'s' if n_seeds > 1 else ''}, the tuned {label} ranks "
        + ", ".join(f"{o} {_pm(*v)}" for o, v in ranked)
        + "."
    ]
    main = [t for t in report.tests if t["metric"] == f"{DISPLAY_NAMES.get(metric, metric)} ({eval_set})"]
    significant = [t for t in report.tests if t["verdict"] == "significant"]
    if not report.tests:
        parts.append("No paired test was possible (no per-query values for two optimizers on the same seeds).")
    elif not significant:
        parts.append(
            f"None of the {len(report.tests)} paired differences between tuned optimizers is significant at {ALPHA} "
            "by both tests after Holm's correction: the evidence does not show that any of them is better here."
        )
    else:
        main_wins = [t for t in main if t["verdict"] == "significant"]
        listed = ", ".join(f"{' over '.join(_winner_first(t))} (seed {t['seed']})" for t in main_wins)
        others = Counter(_winner_first(t) for t in significant if t not in main_wins)
        elsewhere = ", ".join(f"{winner} over {loser} {n}" for (winner, loser), n in others.most_common())
        parts.append(
            f"{len(significant)} of {len(report.tests)} paired differences are significant at {ALPHA} by both tests "
            f"after Holm's correction: on {label} {len(main_wins)} of {len(main)}"
            + (f" ({listed})" if listed else "")
            + (f"; on the other metrics {elsewhere}" if elsewhere else "")
            + "."
        )
    gains = [
        f"{o} {tuned[o][0] - default[o][0]:+.4f}"
        for o in tuned
        if o in default and o not in kept_default and not math.isnan(tuned[o][0]) and not math.isnan(default[o][0])
    ]
    if gains:
        parts.append(f"Tuning changed {label} (tuned minus default mean) by: {', '.join(gains)}.")
    if kept_default:
        parts.append(f"The search found nothing better on validation than the default for: {', '.join(kept_default)}.")
    parts.append(
        f"These are {search.scale}-scale numbers with {n_seeds} seed(s); intervals that overlap and single-seed "
        "results do not rank optimizers, and the ranking may change at another scale or budget."
    )
    return " ".join(parts)


def _markdown(spec, search, sections: list[_Model]) -> str:
    lines = [
        f"# Optimizer comparison {spec.name}: {', '.join(spec.optimizers)}",
        "",
        (
            f"Scale {search.scale}. Search: {search.num_samples} trials per model x optimizer, Optuna TPE seed "
            f"{search.seed} (the same for every optimizer), scheduler {search.scheduler}, selection on "
            f"{search.metric_key}. Confirmation: default and tuned configurations re-trained with seeds "
            f"{', '.join(map(str, spec.confirm_seeds))} and evaluated on the test sets; values at the last "
            "epoch, mean ± 95% t-interval over seeds."
        ),
    ]
    for report in sections:
        lines += [
            "",
            f"## {report.name}",
            "",
            report.paragraph,
            "",
            "### Quality (last epoch)",
            "",
            format_table(_visible(report.quality), markdown=True),
            "",
            f"### Paired tests between tuned optimizers (Holm-corrected per model, alpha {ALPHA})",
            "",
            format_table([_rounded(r) for r in report.tests], markdown=True),
            "",
            f"### Time to target ({spec.target_fraction:.0%} of the best validation value found) and tuning cost",
            "",
            format_table(report.timing, markdown=True),
            "",
            f"![convergence](plots/{report.name}-convergence.png)",
        ]
    return "\n".join(lines) + "\n"


def _visible(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]


def _rounded(row: dict) -> dict:
    return {k: (f"{v:.4f}" if isinstance(v, float) and "p " not in k else f"{v:.3g}" if isinstance(v, float) else v) for k, v in row.items()}


def _csv(rows: list[dict]) -> str:
    import csv
    import io

    rows = _visible(rows)
    if not rows:
        return ""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()
