"""What the console shows, without Ray: the study's progress line with its ETA, and the trial
processes' log lines that are dropped (and those that are not)."""

from __future__ import annotations

import logging

import pytest

from study.tracking.progress import Eta, TrialSteps, format_duration, progress_line
from trainables.quiet_logs import ExpectedHeadReport, quiet_trial_logs

HEAD_ONLY = (
    "\x1b[1mBertForSequenceClassification LOAD REPORT\x1b[0m from: /models/minilm\n"
    "Key               | Status  | \n------------------+---------+-\n"
    "classifier.bias   | MISSING | \nclassifier.weight | MISSING | \n\n"
    "Notes:\n- MISSING:\tthose params were newly initialized because missing from the checkpoint."
)


def _record(message: str) -> logging.LogRecord:
    return logging.LogRecord("transformers.modeling_utils", logging.WARNING, __file__, 1, message, None, None)


def test_a_load_report_listing_only_the_new_head_is_dropped():
    assert not ExpectedHeadReport().filter(_record(HEAD_ONLY))
    unexpected = HEAD_ONLY.replace("classifier.bias   | MISSING", "cls.predictions.bias | UNEXPECTED")
    assert not ExpectedHeadReport().filter(_record(unexpected))  # unused pre-training heads


@pytest.mark.parametrize(
    "row",
    ["bert.encoder.layer.0.attention.self.query.weight | MISSING", "classifier.weight | MISMATCH"],
)
def test_a_load_report_with_anything_else_is_kept(row):
    assert ExpectedHeadReport().filter(_record(HEAD_ONLY.replace("classifier.bias   | MISSING", row)))
    assert ExpectedHeadReport().filter(_record("some other warning"))


def test_trial_processes_drop_ray_trains_checkpoint_lines():
    storage_logger = logging.getLogger("ray.train._internal.storage")
    before = storage_logger.level
    try:
        quiet_trial_logs()
        assert not storage_logger.isEnabledFor(logging.INFO)  # "Checkpoint successfully created at: ..."
        assert any(isinstance(f, ExpectedHeadReport) for f in logging.getLogger("transformers.modeling_utils").filters)
    finally:
        storage_logger.setLevel(before)


def test_eta_counts_remaining_steps_at_the_measured_rate():
    eta = Eta()
    a, b = TrialSteps(), TrialSteps()
    a.update({"total_steps": 100, "global_step": 0, "time_total_s": 5.0})
    a.update({"total_steps": 100, "global_step": 50, "time_total_s": 30.0})  # 0.5 s per step
    b.update({"total_steps": 100, "global_step": 0, "time_total_s": 4.0})
    eta.trials = {"a": a, "b": b}
    assert eta.steps(total_trials=4) == (50, 400)  # two pending trials count as 100 steps each
    assert eta.seconds_left(total_trials=4, parallel=2) == pytest.approx(350 * 0.5 / 2)
    assert Eta().seconds_left(total_trials=4, parallel=2) is None  # nothing measured yet: no ETA


def test_a_restored_trial_times_only_the_steps_it_ran():
    steps = TrialSteps()
    steps.update({"total_steps": 90, "global_step": 60, "time_total_s": 100.0})
    steps.update({"total_steps": 90, "global_step": 90, "time_total_s": 115.0})
    assert steps.timed == (30, 15.0)


def test_progress_line():
    line = progress_line(total=6, done=2, failed=1, running=2, metric="m", best=None, steps=(340, 1020), eta_s=200)
    assert line == "Study: 3/6 trials done (1 failed), 2 running, 1 pending; steps 340/1020 (33%), ETA 3m20s; no results yet"
    assert format_duration(3 * 3600 + 65) == "3h01m" and format_duration(9) == "9s"


def test_a_checkpoint_evaluated_in_the_driver_prints_no_loading_bar(tmp_path, capfd):
    # The search evaluates its selected CPU checkpoints on the test sets in the driver, whose console
    # shows the progress line: transformers' "Loading weights" bar once printed there per checkpoint.
    import transformers

    from study.grids import build_study
    from trainables.evaluate_checkpoint import evaluate_checkpoint
    from trainables.models import load_cross_encoder

    trial = build_study("thesis", scale="smoke").trials[0]
    tokenizer, model = load_cross_encoder(trial.model)
    model.save_pretrained(tmp_path / "checkpoint")
    tokenizer.save_pretrained(tmp_path / "checkpoint")
    transformers.utils.logging.enable_progress_bar()  # as in a fresh driver
    capfd.readouterr()

    metrics = evaluate_checkpoint(trial, tmp_path / "checkpoint", trial.evaluation[:1], out_dir=tmp_path / "out", run_tag="t", epoch=1)

    assert metrics and "Loading weights" not in capfd.readouterr().err
