"""The study's report: every section, written into STUDY_DIR/report/ (the CLI is study/report.py).

Writes:
- report.md: every section below, in one Markdown file;
- tables/<table>.{md,csv,tex}: the thesis's Table 5.1 and Tables A.1-A.4 with this study's numbers
  (best per metric marked; mean +- 95% CI over seeds), and on the full scale `<table>_vs_thesis.*`
  beside the thesis's numbers with a difference column;
- tables/significance.{md,csv}: Lion vs AdamW paired tests per model and epoch (reporting/stats.py);
- tables/thesis_claims.{md,csv}: each finding of §5.2 and §6.1 with this study's evidence and verdict;
- tables/vs_first_stage.{md,csv}: each trained model vs the first stage (BM25 / the given run), paired tests;
- tables/efficiency.{md,csv}: pairs/s, time, peak memory, optimizer-state memory per trial;
- tables/dynamics.{md,csv}: the held-out (evaluation) loss per epoch, its roughness, gradient-norm CV;
- tables/thesis_disagreements.{md,csv}: cells the thesis's own tables report differently;
- plots/*.png: training dynamics and every metric per epoch, per model.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path



@dataclass(frozen=True)
class ReportPaths:
    directory: Path
    markdown: Path
    tables: list[Path]
    plots: list[Path]
    summary: str  # Table 5.1 and the significance statements, for the console


def write_report(
    study_dir: str | Path, *, out_dir: str | Path | None = None, n_resamples: int = 10_000, plots: bool = True
) -> ReportPaths:
    """Write the report of the study in `study_dir` (into STUDY_DIR/report unless `out_dir`)."""
    from study.reporting import claims, dynamics, efficiency, significance, tables
    from study.reporting.plots import write_plots
    from study.reporting.study_data import load_study
    from study.reporting.thesis_numbers import THESIS_TABLES
    from study.results import stand_in_notes, write_atomic

    study = load_study(study_dir)
    out = Path(out_dir) if out_dir else study.directory / "report"
    written: list[Path] = []

    def save(grid: tables.Grid, stem: str, *, latex: bool = True) -> str:
        markdown = tables.to_markdown(grid)
        written.append(write_atomic(out / "tables" / f"{stem}.md", markdown))
        written.append(write_atomic(out / "tables" / f"{stem}.csv", tables.to_csv(grid)))
        if latex:
            written.append(write_atomic(out / "tables" / f"{stem}.tex", tables.to_latex(grid)))
        return markdown

    notes = stand_in_notes(list(study.trials))
    sections = [_header(study), *(["\n".join(notes) + "\n"] if notes else [])]

    sections.append("## Results in the thesis's tables\n")
    result_tables = [tables.build_table(study, shape) for shape in THESIS_TABLES.values()]
    shown = {}  # table title -> its Markdown
    for table in result_tables:
        grid = tables.result_grid(table, eval_note=_eval_note(study, table.shape), fixed=_fixed(study, table))
        shown[table.shape.title] = save(grid, table.shape.key)
        sections.append(f"### {table.shape.title}\n\n" + shown[table.shape.title])

    sections.append("## Beside the thesis's numbers\n")
    sections.append(_thesis_comparison(study, result_tables, save))

    sections.append("## Significance: Lion vs AdamW\n")
    metrics = list(THESIS_TABLES["Table 5.1"].metrics)
    comparisons = significance.compare_optimizers(study, metrics, n_resamples=n_resamples)
    statements = significance.summary_lines(comparisons, study)
    sections.append(
        "Paired over queries, same seed for both optimizers: a paired t-test and a randomization (sign-flip "
        f"permutation) test per metric of Table 5.1, at every trained epoch. Holm's correction runs over each "
        f"model x epoch family (every metric x every seed). A difference counts as significant when both tests' "
        f"Holm-adjusted p < {significance.ALPHA}.\n\n" + "\n".join(_bullet(s) for s in statements) + "\n"
    )

    if comparisons:
        save(significance.significance_grid(comparisons), "significance", latex=False)
        sections.append(
            f"Every comparison ({len(comparisons)}), with both tests' p-values before and after the correction: "
            "[tables/significance.md](tables/significance.md) (and .csv).\n"
        )

    sections.append("## The thesis's claims, checked\n")
    findings = claims.check_claims(study, comparisons, n_resamples=n_resamples)
    sections.append(save(claims.claims_grid(findings, study), "thesis_claims", latex=False))
    sections.append(_vs_first_stage(study, save, n_resamples=n_resamples))

    sections.append("## Efficiency\n")
    memory = efficiency.optimizer_memory_lines(study)
    sections.append(save(efficiency.efficiency_grid(study), "efficiency", latex=False))
    sections.append(
        "Lion keeps one moment buffer per parameter, AdamW two: the thesis's claim of 50% less optimizer "
        "memory, measured:\n\n" + ("\n".join(f"- {m}" for m in memory) or "- (no trial has trained yet)") + "\n"
    )
    if beside := efficiency.thesis_memory_lines(study):
        sections.append("Peak GPU memory beside §4.4.1's figures:\n\n" + "\n".join(f"- {m}" for m in beside) + "\n")

    sections.append("## Training dynamics\n")
    sections.append(save(dynamics.dynamics_grid(study), "dynamics", latex=False))
    pngs = write_plots(study, out / "plots") if plots else []
    sections.append("\n".join(f"![{p.stem}](plots/{p.name})" for p in pngs) + "\n" if plots else "(plots skipped)\n")

    problems = [t for t in study.trials if t.status != "finished"]
    if problems:
        sections.append("## Failed or unfinished trials\n")
        sections.append(
            "\n".join(f"- {t.name}: {t.status}" + (f": {t.error}" if t.error else "") for t in problems) + "\n"
        )

    markdown = write_atomic(out / "report.md", "\n".join(sections))
    summary = "\n".join([shown["Table 5.1"], "Significance (Lion vs AdamW):", *statements, *memory])
    return ReportPaths(out, markdown, written, pngs, summary)


def _vs_first_stage(study, save, *, n_resamples: int) -> str:
    """The section that says whether fine-tuning beat the first stage (study/reporting/first_stage.py)."""
    from study.reporting import first_stage

    comparisons = first_stage.compare_with_first_stage(study, first_stage.first_stage_metrics(study), n_resamples=n_resamples)
    text = (
        "## Significance: each trained model vs the first stage\n\nEach trial after its last epoch against the "
        "candidates in their own order (BM25, or the given run), paired over queries on the same candidates, "
        "with the same two tests; Holm's correction over each trial's metrics.\n\n"
        + "\n".join(_bullet(s) for s in first_stage.summary_lines(comparisons))
        + "\n"
    )
    if comparisons:
        save(first_stage.first_stage_grid(comparisons), "vs_first_stage", latex=False)
        text += "\nEvery comparison: [tables/vs_first_stage.md](tables/vs_first_stage.md) (and .csv).\n"
    return text


def _fixed(study, table) -> dict[str, str]:
    """Headers of the table's metrics that cannot move on their set, with the reason."""
    from study.reporting.cutoffs import fixed_metrics, fixed_note

    by_set: dict[str, dict[str, str]] = {}  # set -> metric -> header
    for header, key in table.keys.items():
        eval_set, _, metric = key.partition("/")
        by_set.setdefault(eval_set, {})[metric] = header
    fixed = {}
    for eval_set, headers in by_set.items():
        metrics = fixed_metrics(study, eval_set, list(headers))
        note = fixed_note(study, eval_set, metrics)
        fixed |= {headers[m]: note for m in metrics if note}
    return fixed


