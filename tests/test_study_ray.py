"""The study through a real local Ray Tune cluster, end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval.measures import METRICS
from study import results
from study.grids import restrict
from study.orchestrate import run_study
from study.run import report

pytestmark = pytest.mark.ray


def test_smoke_grid_runs_every_trial_for_every_epoch(ray_cluster, smoke_study, tmp_path):
    spec = restrict(smoke_study, storage=str(tmp_path))
    outcome = run_study(spec, verbose=0)

    assert sorted(t.name for t in outcome.trials) == sorted(t.name for t in spec.trials)
    eval_sets = [e.name for e in spec.trials[0].evaluation]
    for trial in outcome.trials:
        assert trial.status == "finished", trial.error
        assert [row["epoch"] for row in trial.rows] == [0, 1, 2, 3]
        for row in trial.rows:
            for eval_set in eval_sets:
                assert all(isinstance(row[f"{eval_set}/{m}"], float) for m in METRICS)
        assert trial.stand_in_for  # smoke models are all stand-ins, and say so
        for eval_set in eval_sets:
            for epoch in range(4):
                assert (outcome.study_dir / trial.trial_dir / "runs" / f"{eval_set}.epoch{epoch}.trec").stat().st_size > 0

    table = results.summary_rows(outcome.trials, outcome.columns)
    assert len(table) == 1 + 6 * 4  # the first stage's row, then every trial's epochs
    assert list(table[0]) == ["Model", "Optimizer", "Epoch", "nDCG@10", "MAP", "MRR@10", "R@10", "R-Prec", "P@10", "Status"]
    assert table[0]["Model"] == results.FIRST_STAGE_LABEL and isinstance(table[0]["nDCG@10"], float)
    # epoch 0 is the untrained model: the same for both optimizers of a model
    for model in ("minilm*", "gte*", "modernbert*"):
        epoch0 = [r["nDCG@10"] for r in table if r["Model"] == model and r["Epoch"] == 0]
        assert len(epoch0) == 2 and epoch0[0] == epoch0[1]

    saved = json.loads(outcome.paths["json"].read_text())
    assert len(saved) == 6 and all(len(t["rows"]) == 4 for t in saved)
    csv_lines = outcome.paths["csv"].read_text().splitlines()
    assert len(csv_lines) == 1 + 24 and f"{eval_sets[0]}/nDCG@10" in csv_lines[0]
    text = report(outcome)
    assert "* minilm is a stand-in: standin:bert-tiny in place of microsoft/MiniLM-L12-H384-uncased" in text


def test_a_diverging_trial_fails_alone_and_is_listed(ray_cluster, smoke_study, tmp_path):
    spec = restrict(smoke_study, models=["minilm"], epochs=1, storage=str(tmp_path)).model_dump()
    for trial in spec["trials"]:
        trial["training"]["data"]["max_pairs"] = 64
    spec["trials"][1]["optimizer"]["lr"] = 1e38  # lion: overflows at once
    from study.spec import StudySpec

    outcome = run_study(StudySpec.model_validate(spec), verbose=0)
    status = {t.name: t for t in outcome.trials}
    assert status["minilm-adamw"].status == "finished"
    assert status["minilm-lion"].status == "failed"
    assert "NonFiniteLossError: training loss became nan" in status["minilm-lion"].error

    table = results.summary_rows(outcome.trials, outcome.columns)
    failed_rows = [r for r in table if r["Optimizer"] == "lion"]
    assert [r["Epoch"] for r in failed_rows] == [0]  # epoch 0 was evaluated before it diverged
    assert failed_rows[0]["Status"].startswith("failed: NonFiniteLossError: training loss became nan")
    assert all(r["Status"] == "ok" for r in table if r["Optimizer"] == "adamw")


def test_a_trial_whose_worker_dies_mid_epoch_is_retried_from_its_mid_epoch_checkpoint(ray_cluster, smoke_study, tmp_path):
    import os

    from study.spec import StudySpec
    from trainables.reranker import FAULTS_ENV
    from trainables.trial import is_measurement, run_trial

    spec = restrict(smoke_study, models=["minilm"], optimizers=["adamw"], epochs=2, storage=str(tmp_path)).model_dump()
    spec["max_failures"] = 1
    training = spec["trials"][0]["training"]
    training["data"]["max_pairs"] = 96  # 6 steps an epoch (all of them trained: no held-out pairs)
    training["heldout_pairs"] = 0
    training["checkpoint_every_steps"] = 4  # mid-epoch checkpoints at steps 4 and 8
    spec = StudySpec.model_validate(spec)
    # The trial process exits when it is about to report step 12 (the end): its last checkpoint
    # is then the one at step 8, two steps into epoch 2.
    armed = Path(os.environ[FAULTS_ENV]) / f"{spec.trials[0].name}.exit-at-step-12"
    armed.touch()
    outcome = run_study(spec, verbose=0)

    assert not armed.exists()  # the worker died
    (trial,) = outcome.trials
    assert trial.status == "finished" and [row["epoch"] for row in trial.rows] == [0, 1, 2]
    reported = [json.loads(line) for line in (outcome.study_dir / trial.trial_dir / "result.json").read_text().splitlines()]
    # Retried from step 8 (from epoch 1's end it would report step 8 twice; from scratch, step 0)
    assert [(r["global_step"], bool(r.get("mid_epoch"))) for r in reported] == [
        (0, False), (4, True), (6, False), (8, True), (12, False)
    ]  # fmt: skip
    reference: list[dict] = []
    run_trial(spec.trials[0], trial_dir=tmp_path / "uninterrupted", report=lambda metrics, _: reference.append(metrics))
    expected = {k: v for k, v in reference[-1].items() if not is_measurement(k)}
    assert {k: trial.rows[-1][k] for k in expected} == expected


def test_a_trial_asking_for_gpus_the_cluster_lacks_is_refused_not_left_pending(ray_cluster, smoke_study, tmp_path, capsys):
    """Tune would keep such a trial PENDING forever on a cluster that does not grow (this one has no GPU)."""
    import yaml

    from study.run import main

    raw = smoke_study.model_dump(mode="json") | {"name": "too-big", "storage": str(tmp_path)}
    raw["trials"][1]["resources"]["gpus"] = 1
    config = tmp_path / "too-big.yaml"
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    assert main(["--config", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: 1 trials ask for more than a node of this Ray cluster has") and "\n" not in err, err
    assert f"trial {smoke_study.trials[1].name} asks for 1 GPUs, but its largest node has 2 CPUs and 0 GPUs" in err
    assert not (tmp_path / "too-big").exists()  # nothing started, so the name stays free
