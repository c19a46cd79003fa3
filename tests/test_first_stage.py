"""The first stage as a baseline: the candidates' own order, scored once, shown beside every reranker."""

from __future__ import annotations

import json
import math

import pytest

from eval import measures
from study import results
from study.data.registry import load_eval_set
from study.grids import restrict
from study.reporting import tables
from study.reporting.study_data import load_study
from study.reporting.thesis_numbers import THESIS_TABLES
from study.spec import TrialSpec
from study.tracking.progress import progress_line
from trainables.trial import run_trial


def _one_epoch_trial(smoke_study) -> TrialSpec:
    spec = restrict(smoke_study, models=["minilm"], optimizers=["adamw"], epochs=1).trials[0].model_dump()
    spec["training"]["data"]["max_pairs"] = 32
    spec["training"]["heldout_pairs"] = 0  # 32 held out of 32 would leave nothing to train on (refused)
    return TrialSpec.model_validate(spec)


@pytest.fixture(scope="module")
def smoke_trial(tmp_path_factory):
    """One smoke trial, written as Tune would: <study>/<trial>/params.json and result.json."""
    from study.grids import build_study

    spec = _one_epoch_trial(build_study("thesis", scale="smoke", name="first-stage"))
    study_dir = tmp_path_factory.mktemp("study")
    trial_dir = study_dir / "minilm-adamw-00000"
    reported: list[dict] = []
    run_trial(spec, trial_dir=trial_dir, report=lambda metrics, checkpoint: reported.append(dict(metrics)))
    (trial_dir / "params.json").write_text(json.dumps({"trial": spec.model_dump(mode="json")}))
    (trial_dir / "result.json").write_text("".join(json.dumps(m) + "\n" for m in reported))
    return spec, study_dir, trial_dir, reported


def test_the_first_stage_is_scored_once_on_the_same_candidates(smoke_trial):
    spec, _, trial_dir, reported = smoke_trial
    assert [m["epoch"] for m in reported] == [0, 1]
    assert not any(k.startswith("first_stage/") for k in reported[1])  # once, beside epoch 0
    for eval_spec in spec.evaluation:
        eval_set = load_eval_set(eval_spec)
        # by hand: the reranked candidates (depth included) in their own order
        run = {
            q: {d: float(-rank) for rank, d in enumerate(docs[: eval_spec.depth])}
            for q, docs in eval_set.candidates.items()
        }
        expected, _ = measures.evaluate(run, eval_set.qrels, binary_rel_threshold=eval_set.binary_rel_threshold)
        got = {k.removeprefix(f"first_stage/{eval_set.name}/"): v for k, v in reported[0].items() if
               k.startswith(f"first_stage/{eval_set.name}/")}
        assert got == pytest.approx(expected)
        assert 0 < got["nDCG@10"] < 1
        # not the reranker's epoch-0 numbers: the untrained model orders the candidates differently
        assert got["nDCG@10"] != reported[0][f"{eval_set.name}/nDCG@10"]
        assert (trial_dir / "runs" / f"{eval_set.name}.first_stage.trec").stat().st_size > 0
        per_query = json.loads((trial_dir / "per_query" / f"{eval_set.name}.first_stage.json").read_text())
        assert set(per_query["nDCG@10"]) == set(eval_set.qrels)


def test_every_table_and_the_progress_line_show_the_first_stage(smoke_trial):
    spec, study_dir, _, reported = smoke_trial
    trials = results.load_trials(study_dir)
    dl = spec.evaluation[0].name
    baseline = reported[0][f"first_stage/{dl}/nDCG@10"]

    columns = results.table_columns([e.model_dump() for e in spec.evaluation])
    summary = results.summary_rows(trials, columns)
    assert [r["Model"] for r in summary] == [results.FIRST_STAGE_LABEL, "minilm*", "minilm*"]
    assert summary[0]["nDCG@10"] == baseline and summary[0]["Status"] == "baseline"

    study = load_study(study_dir)
    for shape in THESIS_TABLES.values():
        table = tables.build_table(study, shape)
        first = table.rows[0]
        assert first.baseline and first.model == results.FIRST_STAGE_LABEL
        for header, key in table.keys.items():
            assert first.cells[header].mean == reported[0][f"first_stage/{key}"]
        grid = tables.result_grid(table, eval_note="")
        assert grid.rows[0][:3] == [results.FIRST_STAGE_LABEL, "-", "-"]
        assert any(note.startswith(results.FIRST_STAGE_LABEL) for note in grid.notes)
    assert math.isnan(first.cells[header].half_width)  # deterministic: no interval

    line = progress_line(total=1, done=1, failed=0, running=0, metric=f"{dl}/nDCG@10", best=None, first_stage=baseline)
    assert line.endswith(f"first stage {baseline:.4f}")


