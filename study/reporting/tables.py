"""The thesis's tables filled with this study's numbers, as Markdown, CSV and LaTeX.

One row per model x optimizer x epoch (epoch 0 = before training), after a first row for the first
stage: the same candidates in their own order (BM25, or the given run), scored with the same
measures, so every reranker stands beside what it had to beat. With several seeds a cell is the
mean over seeds +- the half-width of its 95% t-interval; the best mean per metric is marked (bold)
unless several rows share it or the metric cannot move on its set.
On the full scale, `comparison_grid` sets each number beside the thesis's with the difference.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field

from eval.measures import DISPLAY_NAMES
from study.reporting.study_data import StudyData, metric_value
from study.reporting.thesis_numbers import TableShape, lookup
from study import results
from study.results import format_table
from study.reporting.stats import mean_ci


@dataclass(frozen=True)
class Cell:
    mean: float
    half_width: float  # NaN with a single seed
    n: int  # seeds that reached this epoch


@dataclass(frozen=True)
class Row:
    model: str
    optimizer: str
    variant: str  # a tag beyond the seed (a YAML study's own variants); "" in the thesis grid
    epoch: int
    stand_in: bool
    cells: dict[str, Cell | None]  # metric header -> cell
    baseline: bool = False  # the first stage's row: no optimizer, no epoch


@dataclass(frozen=True)
class ResultTable:
    shape: TableShape
    keys: dict[str, str]  # metric header -> result key "<set>/<metric>"
    rows: list[Row]
    n_seeds: int

    @property
    def headers(self) -> list[str]:
        return list(self.keys)

    def best(self) -> dict[str, float]:
        """The best (highest) mean of each metric; every metric in these tables is higher-is-better."""
        best = {}
        for header in self.keys:
            means = [r.cells[header].mean for r in self.rows if r.cells[header] is not None]
            if means:
                best[header] = max(means)
        return best


@dataclass
class Grid:
    """A rendered table: display strings, which cells to mark, and the raw values for CSV."""

    title: str
    caption: str
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)
    marked: set[tuple[int, int]] = field(default_factory=set)  # (row, column) shown in bold
    csv_rows: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def build_table(study: StudyData, shape: TableShape) -> ResultTable:
    keys = {DISPLAY_NAMES.get(m, m): f"{study.eval_set(role)}/{m}" for role, m in shape.metrics}
    groups: dict[tuple[str, str, str], list] = {}
    for trial in study.trials:  # seeds of one setting are pooled; anything else stays apart
        groups.setdefault((trial.model, trial.optimizer, trial.variant), []).append(trial)
    rows = []
    first_stage = results.first_stage(list(study.trials))
    if first_stage:  # deterministic: the same for every seed, so it counts as every seed's value
        n = len(study.seeds)
        cells = {h: Cell(first_stage[k], math.nan, n) if k in first_stage else None for h, k in keys.items()}
        rows.append(Row(results.FIRST_STAGE_LABEL, "-", "", 0, False, cells, baseline=True))
    for (model, optimizer, variant), trials in groups.items():
        epochs = sorted({row["epoch"] for t in trials for row in t.rows})
        for epoch in epochs:
            cells = {}
            for header, key in keys.items():
                values = [
                    v
                    for t in trials
                    for row in t.rows
                    if row["epoch"] == epoch and (v := metric_value(row, key)) is not None
                ]
                cells[header] = Cell(*mean_ci(values), len(values)) if values else None
            rows.append(Row(model, optimizer, variant, epoch, any(t.stand_in_for for t in trials), cells))
    return ResultTable(shape, keys, rows, n_seeds=len(study.seeds))


def result_grid(table: ResultTable, *, eval_note: str, fixed: dict[str, str] | None = None) -> Grid:
    """`fixed`: headers of metrics that cannot move on their set -> why (study/reporting/cutoffs.py)."""
    fixed = fixed or {}
    best = table.best()
    # A best value shared by several rows (as shown, to 4 decimals) singles nothing out: no bold.
    ties = {
        h: sum(1 for r in table.rows if r.cells[h] and round(r.cells[h].mean, 4) == round(best[h], 4)) > 1
        for h in best
    }
    grid = Grid(
        table.shape.title,
        table.shape.caption,
        ["Model", "Optimizer", "Epoch", *table.headers],
        notes=[
            eval_note,
            "Best value per metric in bold, unless rows tie"
            + ("; mean ± 95% CI over seeds." if table.n_seeds > 1 else "."),
            *dict.fromkeys(fixed.values()),
        ]
        + [_FIRST_STAGE_NOTE] * any(r.baseline for r in table.rows),
    )
    for i, row in enumerate(table.rows):
        epoch = "-" if row.baseline else row.epoch
        texts = [_model_label(row), _optimizer_label(row), str(epoch)]
        raw = {"model": row.model, "optimizer": row.optimizer, **_variant(row), "epoch": epoch, "n_seeds": 0}
        best_here = []
        for j, header in enumerate(table.headers, start=3):
            cell = row.cells[header]
            texts.append(_format_cell(cell, table.n_seeds))
            raw[header] = _round(cell.mean) if cell else ""
            raw[f"{header} ci95"] = _round(cell.half_width) if cell and not math.isnan(cell.half_width) else ""
            raw["n_seeds"] = max(raw["n_seeds"], cell.n if cell else 0)
            if cell and cell.mean == best.get(header) and not ties[header] and header not in fixed:
                grid.marked.add((i, j))
                best_here.append(header)
        raw["best"] = ";".join(best_here)
        grid.rows.append(texts)
        grid.csv_rows.append(raw)
    return grid


_FIRST_STAGE_NOTE = (
    f"{results.FIRST_STAGE_LABEL}: the candidates in their own order (BM25, or the given run), reranked by nothing; "
    "the same candidates and measures as every reranker."
)


def comparison_grid(table: ResultTable, *, eval_note: str) -> Grid:
    """This study's numbers beside the table's own thesis numbers, for the thesis's epochs 1-3."""
    thesis = lookup(table.shape.title)
    headers = ["Model", "Optimizer", "Epoch"]
    for header in table.headers:
        headers += [header, f"{header} thesis", f"{header} Δ"]
    grid = Grid(
        f"{table.shape.title} vs thesis",
        f"{table.shape.caption}: this study, the thesis's {table.shape.title}, and the difference (study - thesis)",
        headers,
        notes=[eval_note],
    )
    metric_of = {DISPLAY_NAMES.get(m, m): m for _, m in table.shape.metrics}
    for row in table.rows:
        if row.variant or not any((row.model, row.optimizer, row.epoch, m) in thesis for m in metric_of.values()):
            continue  # epoch 0, variants and models the thesis did not train
        texts = [_model_label(row), row.optimizer, str(row.epoch)]
        raw: dict = {"model": row.model, "optimizer": row.optimizer, "epoch": row.epoch}
        for header in table.headers:
            cell = row.cells[header]
            reference = thesis.get((row.model, row.optimizer, row.epoch, metric_of[header]))
            delta = cell.mean - reference if cell and reference is not None else None
            texts += [_format_cell(cell, table.n_seeds), _number(reference), _signed(delta)]
            raw |= {
                header: _round(cell.mean) if cell else "",
                f"{header} thesis": "" if reference is None else reference,
                f"{header} delta": "" if delta is None else _round(delta),
            }
        grid.rows.append(texts)
        grid.csv_rows.append(raw)
    return grid