def _bullet(statement: str) -> str:
    """A Markdown list item; a statement indented by two spaces becomes a nested item."""
    return ("  - " if statement.startswith("  ") else "- ") + statement.strip()


def _header(study) -> str:
    counts: dict[str, int] = {}
    for t in study.trials:
        counts[t.status] = counts.get(t.status, 0) + 1
    status = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "none on disk yet"
    seeds = ", ".join(map(str, study.seeds)) or "-"
    lines = [
        f"# Report: study {study.name}",
        "",
        f"- scale: {study.scale}; evaluation sets: {', '.join(study.eval_sets)}",
        f"- trials: {len(study.trials)} ({status}); seeds: {seeds}",
        f"- written {dt.datetime.now():%Y-%m-%d %H:%M} from {study.directory}",
    ]
    manifest = study.directory / "manifest.json"
    if manifest.is_file():  # what made the study (study/tracking/manifest.py)
        import json

        from study.tracking.manifest import header_lines

        lines += header_lines(json.loads(manifest.read_text()))
    else:
        lines.append("- no manifest.json: the study predates manifests, so versions and commit are not recorded")
    if counts.get("incomplete"):
        lines.append("- some trials are still running or stopped early: this report covers what is on disk now")
    return "\n".join(lines) + "\n"


def _eval_note(study, shape) -> str:
    from study.reporting.thesis_numbers import DEV, TEST

    dev_metrics = [m for role, m in shape.metrics if role == DEV]
    test = study.eval_set(TEST)
    if dev_metrics and study.eval_set(DEV) != test:
        from eval.measures import DISPLAY_NAMES

        names = ", ".join(DISPLAY_NAMES.get(m, m) for m in dev_metrics)
        return f"{names} on {study.eval_set(DEV)}; every other metric on {test}."
    return f"Every metric on {test}."


def _thesis_comparison(study, result_tables, save) -> str:
    from study.reporting import tables
    from study.reporting.thesis_numbers import disagreements

    conflicts = disagreements()
    grid = tables.Grid(
        "The thesis's own disagreements",
        "cells that Table 5.1 and Appendix A report differently (both kept in study/reporting/thesis_numbers.py)",
        ["Model", "Optimizer", "Epoch", "Metric", "Table 5.1", "Table A.1", "Table A.2", "Table A.3", "Table A.4"],
    )
    for d in conflicts:
        grid.rows.append(
            [d.model, d.optimizer, str(d.epoch), d.metric]
            + [f"{d.values[t]:.4f}" if t in d.values else "" for t in grid.headers[4:]]
        )
        grid.csv_rows.append(
            {"model": d.model, "optimizer": d.optimizer, "epoch": d.epoch, "metric": d.metric, **d.values}
        )
    disagreement_md = save(grid, "thesis_disagreements", latex=False)
    intro = (
        f"The thesis's tables disagree with each other in {len(conflicts)} cells (e.g. GTE + Lion, epoch 1, "
        "nDCG@10: 0.6785 in Table 5.1, 0.6970 in Tables A.1 and A.4); both values are kept"
    )
    if study.scale != "full":
        return (
            f"This study ran at scale `{study.scale}` (stand-in models and generated data), so its numbers are "
            "**not comparable** with the thesis's, and no differences are shown; `--scale full` shows them. "
            f"{intro}: tables/thesis_disagreements.md lists them.\n"
        )
    parts = [f"{intro}, and each comparison below uses the numbers of the table it reproduces.\n"]
    for table in result_tables:
        parts.append(
            f"### {table.shape.title} vs thesis\n\n"
            + save(
                tables.comparison_grid(table, eval_note=_eval_note(study, table.shape)), f"{table.shape.key}_vs_thesis"
            )
        )
    parts.append("### Where the thesis disagrees with itself\n\n" + disagreement_md)
    return "\n".join(parts)
