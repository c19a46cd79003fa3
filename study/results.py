"""Read a study directory back into results: one table row per trial x evaluated epoch.

Everything is read from the files Tune writes in each trial directory (params.json, result.json,
error.txt), so the same code summarises a finished study, a running one, or one whose driver died.
Outputs (results.csv, results.json, summary.md) are written atomically.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from eval.measures import DISPLAY_NAMES, FIRST_STAGE

# How the first stage's row is labelled: the candidates in their own order (BM25, or the given run).
FIRST_STAGE_LABEL = "first stage"
_FIRST_STAGE_PREFIX = f"{FIRST_STAGE}/"

# The thesis's Table 5.1 column order; other table metrics follow in declaration order.
_THESIS_ORDER = ("nDCG@10", "AP", "RR@10", "R@10", "R-Prec", "P@10")


@dataclass
class TrialResult:
    name: str
    model: str
    optimizer: str
    checkpoint: str
    stand_in_for: str
    epochs_planned: int
    status: str  # "finished" | "failed" | "incomplete"
    error: str
    trial_dir: str
    rows: list[dict] = field(default_factory=list)  # reported metrics, one dict per epoch
    steps: int = 0  # optimizer steps the trial took (mid-epoch reports counted): what it cost
    seed: int = 12
    variant: str = ""  # the trial's tag without its seed part: trials that differ only in seed share it


@dataclass(frozen=True)
class Column:
    eval_set: str
    metric: str
    header: str

    @property
    def key(self) -> str:
        return f"{self.eval_set}/{self.metric}"


def load_trials(study_dir: Path) -> list[TrialResult]:
    trials = []
    for params_path in sorted(Path(study_dir).glob("*/params.json")):
        trial_dir = params_path.parent
        spec = json.loads(params_path.read_text())["trial"]
        by_epoch: dict[int, dict] = {}
        steps = 0
        result_path = trial_dir / "result.json"
        if result_path.exists():
            for line in result_path.read_text().splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue  # blank, or cut short by a killed driver (the resumed trial reports again)
                steps = max(steps, int(row.get("global_step", 0)))
                if row.get("mid_epoch"):
                    continue  # a checkpoint or evaluation inside an epoch: not an epoch's row
                by_epoch[int(row["epoch"])] = row  # a retried epoch: keep the latest report
        rows = [by_epoch[e] for e in sorted(by_epoch)]
        planned = int(spec.get("training", {}).get("epochs", 3))
        error = _error_message(trial_dir)
        done = bool(rows) and rows[-1]["epoch"] >= planned
        status = "finished" if done else ("failed" if error else "incomplete")
        tag = spec.get("tag") or ""
        seed = int(spec.get("training", {}).get("seed", 12))
        trials.append(
            TrialResult(
                name=f"{spec['model']['name']}-{spec['optimizer']['name']}" + (f"-{tag}" if tag else ""),
                model=spec["model"]["name"],
                optimizer=spec["optimizer"]["name"],
                checkpoint=spec["model"]["checkpoint"],
                stand_in_for=spec["model"].get("stand_in_for") or "",
                epochs_planned=planned,
                status=status,
                error=error if not done else "",
                trial_dir=str(trial_dir),
                rows=rows,
                steps=steps,
                seed=seed,
                variant=re.sub(rf"(^|_)s{seed}$", "", tag),
            )
        )
    return sorted(trials, key=lambda t: (t.model, t.optimizer, t.variant, t.seed))


def table_columns(evaluation: list[dict]) -> list[Column]:
    """Summary-table columns from the evaluation sets' `table_metrics` (thesis order first)."""
    wanted = [(e["name"], m) for e in evaluation for m in e.get("table_metrics", ())]
    repeated = {m for _, m in wanted if sum(1 for _, other in wanted if other == m) > 1}
    rank = {m: i for i, m in enumerate(_THESIS_ORDER)}
    wanted.sort(key=lambda item: rank.get(item[1], len(rank)))
    return [
        Column(s, m, DISPLAY_NAMES.get(m, m) + (f" ({s})" if m in repeated else "")) for s, m in wanted
    ]


def first_stage(trials: list[TrialResult]) -> dict[str, float]:
    """The first stage's metrics, keyed `<set>/<metric>` like a trial's; {} before any trial reported.

    Every trial scores the same candidates the same way beside its epoch 0; the first such row is taken.
    """
    for trial in trials:
        for row in trial.rows:
            found = {k.removeprefix(_FIRST_STAGE_PREFIX): v for k, v in row.items() if k.startswith(_FIRST_STAGE_PREFIX)}
            if found:
                return found
    return {}