def to_markdown(grid: Grid) -> str:
    rows = [
        {h: (f"**{text}**" if (i, j) in grid.marked else text) for j, (h, text) in enumerate(zip(grid.headers, row))}
        for i, row in enumerate(grid.rows)
    ]
    body = format_table(rows, markdown=True) if rows else "(no results yet)"
    notes = "".join(f"\n{note}" for note in grid.notes)
    return f"**{grid.title}**: {grid.caption}.\n\n{body}\n{notes}\n"


def to_csv(grid: Grid) -> str:
    fieldnames: list[str] = []
    for row in grid.csv_rows:
        fieldnames += [k for k in row if k not in fieldnames]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fieldnames or ["model"])
    writer.writeheader()
    writer.writerows(grid.csv_rows)
    return buffer.getvalue()


def to_latex(grid: Grid) -> str:
    lines = [
        "% needs \\usepackage{booktabs}",
        "\\begin{table}[ht]",
        "\\centering",
        f"\\caption{{{_tex(grid.caption)}}}",
        f"\\begin{{tabular}}{{lll{'r' * (len(grid.headers) - 3)}}}",
        "\\toprule",
        " & ".join(_tex(h) for h in grid.headers) + " \\\\",
        "\\midrule",
    ]
    for i, row in enumerate(grid.rows):
        cells = [f"\\textbf{{{_tex(text)}}}" if (i, j) in grid.marked else _tex(text) for j, text in enumerate(row)]
        lines.append(" & ".join(cells) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}"]
    lines += [f"\\par\\footnotesize {_tex(note)}" for note in grid.notes]
    lines.append("\\end{table}")
    return "\n".join(lines) + "\n"


def _model_label(row: Row) -> str:
    return row.model + ("*" if row.stand_in else "")


def _optimizer_label(row: Row) -> str:
    return row.optimizer + (f" [{row.variant}]" if row.variant else "")


def _variant(row: Row) -> dict:
    return {"variant": row.variant} if row.variant else {}


def _format_cell(cell: Cell | None, n_seeds: int) -> str:
    if cell is None:
        return "-"
    text = f"{cell.mean:.4f}"
    if not math.isnan(cell.half_width):
        text += f" ± {cell.half_width:.4f}"
    if n_seeds > 1 and cell.n < n_seeds:
        text += f" (n={cell.n})"
    return text


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _signed(value: float | None) -> str:
    return "-" if value is None else f"{value:+.4f}"


def _round(value: float) -> float:
    return round(value, 6)


_TEX_ESCAPES = {"&": r"\&", "%": r"\%", "_": r"\_", "#": r"\#", "±": r"$\pm$", "Δ": r"$\Delta$", "*": r"$^*$"}


def _tex(text: str) -> str:
    return "".join(_TEX_ESCAPES.get(ch, ch) for ch in text)
