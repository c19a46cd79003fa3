"""The optimizer comparison (`--compare`): its spec, its confirmation study and its report's parts,
without Ray (the README's smoke run exercises the whole command)."""

from __future__ import annotations

import argparse
import json
import math

import pytest
import yaml

from study.reporting.compare import _pairwise_tests, _timing_rows, validation_curve
from study.results import TrialResult
from study.run import build_parser, main
from study.search.compare import (
    confirmation_study,
    parse_confirm_seeds,
    resolve_compare,
)


def _args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["--compare", *argv])


def test_every_optimizer_gets_the_same_search(tmp_path):
    spec = resolve_compare(
        _args("adamw", "lion", "adafactor", "--models", "minilm", "--budget", "4", "--scale", "smoke", "--storage", str(tmp_path))
    )
    search = spec.search_spec()
    assert [p.name for p in search.pairs] == ["minilm-adamw", "minilm-lion", "minilm-adafactor"]
    assert (search.num_samples, search.seed, search.scheduler) == (4, 12, "asha")  # one budget, one TPE seed, one rule
    assert spec.confirm_seeds == (13, 14, 15)  # fresh: the search trains with seed 12
    assert search.storage == str(spec.directory) and search.name == "search"
    adafactor = next(p for p in search.pairs if p.name == "minilm-adafactor")
    assert set(adafactor.ranges) == {"lr", "beta2_decay", "weight_decay", "schedule", "warmup_steps"}


def test_confirm_seeds_take_a_count_or_a_list():
    assert parse_confirm_seeds("2") == (13, 14)
    assert parse_confirm_seeds("21,5") == (21, 5)
    with pytest.raises(ValueError, match="at least 1 seed"):
        parse_confirm_seeds("0")
    with pytest.raises(ValueError, match="must be fresh"):
        resolve_compare(_args("adamw", "lion", "--confirm-seeds", "12,13", "--scale", "smoke"))


def test_confirmation_reruns_default_and_tuned_with_every_seed(tmp_path):
    spec = resolve_compare(
        _args("adamw", "lion", "--models", "minilm", "--confirm-seeds", "2", "--scale", "smoke", "--storage", str(tmp_path))
    )
    pairs = {p.name: p for p in spec.search_spec().pairs}
    tuned_lion = dict(pairs["minilm-lion"].thesis_point) | {"lr": 3e-5, "beta1": 0.85}
    study = confirmation_study(spec, {"minilm-adamw": pairs["minilm-adamw"].thesis_point, "minilm-lion": tuned_lion})
    names = [t.name for t in study.trials]
    # AdamW's selection is its default: it runs once per seed; Lion runs default and tuned.
    assert names == [
        "minilm-adamw-default_s13", "minilm-adamw-default_s14",
        "minilm-lion-default_s13", "minilm-lion-default_s14",
        "minilm-lion-tuned_s13", "minilm-lion-tuned_s14",
    ]
    tuned = next(t for t in study.trials if t.name == "minilm-lion-tuned_s13")
    assert (tuned.optimizer.lr, tuned.optimizer.betas[0]) == (3e-5, 0.85)
    assert [e.name for e in tuned.evaluation] == [e.name for e in spec.search_spec().test_sets]  # test sets, not validation
    assert study.storage == str(spec.directory) and study.name == "confirm"