def test_the_report_tests_each_trained_model_against_the_first_stage(smoke_trial):
    from study.reporting.first_stage import compare_with_first_stage, first_stage_metrics
    from study.reporting.report import write_report

    spec, study_dir, _, reported = smoke_trial
    study = load_study(study_dir)
    metrics = first_stage_metrics(study)
    # each set's own table metrics, from the spec (the smoke grid's are Table 5.1's, rel >= 1)
    assert metrics == [(e.name, m) for e in spec.evaluation for m in e.table_metrics]
    assert sorted(metrics) == sorted((study.eval_set(role), m) for role, m in THESIS_TABLES["Table 5.1"].metrics)
    comparisons = compare_with_first_stage(study, metrics, n_resamples=200)
    assert len(comparisons) == len(metrics)  # one trial, trained one epoch, every table metric
    for c in comparisons:
        assert c.epoch == 1
        assert c.first_stage == pytest.approx(reported[0][f"first_stage/{c.eval_set}/{c.metric}"])
        assert c.reranker == pytest.approx(reported[1][f"{c.eval_set}/{c.metric}"])
        assert 0 <= c.t_p_holm <= 1 or math.isnan(c.t_p_holm)
        assert c.randomization_p <= c.randomization_p_holm <= 1

    paths = write_report(study_dir, plots=False, n_resamples=200)
    text = paths.markdown.read_text()
    assert "## Significance: each trained model vs the first stage" in text
    assert f"{spec.name} (epoch 1): " in text
    assert (paths.directory / "tables" / "vs_first_stage.csv").read_text().count("\n") == 1 + len(metrics)
    assert f"| {results.FIRST_STAGE_LABEL} |" in text  # the baseline row of the report's tables


def test_a_study_on_its_own_collection_is_tested_on_each_sets_own_metrics(tmp_path):
    # A --config study evaluating a validation set and then a test set, each with its own table
    # metrics: the first-stage tests follow them (the thesis's roles would put Table 5.1's
    # measures on the validation set and only MRR@10 on the test set).
    from study.reporting.first_stage import (
        compare_with_first_stage,
        first_stage_metrics,
        summary_lines,
    )

    evaluation = [
        {"name": "my-validation", "table_metrics": ["nDCG@10"]},
        {"name": "my-test", "table_metrics": ["nDCG@10", "P(rel=2)@10"]},
    ]
    trial = {
        "model": {"name": "minilm", "checkpoint": "standin:bert-tiny"},
        "optimizer": {"name": "adamw"},
        "training": {"epochs": 1, "seed": 12},
        "evaluation": evaluation,
    }
    study_dir = tmp_path / "own"
    trial_dir = study_dir / "minilm-adamw-00000"
    (trial_dir / "per_query").mkdir(parents=True)
    (study_dir / "study_spec.json").write_text(json.dumps({"name": "own", "scale": "demo", "trials": [trial]}))
    (trial_dir / "params.json").write_text(json.dumps({"trial": trial}))
    (trial_dir / "result.json").write_text("\n".join(json.dumps({"epoch": e}) for e in (0, 1)) + "\n")
    queries = [f"q{i}" for i in range(8)]
    for eval_set in ("my-validation", "my-test"):
        for stem, base in (("first_stage", 0.5), ("epoch1", 0.3)):
            values = {m: {q: base + 0.01 * i for i, q in enumerate(queries)} for m in ("nDCG@10", "P(rel=2)@10", "AP")}
            (trial_dir / "per_query" / f"{eval_set}.{stem}.json").write_text(json.dumps(values))

    study = load_study(study_dir)
    assert first_stage_metrics(study) == [("my-validation", "nDCG@10"), ("my-test", "nDCG@10"), ("my-test", "P(rel=2)@10")]
    comparisons = compare_with_first_stage(study, first_stage_metrics(study), n_resamples=200)
    assert [(c.eval_set, c.metric) for c in comparisons] == first_stage_metrics(study)
    assert all(c.reranker - c.first_stage == pytest.approx(-0.2) for c in comparisons)
    [line] = summary_lines(comparisons)  # nDCG@10 is on both sets: each is named
    assert "nDCG@10 on my-validation (-0.2000), nDCG@10 on my-test (-0.2000)" in line