def summary_rows(trials: list[TrialResult], columns: list[Column]) -> list[dict]:
    rows = []
    several_seeds = len({t.seed for t in trials}) > 1
    baseline = first_stage(trials)
    if baseline:
        rows.append(
            {
                "Model": FIRST_STAGE_LABEL,
                "Optimizer": "-",
                **({"Seed": "-"} if several_seeds else {}),
                "Epoch": "-",
                **{c.header: baseline.get(c.key) for c in columns},
                "Status": "baseline",
            }
        )
    for trial in trials:
        label = trial.model + ("*" if trial.stand_in_for else "")
        seed = {"Seed": trial.seed} if several_seeds else {}
        status = "ok" if trial.status == "finished" else f"{trial.status}: {trial.error}".rstrip(": ")
        for row in trial.rows or [{}]:
            rows.append(
                {
                    "Model": label,
                    "Optimizer": trial.optimizer,
                    **seed,
                    "Epoch": row.get("epoch", "-"),
                    **{c.header: row.get(c.key) for c in columns},
                    "Status": status,
                }
            )
    return rows


def format_table(rows: list[dict], *, markdown: bool = False) -> str:
    if not rows:
        return "(no results)"
    headers = list(rows[0])
    cells = [[_cell(r[h]) for h in headers] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    sep = " | " if markdown else "  "

    def line(values: list[str]) -> str:
        text = sep.join(v.ljust(w) for v, w in zip(values, widths))
        return f"| {text} |" if markdown else text.rstrip()

    out = [line(headers)]
    out.append(line(["-" * w for w in widths]) if markdown else line(["-" * w for w in widths]))
    out += [line(c) for c in cells]
    return "\n".join(out)


def stand_in_notes(trials: list[TrialResult]) -> list[str]:
    seen = {(t.model, t.checkpoint, t.stand_in_for) for t in trials if t.stand_in_for}
    return [f"* {m} is a stand-in: {ckpt} in place of {real}" for m, ckpt, real in sorted(seen)]


def column_sources(columns: list[Column]) -> str:
    """'Columns: nDCG@10, MAP on set-a; MRR@10 on set-b.' (epoch 0 = before training)."""
    by_set: dict[str, list[str]] = {}
    for column in columns:
        by_set.setdefault(column.eval_set, []).append(column.header)
    sources = "; ".join(f"{', '.join(headers)} on {eval_set}" for eval_set, headers in by_set.items())
    return f"Columns: {sources}. Epoch 0 is the model before fine-tuning."


def write_results(study_dir: Path, trials: list[TrialResult], columns: list[Column]) -> dict[str, Path]:
    """results.csv (every metric, every row), results.json (trials with status), summary.md."""
    study_dir = Path(study_dir)
    all_rows = [{"trial": t.name, "status": t.status, **row} for t in trials for row in t.rows]
    keys: list[str] = []
    for row in all_rows:
        keys += [k for k in row if k not in keys and not isinstance(row[k], (dict, list))]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=keys, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(all_rows)
    summary = summary_rows(trials, columns)
    notes = stand_in_notes(trials)
    markdown = (
        column_sources(columns) + "\n\n" + format_table(summary, markdown=True) + ("\n\n" + "\n".join(notes) if notes else "") + "\n"
    )
    paths = {
        "csv": write_atomic(study_dir / "results.csv", buffer.getvalue()),
        "json": write_atomic(study_dir / "results.json", json.dumps([asdict(t) for t in trials], indent=1)),
        "summary": write_atomic(study_dir / "summary.md", markdown),
    }
    return paths


def _error_message(trial_dir: Path) -> str:
    path = trial_dir / "error.txt"
    if not path.exists():
        return ""
    lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    if not lines:
        return "failed"
    # Tune's error.txt ends with the exception line, "package.module.ErrorType: message": keep
    # "ErrorType: message".
    kind, sep, message = lines[-1].partition(": ")
    return f"{kind.rsplit('.', 1)[-1]}{sep}{message}"


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def write_atomic(path: Path, text: str) -> Path:
    """Write `text` to `path` through a temporary file and a rename: a reader (a report of a running
    study, a killed driver's leftovers) never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path
