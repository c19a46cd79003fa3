"""One trial end to end without Ray: training, evaluation files, checkpoints, exact resume."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from eval.measures import METRICS, metric_names
from study.grids import restrict
from study.spec import TrialSpec
from trainables.trial import STEP_LOG, is_measurement, run_trial
from trainables.training import NonFiniteLossError


def _trial(smoke_study, *, model="minilm", optimizer="lion", **training) -> TrialSpec:
    spec = restrict(smoke_study, models=[model], optimizers=[optimizer]).trials[0].model_dump()
    # 128 pairs: the smoke scale holds out 32 or more (whole queries, 33 here), 95 train: 6 steps an epoch
    spec["training"]["data"]["max_pairs"] = 128
    spec["training"]["log_every"] = 2
    spec["training"].update(training)
    return TrialSpec.model_validate(spec)


class Recorder:
    """A report function that keeps every epoch's metrics and a copy of its checkpoint."""

    def __init__(self, root: Path):
        self.root, self.metrics, self.checkpoints = root, [], []

    def __call__(self, metrics: dict, checkpoint_dir: Path | None) -> None:
        self.metrics.append(dict(metrics))
        kept = None
        if checkpoint_dir is not None:
            kept = self.root / f"step{metrics['global_step']}" if metrics.get("mid_epoch") else self.root / f"epoch{metrics['epoch']}"
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
            for metric in (*METRICS, "candidate_loss"):
                assert 0.0 <= metrics[f"{eval_set.name}/{metric}"] < 10.0
        assert 0.0 < metrics["heldout_loss"] < 10.0  # the thesis's evaluation loss, at every epoch
        assert metrics["stand_in_for"] == "microsoft/MiniLM-L12-H384-uncased"
    assert "train_loss" not in recorder.metrics[0] and recorder.metrics[3]["global_step"] == 18
    runs = sorted(p.name for p in (tmp_path / "trial" / "runs").iterdir())
    expected = [f"{e.name}.epoch{n}.trec" for e in spec.evaluation for n in range(4)]
    assert runs == sorted(expected + [f"{e.name}.first_stage.trec" for e in spec.evaluation])  # and the baseline
    per_query = json.loads((tmp_path / "trial" / "per_query" / f"{spec.evaluation[0].name}.epoch3.json").read_text())
    # the built-in DL-role set is graded (0-3): binary measures at rel >= 1 and, named apart, at rel >= 2
    assert set(per_query) == set(metric_names(2)) and len(per_query["nDCG@10"]) >= 10
    lines = [json.loads(line) for line in (tmp_path / "trial" / STEP_LOG).read_text().splitlines()]
    steps = [s for s in lines if "loss" in s]
    assert [s["step"] for s in steps] == list(range(2, 19, 2))  # 6 steps an epoch, a line every 2
    assert set(steps[0]) == {"epoch", "step", "loss", "lr", "grad_norm", "pairs_per_s"}
    # the held-out loss every 10 steps (smoke scale) inside epochs; epoch ends are in the result rows
    heldout = [s for s in lines if "heldout_loss" in s]
    assert [(s["epoch"], s["step"]) for s in heldout] == [(2, 10)]
    assert set(heldout[0]) == {"epoch", "step", "heldout_loss"} and 0.0 < heldout[0]["heldout_loss"] < 10.0


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


def test_a_trial_killed_mid_epoch_resumes_from_its_last_checkpoint_exactly(smoke_study, tmp_path):
    # 6 steps an epoch; a checkpoint every 4 steps (4, 8, 16: 12 and 18 are epoch ends), a
    # validation every 5 (a report without a checkpoint), a step-log line every 3, so the log
    # window and the epoch's loss sum are both cut by the checkpoint at step 4.
    spec = _trial(
        smoke_study, optimizer="adamw", log_every=3, checkpoint_every_steps=4, validate_every_steps=5, heldout_every=5
    )
    full = Recorder(tmp_path / "full")
    run_trial(spec, trial_dir=tmp_path / "full-trial", report=full)
    mid = [(m["global_step"], m["epoch"], c is not None) for m, c in zip(full.metrics, full.checkpoints) if m.get("mid_epoch")]
    assert mid == [(4, 0, True), (5, 0, False), (8, 1, True), (10, 1, False), (15, 2, False), (16, 2, True)]
    validated = [m for m in full.metrics if m.get("mid_epoch") and m["global_step"] % 5 == 0]
    assert all(0.0 <= m[f"{spec.evaluation[0].name}/nDCG@10"] <= 1.0 for m in validated)
    assert [m["epoch"] for m in full.metrics if not m.get("mid_epoch")] == [0, 1, 2, 3]

    class Killed(Exception):
        pass

    first = Recorder(tmp_path / "first")

    def report_until_step_8(metrics: dict, checkpoint_dir: Path | None) -> None:
        if metrics["global_step"] == 8:
            raise Killed  # dies at step 8: steps 5-8 (and epoch 1's end) are lost
        first(metrics, checkpoint_dir)

    with pytest.raises(Killed):
        run_trial(spec, trial_dir=tmp_path / "resumed-trial", report=report_until_step_8)
    step4 = next(c for m, c in zip(first.metrics, first.checkpoints) if m["global_step"] == 4)
    resumed = Recorder(tmp_path / "resumed")
    run_trial(spec, trial_dir=tmp_path / "resumed-trial", report=resumed, restore_from=step4)

    after_step4 = [m for m in full.metrics if m["global_step"] > 4]
    assert [m["global_step"] for m in resumed.metrics] == [m["global_step"] for m in after_step4]
    for uninterrupted, after_resume in zip(after_step4, resumed.metrics):
        assert _comparable(after_resume) == _comparable(uninterrupted)  # bit-identical, not close
    # The step log continues where the checkpoint was taken: the same lines from step 4 on.
    def log(trial: str) -> list[dict]:
        lines = [json.loads(line) for line in (tmp_path / trial / STEP_LOG).read_text().splitlines()]
        return [_comparable(line) for line in lines if line["step"] > 4]

    assert log("resumed-trial")[-len(log("full-trial")) :] == log("full-trial")