def test_print_spec_shows_the_full_scale_study(capsys):
    assert main(["--compare", "adamw", "lion", "adafactor", "--models", "minilm", "--budget", "20", "--print-spec"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["optimizers"] == ["adamw", "lion", "adafactor"] and printed["confirm_seeds"] == [13, 14, 15]
    search = printed["search"]
    assert search["scale"] == "full" and search["num_samples"] == 20 and search["rungs"] == "steps"
    assert [p["trial"]["model"]["checkpoint"] for p in search["pairs"]] == ["microsoft/MiniLM-L12-H384-uncased"] * 3


def _trial(rows: list[dict], *, steps: int, trial_dir: str = "", seed: int = 13, optimizer: str = "adamw") -> TrialResult:
    return TrialResult(
        name="t", model="minilm", optimizer=optimizer, checkpoint="", stand_in_for="", epochs_planned=2,
        status="finished", error="", trial_dir=trial_dir, rows=rows, steps=steps, seed=seed,
    )


KEY = "val/nDCG@10"


def test_time_to_target_counts_steps_and_seconds_until_the_target():
    slow = _trial(
        [
            {"epoch": 0, "global_step": 0, KEY: 0.2},
            {"epoch": 0, "global_step": 5, KEY: 0.5, "mid_epoch": True},
            {"epoch": 1, "global_step": 10, KEY: 0.7, "train_seconds": 20.0},
            {"epoch": 2, "global_step": 20, KEY: 0.8, "train_seconds": 30.0},
        ],
        steps=20,
    )
    fast = _trial([{"epoch": 0, "global_step": 0, KEY: 0.3}, {"epoch": 1, "global_step": 10, KEY: 0.78, "train_seconds": 10.0}], steps=10)
    stopped = _trial([{"epoch": 0, "global_step": 0, KEY: 0.1}, {"epoch": 1, "global_step": 10, KEY: 0.2, "train_seconds": 9.0}], steps=10)
    assert validation_curve(slow, KEY) == [(0, 0.0, 0.2), (5, 10.0, 0.5), (10, 20.0, 0.7), (20, 50.0, 0.8)]
    rows = {r["optimizer"]: r for r in _timing_rows({"adamw": [slow], "lion": [stopped, fast]}, KEY, 0.95, 2)}
    # target 0.95 * 0.8 = 0.76: AdamW reaches it at step 20 (50 s), Lion's best trial at step 10 (10 s)
    assert (rows["adamw"]["steps to 95% of best"], rows["adamw"]["train s to 95%"]) == (20, 50.0)
    assert (rows["lion"]["steps to 95% of best"], rows["lion"]["train s to 95%"]) == (10, 10.0)
    assert (rows["lion"]["search steps"], rows["lion"]["search train s"], rows["lion"]["stopped early"]) == (20, 19.0, 2)
    assert rows["adamw"]["search trials"] == "1/2"


def test_pairwise_tests_are_holm_corrected_per_model(tmp_path):
    def run(name: str, values: list[float], seed: int, optimizer: str) -> TrialResult:
        directory = tmp_path / name
        (directory / "per_query").mkdir(parents=True)
        per_query = {"nDCG@10": {f"q{i}": v for i, v in enumerate(values)}}
        (directory / "per_query" / "test.epoch1.json").write_text(json.dumps(per_query))
        return _trial([{"epoch": 1}], steps=1, trial_dir=str(directory), seed=seed, optimizer=optimizer)

    low = [0.1 * (i % 5) for i in range(40)]
    high = [v + 0.3 for v in low]
    chosen = {
        "adamw": [run("a13", low, 13, "adamw"), run("a14", low, 14, "adamw")],
        "lion": [run("l13", high, 13, "lion"), run("l14", high, 14, "lion")],
        "adafactor": [run("f13", low, 13, "adafactor"), run("f14", low, 14, "adafactor")],
    }
    tests = _pairwise_tests(chosen, [("test", "nDCG@10")], n_resamples=2000)
    # 3 optimizer pairs x (2 seeds + their mean)
    assert [(t["a"], t["b"], t["seed"]) for t in tests][:3] == [("adamw", "lion", "13"), ("adamw", "lion", "14"), ("adamw", "lion", "mean")]
    assert len(tests) == 9
    lion_wins = [t for t in tests if "lion" in (t["a"], t["b"])]
    assert all(t["verdict"] == "significant" and t["p t-test (Holm)"] >= t["p t-test"] for t in lion_wins)
    same = [t for t in tests if {t["a"], t["b"]} == {"adamw", "adafactor"}]
    assert all(t["verdict"] == "not significant" and t["Δ (b-a)"] == 0 for t in same)
    assert all(math.isnan(t["p t-test"]) or 0 <= t["p t-test"] <= 1 for t in tests)


def test_hyperparameter_table_has_a_column_for_every_optimizers_hyperparameters():
    from study.search.report import hyperparameter_rows

    pairs = [
        {"model": "minilm", "optimizer": "adamw", "thesis": {"optuna_trial": 0, "params": {"lr": 2e-5, "beta1": 0.9}}},
        {"model": "minilm", "optimizer": "adafactor", "thesis": {"optuna_trial": 0, "params": {"lr": 1e-3, "beta2_decay": -0.8}}},
    ]
    rows = hyperparameter_rows(pairs)
    assert [list(r) for r in rows] == [["Model", "Optimizer", "Config", "lr", "beta1", "beta2_decay"]] * 2
    assert (rows[0]["beta2_decay"], rows[1]["beta1"]) == ("-", "-")
