"""Efficiency per trial: training throughput, wall time, peak memory and optimizer-state memory.

Lion keeps one moment buffer per parameter and AdamW two, so Lion's optimizer state should be half
of AdamW's; the thesis claims 50% less optimizer memory but never measured it. Here it is measured
(`optimizer_state_bytes`, the bytes of every state tensor after the last step), along with the
peak memory of the whole trial process (CUDA-allocated on a GPU; RSS on a CPU, which also counts
Python, libraries and data, so it says far less about the optimizer).

Beside them, the thesis's own figures for its three models: the GPU memory §4.4.1 says training
each needs (MiniLM 8 GB, GTE 16 GB, ModernBERT 24 GB) and the parameter counts of §4.1.2 (33M,
305M, 149M), with the count of the model the trial loaded (`model_parameters`). Measured peak /
§4.4.1 is shown only where both are about the same thing: a trial of the thesis's own model
(not a stand-in) whose peak was measured on a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

from study.reporting.study_data import StudyData, metric_value
from study.reporting.tables import Grid
from study.results import TrialResult

MIB = 1024 * 1024
GIB = 1024 * MIB


@dataclass(frozen=True)
class Efficiency:
    trial: str
    model: str
    optimizer: str
    seed: int
    status: str
    epochs: int  # the last epoch evaluated
    pairs_per_s: float | None  # training pairs over training seconds, all epochs
    train_seconds: float | None
    wall_seconds: float | None  # Tune's time_total_s: loading, training and evaluation
    peak_memory_bytes: int | None
    peak_memory_source: str
    optimizer_state_bytes: int | None
    parameters: int | None  # of the model the trial loaded
    thesis_parameters: int | None  # §4.1.2, for the thesis model the trial is (or stands in for)
    thesis_memory_gb: int | None  # §4.4.1
    peak_vs_thesis: float | None  # peak / §4.4.1 (GB read as GiB): the thesis's own model on a GPU only


def trial_efficiency(trial: TrialResult) -> Efficiency:
    trained = [r for r in trial.rows if r.get("epoch", 0) > 0]
    seconds = [metric_value(r, "train_seconds") for r in trained]
    rates = [metric_value(r, "train_pairs_per_s") for r in trained]
    pairs = [s * p for s, p in zip(seconds, rates) if s is not None and p is not None]
    total_seconds = sum(s for s in seconds if s is not None) if trained else None
    peaks = [v for r in trial.rows if (v := metric_value(r, "peak_memory_bytes")) is not None]
    last = trial.rows[-1] if trial.rows else {}
    state = metric_value(last, "optimizer_state_bytes") if trained else None
    thesis_model = _thesis_model(trial.model)
    parameters = metric_value(last, "model_parameters")
    peak = int(max(peaks)) if peaks else None
    source = str(last.get("peak_memory_source", ""))
    comparable = thesis_model is not None and not trial.stand_in_for and source == "cuda" and peak is not None
    return Efficiency(
        trial=trial.name,
        model=trial.model,
        optimizer=trial.optimizer,
        seed=trial.seed,
        status=trial.status,
        epochs=int(last.get("epoch", 0)),
        pairs_per_s=sum(pairs) / total_seconds if pairs and total_seconds else None,
        train_seconds=total_seconds,
        wall_seconds=metric_value(last, "time_total_s"),
        peak_memory_bytes=peak,
        peak_memory_source=source,
        optimizer_state_bytes=int(state) if state is not None else None,
        parameters=int(parameters) if parameters is not None else None,
        thesis_parameters=thesis_model.parameters if thesis_model else None,
        thesis_memory_gb=thesis_model.memory_gb if thesis_model else None,
        peak_vs_thesis=peak / (thesis_model.memory_gb * GIB) if comparable else None,
    )


def _thesis_model(key: str):
    from search_spaces.thesis import MODELS

    return MODELS.get(key)


def efficiency_grid(study: StudyData) -> Grid:
    grid = Grid(
        "Efficiency",
        "Per trial: training throughput, time, peak memory and optimizer-state memory",
        [
            "Trial",
            "Seed",
            "Status",
            "Epochs",
            "Train pairs/s",
            "Train time (s)",
            "Wall time (s)",
            "Peak memory (MiB)",
            "Thesis GPU memory (§4.4.1)",
            "Peak / thesis",
            "Optimizer state (MiB)",
            "Parameters (M)",
            "Thesis parameters (§4.1.2, M)",
        ],
        notes=[
            "Peak memory: CUDA-allocated on a GPU, process RSS on a CPU (source in the CSV).",
            (
                "Thesis GPU memory and parameters: the figures the thesis gives for the model a trial is or stands "
                "in for (MiniLM 8 GB / 33M, GTE 16 GB / 305M, ModernBERT 24 GB / 149M). Peak / thesis (GB read as "
                "GiB) only for the thesis's own model measured on a GPU; a stand-in or a CPU run is not comparable."
            ),
        ],
    )
    for e in (trial_efficiency(t) for t in study.trials):
        grid.rows.append(
            [
                e.trial,
                str(e.seed),
                e.status,
                str(e.epochs),
                _fmt(e.pairs_per_s, 1),
                _fmt(e.train_seconds, 1),
                _fmt(e.wall_seconds, 1),
                _mib(e.peak_memory_bytes),
                "-" if e.thesis_memory_gb is None else f"{e.thesis_memory_gb} GB",
                _fmt(e.peak_vs_thesis, 2),
                _mib(e.optimizer_state_bytes),
                _fmt(None if e.parameters is None else e.parameters / 1e6, 1),
                _fmt(None if e.thesis_parameters is None else e.thesis_parameters / 1e6, 0),
            ]
        )
        grid.csv_rows.append(vars(e).copy())
    return grid


def optimizer_memory_lines(study: StudyData) -> list[str]:
    """Per model, Lion's optimizer state and peak memory as a fraction of AdamW's."""
    lines = []
    for model in study.models:
        by_optimizer: dict[str, list[Efficiency]] = {}
        for trial in study.trials:
            if trial.model == model:
                by_optimizer.setdefault(trial.optimizer, []).append(trial_efficiency(trial))
        ratios = []
        for label, field in (("optimizer state", "optimizer_state_bytes"), ("peak memory", "peak_memory_bytes")):
            lion, adamw = (_mean(by_optimizer.get(o, []), field) for o in ("lion", "adamw"))
            if lion is not None and adamw:
                ratios.append(f"{label} {lion / MIB:.1f} / {adamw / MIB:.1f} MiB = {lion / adamw:.2f}")
        if ratios:
            lines.append(f"{model}: Lion / AdamW {'; '.join(ratios)}")
    return lines


def thesis_memory_lines(study: StudyData) -> list[str]:
    """Per thesis model, the largest peak measured on a GPU beside §4.4.1's figure, or why there is none."""
    lines = []
    for model in study.models:
        rows = [trial_efficiency(t) for t in study.trials if t.model == model]
        measured = [e for e in rows if e.peak_vs_thesis is not None]
        thesis = next((e.thesis_memory_gb for e in rows if e.thesis_memory_gb is not None), None)
        if thesis is None:
            continue
        if measured:
            top = max(measured, key=lambda e: e.peak_memory_bytes)
            lines.append(
                f"{model}: peak {top.peak_memory_bytes / GIB:.1f} GiB measured ({top.trial}) vs {thesis} GB in "
                f"§4.4.1 = {top.peak_vs_thesis:.2f}"
            )
        else:
            lines.append(
                f"{model}: §4.4.1 gives {thesis} GB; not compared here (a stand-in model or a CPU run: "
                "the thesis's model on a GPU gives the number)"
            )
    return lines


def _mean(rows: list[Efficiency], field: str) -> float | None:
    values = [getattr(r, field) for r in rows if getattr(r, field) is not None]
    return sum(values) / len(values) if values else None


def _fmt(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _mib(value: int | None) -> str:
    return "-" if value is None else f"{value / MIB:.1f}"
