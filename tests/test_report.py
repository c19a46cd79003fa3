"""study.report on fixture study directories written the way Tune and the trial write them.

The fixture: models minilm and gte x {adamw, lion} x seeds {12, 13}, epochs 0-2, 10 queries. A
query's value of every metric is 0.3 + 0.02 * i + 0.01 * epoch + 0.002 * (seed - 12), plus 0.1 for
minilm + Lion (a constant shift: significant) and nothing for gte + Lion (identical to AdamW:
p = 1). So a cell's mean over queries is 0.39 + 0.01 * epoch + 0.002 * (seed - 12) (+ 0.1), and the
two seeds' 95% t-interval half-width is t(0.975, 1) * 0.001 = 0.0127. gte-lion-s13 fails after epoch 0.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from eval.measures import METRICS
from study.grids import build_study, restrict, with_seeds
from study.report import main
from study.reporting.report import write_report
from study.reporting.thesis_numbers import THESIS_TABLES, disagreements, lookup, thesis_values
from study.spec import StudySpec

QUERIES = [f"q{i}" for i in range(10)]
MIB = 1024 * 1024
SHIFT = {("minilm", "lion"): 0.1}
FAILED = "gte-lion-s13"
# The held-out (evaluation) loss at epoch ends and one step inside each epoch: AdamW's curve zigzags
# (mean |change| 0.15), Lion's falls by 0.025 each time; Lion's gradient norms vary less (CV 0.61 vs 0.85).
HELDOUT_AT_EPOCH = {"adamw": (0.60, 0.40, 0.50, 0.40), "lion": (0.60, 0.55, 0.50, 0.45)}
HELDOUT_MID_EPOCH = {"adamw": (None, 0.30, 0.55, 0.35), "lion": (None, 0.575, 0.525, 0.475)}


def _value(i: int, epoch: int, seed: int, shift: float) -> float:
    return round(0.3 + 0.02 * i + 0.01 * epoch + 0.002 * (seed - 12) + shift, 6)


def write_fixture_study(
    root: Path, *, scale: str = "smoke", epochs: int = 2, variants: tuple[str, ...] = (), models=("minilm", "gte")
) -> Path:
    spec = restrict(build_study("thesis", scale=scale), models=list(models), epochs=epochs)
    if variants:  # a YAML study's own variants of each trial, told apart by their tags
        trials = [t.model_dump() | {"tag": v} for t in spec.trials for v in variants]
        spec = StudySpec.model_validate(spec.model_dump() | {"trials": trials})
    spec = with_seeds(spec, [12, 13]).model_copy(update={"name": f"fixture-{scale}"})
    study = root / spec.name
    study.mkdir(parents=True)
    (study / "study_spec.json").write_text(spec.model_dump_json(indent=2))
    eval_sets = [e.name for e in spec.trials[0].evaluation]
    for n, trial in enumerate(spec.trials):
        trial_dir = study / f"{trial.name}-fixture_{n:05d}"
        (trial_dir / "per_query").mkdir(parents=True)
        (trial_dir / "params.json").write_text(json.dumps({"trial": trial.model_dump(mode="json")}))
        model, optimizer, seed = trial.model.name, trial.optimizer.name, trial.training.seed
        shift = SHIFT.get((model, optimizer), 0.0)
        last_epoch = 0 if trial.name == FAILED else epochs
        rows, steps = [], []
        for epoch in range(last_epoch + 1):
            row = {
                "epoch": epoch,
                "global_step": 6 * epoch,
                "heldout_loss": HELDOUT_AT_EPOCH[optimizer][epoch],
                "global_step": 6 * epoch,
                "trial": trial.name,
                "model": model,
                "optimizer": optimizer,
                "seed": seed,
                "time_total_s": 5.0 * (epoch + 1),
                "peak_memory_source": "cpu-rss",
                "peak_memory_bytes": (300 if optimizer == "adamw" else 290) * MIB,
                "optimizer_state_bytes": 0 if epoch == 0 else (8 if optimizer == "adamw" else 4) * MIB,
            }
            if epoch > 0:
                row |= {"train_loss": 0.7 - 0.1 * epoch, "train_seconds": 2.0, "train_pairs_per_s": 48.0}
                steps += [
                    {
                        "epoch": epoch,
                        "step": 6 * epoch - 3 + k,
                        "loss": 0.7 - 0.1 * epoch,
                        "lr": 2e-5,
                        "grad_norm": 1.0 + k * (0.5 if optimizer == "lion" else 1.0),
                        "pairs_per_s": 48.0,
                    }
                    for k in (0, 3)
                ]
                steps.append({"epoch": epoch, "step": 6 * epoch - 3, "heldout_loss": HELDOUT_MID_EPOCH[optimizer][epoch]})
            for eval_set in eval_sets:
                values = {q: _value(i, epoch, seed, shift) for i, q in enumerate(QUERIES)}
                (trial_dir / "per_query" / f"{eval_set}.epoch{epoch}.json").write_text(
                    json.dumps({metric: values for metric in METRICS})
                )
                row |= {f"{eval_set}/{metric}": sum(values.values()) / len(values) for metric in METRICS}
                row[f"{eval_set}/candidate_loss"] = 0.69 - 0.01 * epoch
            rows.append(row)
        (trial_dir / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
        (trial_dir / "steps.jsonl").write_text("".join(json.dumps(s) + "\n" for s in steps))
        if trial.name == FAILED:
            (trial_dir / "error.txt").write_text(
                "Failure # 1 (occurred at 2026-01-01)\nTraceback ...\n"
                "trainables.training.NonFiniteLossError: training loss became nan by step 3 (epoch 1)\n"
            )
    return study


@pytest.fixture(scope="module")
def smoke_report(tmp_path_factory):
    study = write_fixture_study(tmp_path_factory.mktemp("report"))
    return study, write_report(study, n_resamples=2000)


def _markdown_rows(markdown: str) -> list[list[str]]:
    return [
        [c.strip() for c in line.strip().strip("|").split("|")]
        for line in markdown.splitlines()
        if line.startswith("|")
    ]


def _csv(path: Path) -> list[dict]:
    return list(csv.DictReader(io.StringIO(path.read_text())))


def test_table_5_1_has_exact_means_intervals_and_best_marks(smoke_report):
    study, paths = smoke_report
    markdown = (paths.directory / "tables" / "table_5_1.md").read_text()
    header = "| Model   | Optimizer | Epoch | nDCG@10"
    assert header in markdown and "MAP" in markdown and "MRR@10" in markdown
    cells = {tuple(row[:3]): row[3:] for row in _markdown_rows(markdown)}
    # two seeds: mean 0.401, half-width t(0.975, 1) * 0.001 = 0.0127
    assert cells[("minilm*", "adamw", "1")] == ["0.4010 ± 0.0127"] * 6
    # minilm + Lion, epoch 2: the best cell of every column, in bold
    assert cells[("minilm*", "lion", "2")] == ["**0.5110 ± 0.0127**"] * 6
    # the failed seed leaves gte + Lion with one seed after epoch 0, and the cell says so
    assert cells[("gte*", "lion", "1")] == ["0.4000 (n=1)"] * 6
    assert cells[("gte*", "lion", "0")] == ["0.3910 ± 0.0127"] * 6
    assert "MRR@10 on builtin-smoke-dev; every other metric on builtin-smoke-dl." in markdown

    rows = _csv(paths.directory / "tables" / "table_5_1.csv")
    best = [r for r in rows if r["best"]]
    assert [(r["model"], r["optimizer"], r["epoch"]) for r in best] == [("minilm", "lion", "2")]
    assert best[0]["best"] == "nDCG@10;MAP;MRR@10;R@10;R-Prec;P@10"
    cell = next(r for r in rows if (r["model"], r["optimizer"], r["epoch"]) == ("minilm", "adamw", "1"))
    assert float(cell["nDCG@10"]) == pytest.approx(0.401) and float(cell["nDCG@10 ci95"]) == pytest.approx(
        0.012706, abs=1e-6
    )
    assert cell["n_seeds"] == "2"

    latex = (paths.directory / "tables" / "table_5_1.tex").read_text()
    assert "\\textbf{0.5110 $\\pm$ 0.0127}" in latex and "minilm$^*$ & lion & 2" in latex


def test_appendix_tables_have_the_thesis_columns(smoke_report):
    _, paths = smoke_report
    expected = {
        "table_a_1": ["MAP", "nDCG@10", "MRR@10", "P@10", "R-Prec"],
        "table_a_2": ["P@5", "P@10", "P@20", "P@100"],
        "table_a_3": ["R@5", "R@10", "R@20", "R@100"],
        "table_a_4": ["nDCG@5", "nDCG@10", "nDCG@20", "nDCG@100"],
    }
    for stem, metrics in expected.items():
        rows = _csv(paths.directory / "tables" / f"{stem}.csv")
        assert [k for k in rows[0] if k in metrics] == metrics
        assert len(rows) == 2 * 2 * 3  # models x optimizers x epochs 0-2
        for suffix in ("md", "tex"):
            assert (paths.directory / "tables" / f"{stem}.{suffix}").stat().st_size > 0


def test_significance_finds_the_shift_and_not_the_identical_systems(smoke_report):
    _, paths = smoke_report
    rows = _csv(paths.directory / "tables" / "significance.csv")
    minilm = [r for r in rows if r["model"] == "minilm"]
    gte = [r for r in rows if r["model"] == "gte"]
    # minilm: per epoch 6 metrics x (2 seeds + their query means); exact test on 10 queries: 2/1024,
    # Holm over a family of 18 equal p-values: 18 * 2/1024
    assert len(minilm) == 2 * 6 * 3
    assert {r["seeds"] for r in minilm} == {"12", "13", "12,13 (query means)"}
    for r in minilm:
        assert float(r["difference"]) == pytest.approx(0.1)
        assert float(r["randomization_p"]) == pytest.approx(2 / 1024)
        assert float(r["randomization_p_holm"]) == pytest.approx(18 * 2 / 1024)
        assert float(r["t_p"]) < 1e-12 and r["verdict"] == "significant"
    # gte: identical systems, and only seed 12 has Lion after epoch 0
    assert len(gte) == 2 * 6 and {r["seeds"] for r in gte} == {"12"}
    assert all(float(r["t_p"]) == 1.0 and float(r["randomization_p"]) == 1.0 for r in gte)
    assert {r["verdict"] for r in gte} == {"not significant"}

    report = paths.markdown.read_text()
    assert "minilm: 36 of 36 differences are significant at 0.05 by both tests" in report
    assert "gte: none of 12 differences is significant at 0.05 by both tests" in report


def test_efficiency_measures_lions_optimizer_memory(smoke_report):
    _, paths = smoke_report
    rows = {r["trial"]: r for r in _csv(paths.directory / "tables" / "efficiency.csv")}
    assert int(rows["minilm-adamw-s12"]["optimizer_state_bytes"]) == 8 * MIB
    assert float(rows["minilm-lion-s12"]["pairs_per_s"]) == 48.0
    assert float(rows["minilm-lion-s12"]["wall_seconds"]) == 15.0
    assert rows[FAILED]["status"] == "failed" and rows[FAILED]["optimizer_state_bytes"] == ""
    report = paths.markdown.read_text()
    assert "- minilm: Lion / AdamW optimizer state 4.0 / 8.0 MiB = 0.50; peak memory 290.0 / 300.0 MiB = 0.97" in report


def test_dynamics_table_lists_the_heldout_loss_and_measures_smoothness(smoke_report):
    _, paths = smoke_report
    rows = {r["trial"]: r for r in _csv(paths.directory / "tables" / "dynamics.csv")}
    adamw, lion = rows["minilm-adamw-s12"], rows["minilm-lion-s12"]
    assert [float(adamw[f"heldout_loss_epoch{e}"]) for e in range(3)] == [0.60, 0.40, 0.50]
    assert float(adamw["heldout_roughness"]) == pytest.approx(0.15)  # |0.6-0.3|, |0.3-0.4|, |0.4-0.55|, |0.55-0.5|
    assert float(lion["heldout_roughness"]) == pytest.approx(0.025)
    assert float(adamw["grad_norm_cv"]) == pytest.approx(2.1213203 / 2.5)  # norms 1 and 4 in each epoch
    assert float(lion["grad_norm_cv"]) == pytest.approx(1.0606602 / 1.75)
    assert rows[FAILED]["heldout_loss_epoch1"] == "" and rows[FAILED]["heldout_roughness"] == ""
    assert "| Trial" in paths.markdown.read_text().split("## Training dynamics")[1]


def test_plots_are_written_and_non_empty(smoke_report):
    _, paths = smoke_report
    names = sorted(p.name for p in paths.plots)
    assert names == sorted(
        f"{m}-{kind}.png"
        for m in ("minilm", "gte")
        for kind in ("training", "metrics-builtin-smoke-dl", "metrics-builtin-smoke-dev")
    )
    for plot in paths.plots:
        assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 20_000


def test_report_lists_the_failed_trial_and_says_scales_are_not_comparable(smoke_report):
    _, paths = smoke_report
    report = paths.markdown.read_text()
    assert "trials: 8 (1 failed, 7 finished); seeds: 12, 13" in report
    assert f"- {FAILED}: failed: NonFiniteLossError: training loss became nan by step 3 (epoch 1)" in report
    assert "ran at scale `smoke`" in report and "**not comparable** with the thesis's" in report
    assert not list((paths.directory / "tables").glob("*_vs_thesis.*"))


def test_full_scale_sets_the_thesis_numbers_beside_with_a_delta(tmp_path):
    study = write_fixture_study(tmp_path, scale="full", epochs=3)
    paths = write_report(study, n_resamples=100, plots=False)
    rows = _csv(paths.directory / "tables" / "table_5_1_vs_thesis.csv")
    assert len(rows) == 2 * 2 * 3  # epochs 1-3 (the thesis has no epoch 0)
    cell = next(r for r in rows if (r["model"], r["optimizer"], r["epoch"]) == ("minilm", "adamw", "1"))
    assert float(cell["nDCG@10 thesis"]) == 0.7008
    assert float(cell["nDCG@10 delta"]) == pytest.approx(0.401 - 0.7008)
    # GTE + Lion, epoch 1, nDCG@10: Table 5.1 says 0.6785, Table A.1 says 0.6970; each keeps its own
    gte_5_1 = next(r for r in rows if (r["model"], r["optimizer"], r["epoch"]) == ("gte", "lion", "1"))
    gte_a_1 = next(
        r
        for r in _csv(paths.directory / "tables" / "table_a_1_vs_thesis.csv")
        if (r["model"], r["optimizer"], r["epoch"]) == ("gte", "lion", "1")
    )
    assert float(gte_5_1["nDCG@10 thesis"]) == 0.6785 and float(gte_a_1["nDCG@10 thesis"]) == 0.6970
    report = paths.markdown.read_text()
    assert "### Table 5.1 vs thesis" in report and "nDCG@10 Δ" in report
    assert ["gte", "lion", "1", "nDCG@10", "0.6785", "0.6970", "", "", "0.6970"] in _markdown_rows(report)


def test_thesis_numbers_are_complete_and_disagreements_are_kept():
    values = thesis_values()
    assert {v.table for v in values} == set(THESIS_TABLES)
    for title, shape in THESIS_TABLES.items():
        assert len(lookup(title)) == 3 * 2 * 3 * len(shape.metrics)  # models x optimizers x epochs x metrics
    assert lookup("Table 5.1")[("modernbert", "lion", 2, "nDCG@10")] == 0.7225
    assert lookup("Table A.3")[("minilm", "adamw", 3, "R@100")] == 0.5427
    conflicts = {(d.model, d.optimizer, d.epoch, d.metric): d.values for d in disagreements()}
    assert conflicts[("gte", "lion", 1, "nDCG@10")] == {"Table 5.1": 0.6785, "Table A.1": 0.6970, "Table A.4": 0.6970}
    assert ("minilm", "adamw", 1, "nDCG@10") not in conflicts  # the tables agree there


def test_cli_writes_the_report_and_rejects_a_non_study(tmp_path, capsys):
    study = write_fixture_study(tmp_path)
    assert main([str(study), "--out", str(tmp_path / "out"), "--resamples", "200", "--no-plots"]) == 0
    out = capsys.readouterr().out
    assert "Significance (Lion vs AdamW):" in out and f"Report: {tmp_path / 'out' / 'report.md'}" in out
    assert main([str(tmp_path / "nothing-here")]) == 2
    assert (
        "error: expects a study directory (holding study_spec.json or <trial>/params.json)" in capsys.readouterr().err
    )


def test_a_study_with_no_results_yet_still_reports(tmp_path):
    study = write_fixture_study(tmp_path)
    for result in study.glob("*/result.json"):
        result.unlink()  # trials started, nothing reported yet
    paths = write_report(study, n_resamples=100, plots=False)
    report = paths.markdown.read_text()
    assert "trials: 8 (1 failed, 7 incomplete)" in report
    assert "No Lion vs AdamW comparison is possible yet" in report


def test_variants_beyond_the_seed_stay_apart(tmp_path):
    study = write_fixture_study(tmp_path, variants=("lr1", "lr2"))
    paths = write_report(study, n_resamples=100, plots=False)
    rows = _csv(paths.directory / "tables" / "table_5_1.csv")
    assert {(r["optimizer"], r["variant"]) for r in rows} == {(o, v) for o in ("adamw", "lion") for v in ("lr1", "lr2")}
    assert all(r["n_seeds"] == "2" for r in rows if not (r["model"] == "gte" and r["optimizer"] == "lion"))
    cells = {
        tuple(row[:3]): row[3] for row in _markdown_rows((paths.directory / "tables" / "table_5_1.md").read_text())
    }
    assert cells[("minilm*", "adamw [lr2]", "1")] == "0.4010 ± 0.0127"  # seeds pooled, variants not
    significance = _csv(paths.directory / "tables" / "significance.csv")
    assert {r["model"] for r in significance} == {"minilm [lr1]", "minilm [lr2]", "gte [lr1]", "gte [lr2]"}


def test_report_help_is_instant_without_heavy_imports():
    code = (
        "import sys, study.report; "
        "print(sorted(m for m in ('torch', 'ray', 'matplotlib', 'scipy', 'wandb') if m in sys.modules))"
    )
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"
    )
    result = subprocess.run([sys.executable, "-m", "study.report", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "STUDY_DIR" in result.stdout


def test_efficiency_sets_measured_gpu_memory_and_parameters_beside_the_thesis(tmp_path):
    from study.reporting.efficiency import GIB, efficiency_grid, thesis_memory_lines
    from study.reporting.study_data import load_study

    study_dir = write_fixture_study(tmp_path, scale="full", epochs=1)
    for result in study_dir.glob("*/result.json"):  # as if measured on a GPU: 6 GiB peak, MiniLM's 33.4M parameters
        rows = [json.loads(line) for line in result.read_text().splitlines()]
        rows = [r | {"peak_memory_source": "cuda", "peak_memory_bytes": 6 * GIB, "model_parameters": 33_360_000} for r in rows]
        result.write_text("".join(json.dumps(r) + "\n" for r in rows))
    study = load_study(study_dir)
    rows = {r["trial"]: r for r in efficiency_grid(study).csv_rows}
    minilm, gte = rows["minilm-adamw-s12"], rows["gte-adamw-s12"]
    assert (minilm["thesis_memory_gb"], minilm["thesis_parameters"], minilm["parameters"]) == (8, 33_000_000, 33_360_000)
    assert minilm["peak_vs_thesis"] == pytest.approx(6 / 8) and gte["peak_vs_thesis"] == pytest.approx(6 / 16)
    assert "minilm: peak 6.0 GiB measured (minilm-adamw-s12) vs 8 GB in §4.4.1 = 0.75" in thesis_memory_lines(study)

    # a stand-in (smoke scale) on a CPU: the thesis's figures are shown, never a ratio
    smoke = load_study(write_fixture_study(tmp_path / "smoke"))
    row = next(r for r in efficiency_grid(smoke).csv_rows if r["trial"] == "minilm-lion-s12")
    assert row["thesis_memory_gb"] == 8 and row["peak_vs_thesis"] is None
    assert "not compared here" in thesis_memory_lines(smoke)[0]


def test_thesis_claims_get_verdicts_computed_from_the_results(tmp_path):
    from study.reporting import claims, significance
    from study.reporting.study_data import load_study

    # minilm + Lion is 0.1 above every other setting on every query; modernbert's optimizers are identical
    study = load_study(write_fixture_study(tmp_path, models=("minilm", "modernbert")))
    comparisons = significance.compare_optimizers(study, list(THESIS_TABLES["Table 5.1"].metrics), n_resamples=2000)
    found = {f.claim: f for f in claims.check_claims(study, comparisons, n_resamples=2000)}
    best = found["modernbert + lion best on nDCG@10"]
    assert best.verdict == claims.CONTRADICTED and best.difference == pytest.approx(-0.1)
    assert best.evidence.startswith("minilm + lion leads")
    assert found["MiniLM: AdamW better on TREC metrics (nDCG@10)"].verdict == claims.CONTRADICTED
    assert found["MiniLM: Lion better (MRR@10)"].verdict == claims.SUPPORTED
    assert found["GTE: AdamW better than Lion (nDCG@10)"].verdict == claims.UNTESTABLE  # no gte in this study
    smoother = found["Lion's evaluation loss is smoother"]  # 4 model x seed pairs, each 0.125 lower for Lion
    assert smoother.difference == pytest.approx(-0.125) and smoother.verdict == claims.UNRESOLVED  # 4 pairs: p >= 1/8
    assert found["No universal optimizer"].evidence.endswith("minilm Lion, modernbert neither")
    assert found["No universal optimizer"].verdict == claims.UNRESOLVED
    # significant over queries, yet the seeds disagree in sign: nothing is decided
    assert claims._verdict(0.03, 0.009, -1, seed_mean=0.03, ci=0.15) == claims.UNRESOLVED
    assert claims._verdict(0.03, 0.009, -1, seed_mean=0.03, ci=0.01) == claims.CONTRADICTED


def test_report_has_the_claims_section_saying_stand_ins_at_small_scale(smoke_report):
    _, paths = smoke_report
    section = paths.markdown.read_text().split("## The thesis's claims, checked")[1].split("## Efficiency")[0]
    assert "Lion's gradient norms are steadier" in section and "stand-in models" in section
    rows = _csv(paths.directory / "tables" / "thesis_claims.csv")
    assert len(rows) == 9 and {r["verdict"] for r in rows} <= {"supported", "contradicted", "not resolved", "not testable"}
