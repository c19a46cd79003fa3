"""What a search writes: the best configurations, every trial as CSV, importances and plots.

Everything is read back from the study directory and the Optuna storage, so the report of a
resumed search covers the trials of every run.
"""

from __future__ import annotations

import csv
import io
import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from search_spaces.optimizers import default_label
from search_spaces.optuna_spaces import HYPERPARAMETERS
from study import results
from study.results import write_atomic

if TYPE_CHECKING:
    import optuna

    from study.search.spec import SearchSpec, SearchTrial

TRIALS_CSV = "search_trials.csv"
BEST_JSON = "best_configs.json"
BEST_MD = "best_configs.md"
IMPORTANCES_CSV = "importances.csv"
PLOTS_DIR = "plots"


def write_outputs(
    spec: SearchSpec,
    directory: Path,
    pairs: list[dict],
    trials: list[SearchTrial],
    studies: dict[str, optuna.Study],
    notes: list[str],
) -> dict[str, Path]:
    importances = {name: param_importances(study) for name, study in studies.items()}
    for name, values in importances.items():
        if isinstance(values, str):
            notes.append(f"{name}: no hyperparameter importances ({values})")
    paths = {
        "best": write_atomic(directory / BEST_JSON, json.dumps(_best_json(spec, pairs, notes), indent=1)),
        "best_table": write_atomic(directory / BEST_MD, best_markdown(spec, pairs, notes)),
        "trials": write_atomic(directory / TRIALS_CSV, _csv(trial_rows(spec, trials))),
        "importances": write_atomic(directory / IMPORTANCES_CSV, _csv(_importance_rows(importances, studies))),
    }
    for name, study in studies.items():
        paths |= write_plots(study, directory / PLOTS_DIR, prefix=name, target=f"{spec.metric} on {spec.validation_set}")
    return paths


# ---- tables -------------------------------------------------------------------------------------


def result_columns(spec: SearchSpec) -> list[results.Column]:
    validation = results.Column(spec.validation_set, spec.metric, f"{spec.metric} (validation)")
    return [validation, *results.table_columns([e.model_dump() for e in spec.test_sets])]


def best_rows(spec: SearchSpec, pairs: list[dict]) -> list[dict]:
    """Per pair: the starting point (the thesis's settings, or the optimizer's default where the thesis
    has none) and the selected configuration, on validation and test sets."""
    columns = result_columns(spec)
    rows = []
    for pair in pairs:
        for role in ("thesis", "selected"):
            entry = pair.get(role)
            if entry is None:
                continue
            metrics = entry["validation"] | entry["test"]
            label = default_label(pair["optimizer"]) if entry["is_thesis"] else f"trial {entry['optuna_trial']}"
            rows.append(
                {
                    "Model": pair["model"],
                    "Optimizer": pair["optimizer"],
                    "Config": label if role == "thesis" else f"best: {label}",
                    "Epoch": entry["epoch"],
                    **{c.header: metrics.get(c.key) for c in columns},
                }
            )
    return rows


def hyperparameter_rows(pairs: list[dict]) -> list[dict]:
    rows = []
    for pair in pairs:
        for role in ("thesis", "selected"):
            entry = pair.get(role)
            if entry is not None:
                config = default_label(pair["optimizer"]) if role == "thesis" else f"best: trial {entry['optuna_trial']}"
                params = {k: f"{v:.3g}" if isinstance(v, float) else v for k, v in entry["params"].items()}
                rows.append({"Model": pair["model"], "Optimizer": pair["optimizer"], "Config": config, **params})
    # optimizers search different hyperparameters: one column each, "-" where a row has none
    columns = list(dict.fromkeys(k for row in rows for k in row))
    return [{k: row.get(k, "-") for k in columns} for row in rows]


def best_markdown(spec: SearchSpec, pairs: list[dict], notes: list[str]) -> str:
    test_sets = ", ".join(e.name for e in spec.test_sets)
    lines = [
        f"# Search {spec.name}",
        "",
        f"Configurations selected on **{spec.validation_set}** ({spec.metric}, best epoch of each trial); "
        f"reported on **{test_sets}**. {spec.num_samples} trials per model x optimizer, scheduler "
        f"{spec.scheduler}, seed {spec.seed}.",
        "",
        results.format_table(best_rows(spec, pairs), markdown=True),
        "",
        results.format_table(hyperparameter_rows(pairs), markdown=True),
    ]
    lines += [""] + [f"- {note}" for note in notes] if notes else []
    return "\n".join(lines) + "\n"


