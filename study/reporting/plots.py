"""Training-dynamics plots (PNG): the thesis's Figures 5.1-5.10 and every metric per epoch.

Per model, Lion vs AdamW:
- `<model>-training.png`: training loss, evaluation loss (the BCE of the held-out training pairs,
  trainables/heldout.py), learning rate and gradient norm over training steps (from each trial's
  steps.jsonl and the per-epoch result rows), one line per seed;
- `<model>-metrics-<set>.png`: every metric of one evaluation set that reranking can move, per
  epoch (mean over seeds, with the 95% interval as error bars when there are several, clipped to
  [0, 1] where it leaves it; the legend gives the number of seeds n).
matplotlib's object API with the Agg canvas: no pyplot, no display, no global backend switch.
"""

from __future__ import annotations

import math
from pathlib import Path

from eval.measures import DISPLAY_NAMES, METRICS
from study.reporting.dynamics import heldout_curve, read_steps
from study.reporting.stats import mean_ci
from study.reporting.cutoffs import fixed_metrics
from study.reporting.study_data import StudyData, metric_value
from study.results import TrialResult

COLORS = {"adamw": "tab:blue", "lion": "tab:orange"}  # colour = optimizer, marker = seed
SEED_MARKERS = ("o", "s", "^", "D", "v", "P")


def write_plots(study: StudyData, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for model in study.models:
        trials = [t for t in study.trials if t.model == model]
        written.append(_save(_training_figure(model, trials), out_dir / f"{model}-training.png"))
        for eval_set in study.eval_sets:
            fixed = fixed_metrics(study, eval_set, METRICS)  # flat lines that say nothing: left out, named
            shown = [m for m in METRICS if m not in fixed]
            figure = _metrics_figure(model, trials, eval_set, shown, left_out=fixed)
            written.append(_save(figure, out_dir / f"{model}-metrics-{eval_set}.png"))
    return written


def _training_figure(model: str, trials: list[TrialResult]):
    from matplotlib.figure import Figure

    figure = Figure(figsize=(12, 8))
    # fixed margins: a constrained layout draws every figure twice, doubling the time to save it
    figure.subplots_adjust(left=0.07, right=0.98, bottom=0.07, top=0.91, wspace=0.22, hspace=0.3)
    axes = figure.subplots(2, 2)
    panels = {
        "loss": (axes[0][0], "Training loss (cf. Figs 5.2, 5.6, 5.9)", "BCE loss"),
        "eval_loss": (axes[0][1], "Evaluation loss, held-out pairs (cf. Figs 5.1, 5.5, 5.8)", "BCE loss"),
        "lr": (axes[1][0], "Learning rate (cf. Fig 5.3)", "learning rate"),
        "grad_norm": (axes[1][1], "Gradient norm (cf. Figs 5.4, 5.7, 5.10)", "L2 norm before clipping"),
    }
    seeds = sorted({t.seed for t in trials})
    for trial in trials:
        label = trial.optimizer + (f" s{trial.seed}" if len(seeds) > 1 else "")
        style = {
            "color": COLORS.get(trial.optimizer),
            "marker": SEED_MARKERS[seeds.index(trial.seed) % len(SEED_MARKERS)],
        }
        steps = read_steps(trial)
        for key in ("loss", "lr", "grad_norm"):
            points = [(s["step"], s[key]) for s in steps if _finite(s.get(key))]
            if points:
                panels[key][0].plot(*zip(*points), label=label, markersize=4, **style)
        points = heldout_curve(trial, steps)
        if points:
            panels["eval_loss"][0].plot(*zip(*points), label=label, markersize=4, **style)
    for ax, title, ylabel in panels.values():
        ax.set_title(title)
        ax.set_xlabel("training step")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if ax.has_data():
            ax.legend(fontsize="small")
        else:
            ax.text(0.5, 0.5, "no data yet", ha="center", va="center", transform=ax.transAxes)
    panels["lr"][0].ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
    figure.suptitle(f"{_label(model, trials)}: Lion vs AdamW training dynamics")
    return figure


def _metrics_figure(model: str, trials: list[TrialResult], eval_set: str, metrics: list[str], *, left_out: list[str]):
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    columns = 5
    rows = -(-len(metrics) // columns)
    figure = Figure(figsize=(3.2 * columns, 2.6 * rows))
    figure.subplots_adjust(left=0.045, right=0.99, bottom=0.11, top=0.9, wspace=0.3, hspace=0.55)
    flat = [ax for row in figure.subplots(rows, columns, squeeze=False) for ax in row]
    for ax in flat[len(metrics) :]:
        ax.set_visible(False)
    clipped = False
    for ax, metric in zip(flat, metrics):
        key = f"{eval_set}/{metric}"
        for optimizer in dict.fromkeys(t.optimizer for t in trials):
            mine = [t for t in trials if t.optimizer == optimizer]
            epochs = sorted({row["epoch"] for t in mine for row in t.rows})
            points = []
            for epoch in epochs:
                values = [
                    v for t in mine for r in t.rows if r["epoch"] == epoch and (v := metric_value(r, key)) is not None
                ]
                if values:
                    mean, half = mean_ci(values)
                    half = 0.0 if math.isnan(half) else half
                    # every metric lies in [0, 1]: a t-interval reaching past it is cut there (and said so)
                    low, high = min(half, mean), min(half, 1.0 - mean)
                    clipped |= (low, high) != (half, half)
                    points.append((epoch, mean, low, high, len(values)))
            if points:
                x, y, low, high, n = zip(*points)
                label = f"{optimizer} (n={max(n)} seed{'s' if max(n) > 1 else ''})"
                ax.errorbar(x, y, yerr=[low, high], color=COLORS.get(optimizer), marker="o", capsize=3, label=label)
        display = DISPLAY_NAMES.get(metric, metric)
        ax.set_title(display)
        ax.set_ylabel(display)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    if flat[0].has_data():
        flat[0].legend(fontsize="small")
    figure.suptitle(f"{_label(model, trials)}: every metric on {eval_set} per epoch (epoch 0 = before training)")
    notes = []
    if clipped:
        notes.append("95% intervals clipped to [0, 1]")
    if left_out:
        notes.append(f"left out, as reranking cannot move them on this set: {', '.join(left_out)}")
    if notes:
        figure.text(0.5, 0.01, "; ".join(notes), ha="center", fontsize="small")
    return figure


def _label(model: str, trials: list[TrialResult]) -> str:
    stand_in = next((t for t in trials if t.stand_in_for), None)
    return f"{model} (stand-in {stand_in.checkpoint} for {stand_in.stand_in_for})" if stand_in else model


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _save(figure, path: Path) -> Path:
    tmp = path.with_name(path.stem + ".tmp.png")
    figure.savefig(tmp, dpi=100)
    tmp.replace(path)
    return path
