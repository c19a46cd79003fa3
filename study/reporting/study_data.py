"""A study directory as the report sees it: its trials (study/results.py), scale and evaluation sets."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from study import results
from study.reporting.thesis_numbers import DEV, TEST


@dataclass(frozen=True)
class StudyData:
    directory: Path
    name: str
    scale: str
    eval_sets: tuple[str, ...]  # in the spec's order: the first ranks trials (the TREC DL role)
    trials: tuple[results.TrialResult, ...]
    # Each evaluation set's table metrics as the spec names them (empty where the spec is unknown).
    table_metrics: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def eval_set(self, role: str) -> str:
        """The evaluation set playing a thesis role: test = the first set, dev = the second (or the first)."""
        if role == TEST or len(self.eval_sets) == 1:
            return self.eval_sets[0]
        if role == DEV:
            return self.eval_sets[1]
        raise ValueError(f"unknown evaluation-set role {role!r}; expected {TEST!r} or {DEV!r}")

    @property
    def seeds(self) -> list[int]:
        return sorted({t.seed for t in self.trials})

    @property
    def models(self) -> list[str]:
        return list(dict.fromkeys(t.model for t in self.trials))


def load_study(directory: str | Path) -> StudyData:
    directory = Path(directory).expanduser().resolve()
    spec_path = directory / "study_spec.json"
    params = sorted(directory.glob("*/params.json"))
    if not directory.is_dir() or not (spec_path.exists() or params):
        raise ValueError(
            f"expects a study directory (holding study_spec.json or <trial>/params.json), but {directory} "
            "holds neither; pass the directory `python -m study.run` printed"
        )
    if spec_path.exists():
        spec = json.loads(spec_path.read_text())
        name, scale, first_trial = spec["name"], spec.get("scale", "full"), spec["trials"][0]
    else:  # a study whose driver never wrote its spec: read the first trial's
        first_trial = json.loads(params[0].read_text())["trial"]
        name, scale = directory.name, first_trial.get("scale", "full")
    eval_sets = tuple(e["name"] for e in first_trial["evaluation"])
    table_metrics = {e["name"]: tuple(e["table_metrics"]) for e in first_trial["evaluation"] if e.get("table_metrics")}
    return StudyData(directory, name, scale, eval_sets, tuple(results.load_trials(directory)), table_metrics)


def metric_value(row: dict, key: str) -> float | None:
    """A finite number from a result row, or None (missing, NaN or not a number)."""
    value = row.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)