def trial_rows(spec: SearchSpec, trials: list[SearchTrial]) -> list[dict]:
    """One row per trial of every pair: its hyperparameters, how it ended and its validation values."""
    key = spec.metric_key
    rows = []
    for trial in trials:
        result = trial.result
        last = result.rows[-1] if result.rows else {}
        best = trial.best_epoch(key)
        status = result.status
        if status == "incomplete" and result.rows and spec.scheduler == "asha":
            status = "stopped by ASHA"
        rows.append(
            {
                "pair": trial.pair,
                "optuna_trial": trial.optuna_trial,
                "thesis": trial.is_thesis,
                "status": status,
                "epochs": last.get("epoch", ""),
                "steps": result.steps,
                f"{key} (last epoch)": last.get(key, ""),
                f"{key} (best epoch)": best[0] if best else "",
                "best_epoch": best[1] if best else "",
                **trial.params,
                "error": result.error,
                "trial_dir": Path(result.trial_dir).name,
            }
        )
    return rows


# ---- importances and plots ----------------------------------------------------------------------


def param_importances(study: optuna.Study) -> dict[str, float] | str:
    """optuna.importance's default evaluator over the completed trials, or why there are none."""
    import optuna

    completed = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(completed) < 2:
        return f"{len(completed)} completed trial(s); importances need at least 2"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return optuna.importance.get_param_importances(study)
    except (ValueError, RuntimeError) as err:
        return str(err)


def _importance_rows(importances: dict[str, dict | str], studies: dict[str, optuna.Study]) -> list[dict]:
    import optuna

    rows = []
    for name, values in importances.items():
        if isinstance(values, str):
            continue
        completed = len(studies[name].get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))
        for rank, (param, importance) in enumerate(values.items(), start=1):
            rows.append(
                {"pair": name, "rank": rank, "hyperparameter": param, "importance": importance, "completed_trials": completed}
            )
    return rows


def _searched(study: optuna.Study) -> list[str]:
    """The hyperparameters this study's optimizer searches, in the usual order."""
    seen = {name for trial in study.get_trials(deepcopy=False) for name in trial.params}
    return [name for name in HYPERPARAMETERS if name in seen]


def write_plots(study: optuna.Study, directory: Path, *, prefix: str, target: str = "objective") -> dict[str, Path]:
    """Optimization history and parallel coordinates as PNG files (matplotlib, no display needed).
    The objective is named on the axes, trials are counted in whole numbers, and the parallel
    coordinates use a colour map with no near-white end (optuna's Blues hides the worst trials)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection
    from matplotlib.ticker import MaxNLocator
    from optuna.visualization import matplotlib as plots

    directory.mkdir(parents=True, exist_ok=True)
    written = {}
    for kind, plot in (
        ("optimization_history", lambda s: plots.plot_optimization_history(s, target_name=target)),
        (
            "parallel_coordinate",
            lambda s: plots.plot_parallel_coordinate(s, params=_searched(s), target_name=target),
        ),
    ):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # optuna marks its matplotlib plots experimental
            axes = plot(study)
        axes.set_title(f"{prefix}: {axes.get_title()}")
        if kind == "optimization_history":
            axes.xaxis.set_major_locator(MaxNLocator(integer=True))
            axes.set_xlabel("trial (Optuna's number)")
        else:  # parallel coordinates: no grid lines across the trials' lines, room for six axes
            for collection in axes.collections:
                if isinstance(collection, LineCollection):
                    collection.set_cmap("viridis")
            for ax in axes.figure.axes:
                ax.grid(False)
            axes.figure.set_size_inches(11, 5)
        path = directory / f"{prefix}.{kind}.png"
        axes.figure.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(axes.figure)
        written[f"plot {prefix} {kind.replace('_', ' ')}"] = path
    return written


# ---- files --------------------------------------------------------------------------------------


def _best_json(spec: SearchSpec, pairs: list[dict], notes: list[str]) -> dict[str, Any]:
    return {
        "search": spec.name,
        "selected_on": {"set": spec.validation_set, "metric": spec.metric, "key": spec.metric_key},
        "reported_on": [e.name for e in spec.test_sets],
        "num_samples": spec.num_samples,
        "scheduler": spec.scheduler,
        "seed": spec.seed,
        "pairs": pairs,
        "notes": notes,
    }


def _csv(rows: list[dict]) -> str:
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=keys)
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
