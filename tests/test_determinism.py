"""training.deterministic: on by default (the thesis's §4.4.2), reaches the trial, and repeats a run exactly."""

from __future__ import annotations

import os

import pytest
import torch

from study.grids import restrict
from study.spec import TrialSpec
from trainables.determinism import CUBLAS_WORKSPACE, is_deterministic
from trainables.trial import is_measurement, run_trial


def _trial(smoke_study, **training) -> TrialSpec:
    spec = restrict(smoke_study, models=["minilm"], optimizers=["lion"], epochs=1).trials[0].model_dump()
    spec["training"]["data"]["max_pairs"] = 64
    spec["training"].update(training)
    return TrialSpec.model_validate(spec)


@pytest.fixture
def torch_defaults(monkeypatch):
    """Leave the process as torch starts it: the setting is per process."""
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    yield
    torch.use_deterministic_algorithms(False)
    torch.backends.cudnn.deterministic = False


def _run(spec: TrialSpec, trial_dir) -> list[dict]:
    reports: list[dict] = []
    run_trial(spec, trial_dir=trial_dir, report=lambda metrics, _: reports.append(dict(metrics)))
    return [{k: v for k, v in m.items() if not is_measurement(k)} for m in reports]


def test_the_thesis_grid_asks_for_deterministic_operations(smoke_study):
    assert all(t.training.deterministic for t in smoke_study.trials)


def test_the_option_reaches_the_trial_and_two_runs_give_identical_metrics(smoke_study, tmp_path, torch_defaults):
    _run(_trial(smoke_study, deterministic=False), tmp_path / "off")
    assert not is_deterministic() and "CUBLAS_WORKSPACE_CONFIG" not in os.environ

    first = _run(_trial(smoke_study, deterministic=True), tmp_path / "first")
    assert is_deterministic() and os.environ["CUBLAS_WORKSPACE_CONFIG"] == CUBLAS_WORKSPACE
    second = _run(_trial(smoke_study, deterministic=True), tmp_path / "second")
    assert [m["epoch"] for m in first] == [0, 1] and "heldout_loss" in first[1]
    assert first == second  # every metric bit-identical, timings and memory aside
