"""One trial end to end without Ray: training, evaluation files, checkpoints, exact resume."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from eval.measures import METRICS
from study.grids import restrict
from study.spec import TrialSpec
from trainables.trial import STEP_LOG, is_measurement, run_trial
from trainables.training import NonFiniteLossError


def _trial(smoke_study, *, model="minilm", optimizer="lion", **training) -> TrialSpec:
    spec = restrict(smoke_study, models=[model], optimizers=[optimizer]).trials[0].model_dump()
    spec["training"]["data"]["max_pairs"] = 96
    spec["training"]["log_every"] = 2
    spec["training"].update(training)
    return TrialSpec.model_validate(spec)


class Recorder:
    """A report function that keeps every epoch's metrics and a copy of its checkpoint."""

    def __init__(self, root: Path):
        self.root, self.metrics, self.checkpoints = root, [], []

    def __call__(self, metrics: dict, checkpoint_dir: Path) -> None:
        self.metrics.append(dict(metrics))
        kept = self.root / f"epoch{metrics['epoch']}"
        shutil.copytree(checkpoint_dir, kept)
        self.checkpoints.append(kept)


def _comparable(metrics: dict) -> dict:
    """Metrics that a resumed trial must reproduce exactly: not timings or memory measurements."""
    return {k: v for k, v in metrics.items() if not is_measurement(k)}


def test_trial_reports_every_epoch_with_every_metric(smoke_study, tmp_path):
    spec = _trial(smoke_study)
    recorder = Recorder(tmp_path / "ckpt")
    run_trial(spec, trial_dir=tmp_path / "trial", report=recorder)

    assert [m["epoch"] for m in recorder.metrics] == [0, 1, 2, 3]
    for metrics in recorder.metrics:
        for eval_set in spec.evaluation:
            for metric in (*METRICS, "eval_loss"):
                assert 0.0 <= metrics[f"{eval_set.name}/{metric}"] < 10.0
        assert metrics["stand_in_for"] == "microsoft/MiniLM-L12-H384-uncased"
    assert "train_loss" not in recorder.metrics[0] and recorder.metrics[3]["global_step"] == 18
    runs = sorted(p.name for p in (tmp_path / "trial" / "runs").iterdir())
    assert runs == sorted(f"{e.name}.epoch{n}.trec" for e in spec.evaluation for n in range(4))
    per_query = json.loads((tmp_path / "trial" / "per_query" / f"{spec.evaluation[0].name}.epoch3.json").read_text())
    assert set(per_query) == set(METRICS) and len(per_query["nDCG@10"]) >= 10
    steps = [json.loads(line) for line in (tmp_path / "trial" / STEP_LOG).read_text().splitlines()]
    assert [s["step"] for s in steps] == list(range(2, 19, 2))  # 6 steps an epoch, a line every 2
    assert set(steps[0]) == {"epoch", "step", "loss", "lr", "grad_norm", "pairs_per_s"}


def test_checkpoint_is_a_loadable_reranker(smoke_study, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    recorder = Recorder(tmp_path / "ckpt")
    run_trial(_trial(smoke_study, epochs=1), trial_dir=tmp_path / "trial", report=recorder)
    last = recorder.checkpoints[-1]
    assert TrialSpec.model_validate_json((last / "trial_spec.json").read_text()).training.epochs == 1
    model = AutoModelForSequenceClassification.from_pretrained(last)
    tokenizer = AutoTokenizer.from_pretrained(last)
    logits = model(**tokenizer(["a query"], ["a passage"], return_tensors="pt")).logits
    assert logits.shape == (1, 1)


@pytest.mark.parametrize(("model", "optimizer"), [("minilm", "lion"), ("modernbert", "adamw")])
def test_resume_after_epoch_1_ends_like_an_uninterrupted_trial(smoke_study, tmp_path, model, optimizer):
    spec = _trial(smoke_study, model=model, optimizer=optimizer)
    full = Recorder(tmp_path / "full")
    run_trial(spec, trial_dir=tmp_path / "full-trial", report=full)

    class StopAfterEpoch1(Exception):
        pass

    first = Recorder(tmp_path / "first")

    def report_then_stop(metrics: dict, checkpoint_dir: Path) -> None:
        first(metrics, checkpoint_dir)
        if metrics["epoch"] == 1:
            raise StopAfterEpoch1

    with pytest.raises(StopAfterEpoch1):
        run_trial(spec, trial_dir=tmp_path / "resumed-trial", report=report_then_stop)
    resumed = Recorder(tmp_path / "resumed")
    run_trial(spec, trial_dir=tmp_path / "resumed-trial", report=resumed, restore_from=first.checkpoints[-1])

    assert [m["epoch"] for m in resumed.metrics] == [2, 3]
    for uninterrupted, after_resume in zip(full.metrics[2:], resumed.metrics):
        assert _comparable(after_resume) == _comparable(uninterrupted)


def test_diverging_trial_stops_with_the_reason(smoke_study, tmp_path):
    spec = _trial(smoke_study, epochs=1)
    data = spec.model_dump()
    data["optimizer"]["lr"] = 1e38  # Lion moves every weight by lr: the activations overflow
    with pytest.raises(NonFiniteLossError, match=r"training loss became nan by step \d+ \(epoch 1\)"):
        run_trial(TrialSpec.model_validate(data), trial_dir=tmp_path, report=lambda m, c: None)
