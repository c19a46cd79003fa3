"""Efficiency per trial: training throughput, wall time, peak memory and optimizer-state memory.

Lion keeps one moment buffer per parameter and AdamW two, so Lion's optimizer state should be half
of AdamW's; the thesis claims 50% less optimizer memory but never measured it. Here it is measured
(`optimizer_state_bytes`, the bytes of every state tensor after the last step), along with the
peak memory of the whole trial process (CUDA-allocated on a GPU; RSS on a CPU, which also counts
Python, libraries and data, so it says far less about the optimizer).
"""

from __future__ import annotations

from dataclasses import dataclass

from study.reporting.study_data import StudyData, metric_value
from study.reporting.tables import Grid
from study.results import TrialResult

MIB = 1024 * 1024


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


def trial_efficiency(trial: TrialResult) -> Efficiency:
    trained = [r for r in trial.rows if r.get("epoch", 0) > 0]
    seconds = [metric_value(r, "train_seconds") for r in trained]
    rates = [metric_value(r, "train_pairs_per_s") for r in trained]
    pairs = [s * p for s, p in zip(seconds, rates) if s is not None and p is not None]
    total_seconds = sum(s for s in seconds if s is not None) if trained else None
    peaks = [v for r in trial.rows if (v := metric_value(r, "peak_memory_bytes")) is not None]
    last = trial.rows[-1] if trial.rows else {}
    state = metric_value(last, "optimizer_state_bytes") if trained else None
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
        peak_memory_bytes=int(max(peaks)) if peaks else None,
        peak_memory_source=str(last.get("peak_memory_source", "")),
        optimizer_state_bytes=int(state) if state is not None else None,
    )


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
            "Optimizer state (MiB)",
        ],
        notes=["Peak memory: CUDA-allocated on a GPU, process RSS on a CPU (source in the CSV)."],
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
                _mib(e.optimizer_state_bytes),
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


def _mean(rows: list[Efficiency], field: str) -> float | None:
    values = [getattr(r, field) for r in rows if getattr(r, field) is not None]
    return sum(values) / len(values) if values else None


def _fmt(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _mib(value: int | None) -> str:
    return "-" if value is None else f"{value / MIB:.1f}"
