"""The study through a real local Ray Tune cluster, end to end."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from eval.measures import METRICS
from study import results
from study.grids import restrict
from study.orchestrate import run_study
from study.run import report

pytestmark = pytest.mark.ray


# The budget for a whole study's console at the default verbosity.
CONSOLE_LINE_BUDGET = 80


@pytest.fixture(scope="module")
def smoke_run(ray_cluster, tmp_path_factory):
    """`python -m study.run --grid thesis --scale smoke` through the CLI, once per module: its
    outcome and the console it printed (Python-level output; the session's Ray does not forward
    trial processes' logs, which trainables/quiet_logs.py quiets and tests/test_console.py checks)."""
    from study import grids
    from study.orchestrate import collect
    from study.run import main

    storage = tmp_path_factory.mktemp("smoke")
    capture = io.StringIO()
    with contextlib.redirect_stdout(capture), contextlib.redirect_stderr(capture):
        code = main(["--grid", "thesis", "--scale", "smoke", "--storage", str(storage), "--name", "smoke-test"])
    spec = grids.build_study("thesis", scale="smoke", name="smoke-test", storage=str(storage))
    (storage / "console.txt").write_text(capture.getvalue())  # beside the study, to read when a test fails
    return code, collect(spec), capture.getvalue()


def test_smoke_grid_console_is_short_and_names_the_study_directory_first(smoke_run):
    code, outcome, console = smoke_run
    assert code == 0
    lines = console.splitlines()
    assert len(lines) < CONSOLE_LINE_BUDGET, console
    first_trial = next(i for i, line in enumerate(lines) if line.startswith("Study: 0/6 trials done, 1 running"))
    assert lines.index(f"Study directory: {outcome.study_dir}") < first_trial
    assert "== Status ==" not in console and "Result logdir" not in console  # Tune's table is off by default
    assert "classification head" in console  # said once, in place of transformers' per-trial report
    manifest = json.loads((outcome.study_dir / "manifest.json").read_text())
    assert manifest["command"].startswith("python -m study.run --grid thesis --scale smoke --storage ")
    assert "- project commit " in (outcome.study_dir / "report" / "report.md").read_text()
    progress = [line for line in lines if line.startswith("Study: ")]
    assert any(", ETA " in line for line in progress), progress
    assert progress[-1].startswith("Study: 6/6 trials done, 0 running, 0 pending; steps ")
    assert lines[-1].startswith("  report: "), lines[-3:]  # nothing after the final summary
    best = lines.index(next(line for line in lines if line.startswith("Best checkpoint by builtin-smoke-dl/nDCG@10: ")))
    assert lines[best + 2].startswith('  load it: AutoModelForSequenceClassification.from_pretrained("')


def test_smoke_grid_runs_every_trial_for_every_epoch(smoke_run, smoke_study):
    _, outcome, _ = smoke_run
    spec = smoke_study

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


@pytest.fixture(scope="module")
def diverging_run(ray_cluster, tmp_path_factory):
    """MiniLM, one epoch of 64 pairs; Lion at lr 1e38, which overflows at once."""
    from study.grids import build_study
    from study.spec import StudySpec

    storage = tmp_path_factory.mktemp("diverging")
    smoke = build_study("thesis", scale="smoke", name="diverging")
    spec = restrict(smoke, models=["minilm"], epochs=1, storage=str(storage)).model_dump()
    for trial in spec["trials"]:
        trial["training"]["data"]["max_pairs"] = 64
    spec["trials"][1]["optimizer"]["lr"] = 1e38  # lion: overflows at once
    return run_study(StudySpec.model_validate(spec), verbose=0)


def test_a_diverging_trial_fails_alone_and_is_listed(diverging_run):
    outcome = diverging_run
    status = {t.name: t for t in outcome.trials}
    assert status["minilm-adamw"].status == "finished"
    assert status["minilm-lion"].status == "failed"
    assert "NonFiniteLossError: training loss became nan" in status["minilm-lion"].error

    table = results.summary_rows(outcome.trials, outcome.columns)
    failed_rows = [r for r in table if r["Optimizer"] == "lion"]
    assert [r["Epoch"] for r in failed_rows] == [0]  # epoch 0 was evaluated before it diverged
    assert failed_rows[0]["Status"].startswith("failed: NonFiniteLossError: training loss became nan")
    assert all(r["Status"] == "ok" for r in table if r["Optimizer"] == "adamw")


def test_the_best_checkpoint_is_kept_with_the_last_and_exports_to_a_model_folder(smoke_run, tmp_path, capsys, monkeypatch):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from study.export import best_checkpoint, main

    _, outcome, _ = smoke_run
    for trial in outcome.trials:  # retention: the trial's best epoch and its last, nothing else
        kept = sorted(p.name for p in Path(trial.trial_dir).glob("checkpoint_*"))
        best_epoch = max(trial.rows, key=lambda r: r["builtin-smoke-dl/nDCG@10"])["epoch"]
        wanted = {r["checkpoint_dir_name"] for r in trial.rows if r["epoch"] in (best_epoch, trial.rows[-1]["epoch"])}
        assert kept == sorted(wanted), trial.name

    best = best_checkpoint(outcome.study_dir)
    top = max((r["builtin-smoke-dl/nDCG@10"], t.name, r["epoch"]) for t in outcome.trials for r in t.rows)
    assert (best.value, best.trial.name, best.epoch) == top

    out = tmp_path / "exported"
    assert main([str(outcome.study_dir), "--out", str(out)]) == 0  # the README's export command
    assert f"Exported {best.trial.name}, epoch {best.epoch}" in capsys.readouterr().out
    assert not (out / "training_state.pt").exists()
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    original = AutoModelForSequenceClassification.from_pretrained(best.path).eval()
    batch = tokenizer(["a query", "a query"], ["a passage", "another one"], padding=True, return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, original(**batch).logits)
    card = (out / "README.md").read_text()
    best_row = next(r for r in best.trial.rows if r["epoch"] == best.epoch)
    assert f"| {best.epoch} ◀ | {best_row['builtin-smoke-dl/nDCG@10']:.4f} |" in card
    assert "is a tiny stand-in for" in card  # the caveat
    assert "python -m study.run --grid thesis --scale smoke --storage " in card  # the command, from manifest.json

    one = tmp_path / "one-trial"
    assert main([str(outcome.study_dir), "--trial", "minilm-adamw", "--out", str(one)]) == 0
    assert json.loads((one / "training_config.json").read_text())["optimizer"]["name"] == "adamw"
    assert main([str(outcome.study_dir), "--trial", "nope", "--out", str(tmp_path / "x")]) == 2
    assert "is not a trial of" in capsys.readouterr().err

    # No Hugging Face token (none here, and no network): the folder is written, the push refused with what to do.
    monkeypatch.setattr("huggingface_hub.get_token", lambda: None)
    pushed = tmp_path / "to-push"
    assert main([str(outcome.study_dir), "--out", str(pushed), "--push-to-hub", "someone/reranker"]) == 2
    assert "needs a Hugging Face token: set HF_TOKEN" in capsys.readouterr().err and (pushed / "README.md").exists()


def test_two_studies_compared_side_by_side_with_paired_tests(smoke_run, diverging_run, capsys):
    from study.report import main

    _, smoke, _ = smoke_run
    assert main([str(smoke.study_dir), str(diverging_run.study_dir), "--resamples", "500"]) == 0  # the README's compare command
    out = capsys.readouterr().out
    assert f"  A = smoke-test: scale smoke, 6 trials, seeds 12 ({smoke.study_dir})" in out
    assert f"  B = diverging: scale smoke, 2 trials, seeds 12 ({diverging_run.study_dir})" in out
    table = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith(("minilm-", "gte-"))}
    assert table["minilm-adamw"][1:4] == ["3", "/", "1"] and table["minilm-lion"][1:4] == ["3", "/", "0"]
    assert table["gte-lion"][1:4] == ["3", "/", "-"]  # only in A: shown, not tested
    tested = [line.split() for line in out.splitlines() if line.startswith("B ") and not line.startswith("B vs A")]
    assert {row[1] for row in tested} == {"minilm-adamw", "minilm-lion"}
    assert all(row[5] == ("20" if row[2] == "builtin-smoke-dl" else "30") for row in tested)
    assert "B vs A: " in out and "Caveat: the tests treat queries as the sample" in out


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
