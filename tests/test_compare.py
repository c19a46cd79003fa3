"""The optimizer comparison (`--compare`): its spec, its confirmation study and its report's parts,
without Ray (the README's smoke run exercises the whole command)."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from types import SimpleNamespace

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
        status="finished" if rows and rows[-1]["epoch"] >= 2 else "incomplete",  # as study/results.py reads it
        error="", trial_dir=trial_dir, rows=rows, steps=steps, seed=seed,
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
    assert (rows["adamw"]["steps to 95% of best"], rows["adamw"]["train s to 95%"]) == (20, "50.0")
    assert (rows["lion"]["steps to 95% of best"], rows["lion"]["train s to 95%"]) == (10, "10.0")
    # both Lion trials ended after epoch 1 of 2 without an error: the scheduler stopped them
    assert (rows["lion"]["search steps"], rows["lion"]["search train s"], rows["lion"]["stopped early"]) == (20, "19.0", 2)
    assert rows["adamw"]["stopped early"] == 0
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
    assert [r["Config"] for r in rows] == ["thesis", "default"]  # only AdamW and Lion have thesis settings


def test_the_search_starts_new_optimizers_from_their_default_not_the_thesis(tmp_path):
    from study.search.cli import describe

    spec = resolve_compare(_args("adamw", "adafactor", "--models", "minilm", "--scale", "smoke", "--storage", str(tmp_path)))
    text = describe(spec.search_spec(), resume=False)
    assert "minilm-adamw       starts from the thesis point" in text
    assert "minilm-adafactor   starts from the default point" in text


# ---- resume: the plumbing, with the search, the confirmation and the report stood in for ---------


@pytest.fixture
def stopped_comparison(tmp_path, monkeypatch):
    """A comparison whose driver stopped: its spec saved, its search started; the phases record calls."""
    from types import SimpleNamespace

    from study.search.run import SearchOutcome
    from study.search.spec import save, study_dir

    argv = ["adamw", "adafactor", "--models", "minilm", "--budget", "2", "--confirm-seeds", "13,14", "--scale", "smoke"]
    spec = resolve_compare(_args(*argv, "--storage", str(tmp_path), "--name", "cmp"))
    spec.directory.mkdir(parents=True)
    spec.spec_file.write_text(spec.model_dump_json(indent=2))
    search = spec.search_spec()
    save(search, study_dir(search))
    pairs = {p.name: p for p in search.pairs}
    tuned = dict(pairs["minilm-adafactor"].thesis_point) | {"lr": 3e-3}
    selected = [
        {"pair": "minilm-adamw", "selected": {"params": dict(pairs["minilm-adamw"].thesis_point)}},
        {"pair": "minilm-adafactor", "selected": {"params": tuned}},
    ]
    calls: list[tuple] = []
    status = {"confirm": "finished"}

    def run_search(search, *, address=None):
        calls.append(("search", search.name, search.max_concurrent))
        return SearchOutcome(study_dir(search), complete=True, pairs=selected)

    def run_study(study, *, address=None, resume=False, **_):
        calls.append(("confirm", study.name, resume, len(study.trials)))
        results = [
            SimpleNamespace(name=t.name, status=status.get(t.name, status["confirm"]), trial_dir=str(tmp_path / t.name))
            for t in study.trials
            if status.get(t.name) != "not started"
        ]
        return SimpleNamespace(study_dir=spec.directory / "confirm", trials=results)

    monkeypatch.setattr("study.search.run.run_search", run_search)
    monkeypatch.setattr("study.orchestrate.run_study", run_study)
    monkeypatch.setattr(
        "study.reporting.compare.write_compare_report",
        lambda d: SimpleNamespace(summary="summary", markdown=d / "compare_report.md"),
    )
    return SimpleNamespace(spec=spec, calls=calls, selected=selected, status=status)


def test_resume_continues_an_unfinished_search_then_runs_the_confirmation(stopped_comparison, capsys):
    run = stopped_comparison
    assert main(["--resume", str(run.spec.directory), "--max-concurrent", "3"]) == 0
    out = capsys.readouterr().out
    assert "Resuming comparison cmp: adamw, adafactor" in out and "report: " in out
    # the search continues (its pairs resume themselves), then the confirmation starts: AdamW kept its
    # default (one run per seed), Adafactor runs default and tuned
    assert run.calls == [("search", "search", 3), ("confirm", "confirm", False, 2 * 1 + 2 * 2)]


def test_resume_skips_a_finished_search_and_continues_the_confirmation(stopped_comparison, monkeypatch, capsys):
    from ray import tune

    from study.search.compare import confirmation_study

    run = stopped_comparison
    search_dir = run.spec.directory / "search"
    (search_dir / "best_configs.json").write_text(json.dumps({"pairs": run.selected}))
    confirm = confirmation_study(run.spec, {e["pair"]: e["selected"]["params"] for e in run.selected})
    (run.spec.directory / "confirm").mkdir()
    (run.spec.directory / "confirm" / "study_spec.json").write_text(confirm.model_dump_json())
    monkeypatch.setattr(tune.Tuner, "can_restore", staticmethod(lambda path: True))  # Tune's state is there
    assert main(["--resume", str(run.spec.directory)]) == 0
    out = capsys.readouterr().out
    assert "Search search: finished before, not run again" in out
    assert "Confirmation confirm: continuing its 6 trials" in out
    assert run.calls == [("confirm", "confirm", True, 6)]


def test_an_interrupted_comparison_says_how_to_continue_it(stopped_comparison, capsys):
    run = stopped_comparison
    run.status["confirm"] = "incomplete"  # Ctrl+C during the confirmation
    assert main(["--resume", str(run.spec.directory)]) == 130
    out = capsys.readouterr().out
    assert f"Continue it with:\n  python -m study.run --resume {run.spec.directory}" in out
    assert not (run.spec.directory / "compare_report.md").exists()


@pytest.mark.parametrize("outcome", ["not started", "failed", "diverged"])
def test_a_confirmation_is_reported_only_when_each_trial_has_its_result(stopped_comparison, capsys, outcome):
    # Once, a lost Ray node failed two trials and left four unstarted; Ctrl+C then wrote a report whose
    # "tuned Lion" row was its untrained epoch 0. Now: unstarted or failed-by-a-fault trials stop the
    # comparison with how to continue it (a resume retries them); a trial that diverged is a result.
    run = stopped_comparison
    trial = "minilm-adafactor-tuned_s14"
    run.status[trial] = "failed" if outcome == "diverged" else outcome
    if outcome == "diverged":
        trial_dir = Path(run.spec.storage) / trial  # where the stand-in run_study puts it
        trial_dir.mkdir()
        (trial_dir / "diverged.txt").write_text("loss became nan at step 3")
    code = main(["--resume", str(run.spec.directory)])
    out = capsys.readouterr().out
    if outcome == "diverged":
        assert code == 0 and "report: " in out
    else:
        assert code == 130, out
        assert f"The comparison's confirmation stopped before 1 of its 6 trials finished ({trial};" in out


def test_resume_takes_the_comparison_as_it_was_started(stopped_comparison, capsys):
    directory = str(stopped_comparison.spec.directory)
    assert main(["--resume", directory, "--budget", "5", "--models", "minilm"]) == 2
    err = capsys.readouterr().err
    assert "--resume continues the comparison as it was started, so it takes no --models, --budget" in err
    assert "Traceback" not in err
    assert main(["--compare", "adamw", "lion", "--resume", directory]) == 2
    assert "continue an interrupted one with its directory alone: python -m study.run --resume DIR" in capsys.readouterr().err
    assert main(["--compare", "adamw", "adafactor", "--scale", "smoke", "--storage", str(stopped_comparison.spec.storage), "--name", "cmp"]) == 2
    assert f"python -m study.run --resume {directory}" in capsys.readouterr().err
    assert stopped_comparison.calls == []


def test_the_paragraph_lists_the_main_metrics_wins_and_sums_up_the_rest():
    from study.reporting.compare import _Model, _paragraph

    def test(a, b, metric, seed, delta, verdict="significant"):
        return {"a": a, "b": b, "metric": metric, "seed": seed, "Δ (b-a)": delta, "verdict": verdict}

    main = "nDCG@10 (dl)"
    report = _Model(
        name="minilm",
        quality=[
            {"optimizer": "adamw", "config": "tuned", "_dl/nDCG@10": (0.76, 0.18)},
            {"optimizer": "adamw", "config": "default", "_dl/nDCG@10": (0.70, 0.25)},
            {"optimizer": "lion", "config": "tuned", "_dl/nDCG@10": (0.72, 0.08)},
            {"optimizer": "lion", "config": "default", "_dl/nDCG@10": (0.71, 0.27)},
        ],
        tests=[
            test("adamw", "lion", main, 13, -0.05),
            test("adamw", "lion", main, "mean", -0.04),
            test("adamw", "lion", main, 14, -0.03, "not significant"),
            test("adamw", "lion", "MAP (dl)", 14, -0.05),
            test("adamw", "lion", "MAP (dl)", "mean", +0.03),
            test("adamw", "lion", "R@10 (dl)", "mean", -0.04),
        ],
    )
    text = _paragraph("minilm", report, SimpleNamespace(confirm_seeds=[13, 14]), SimpleNamespace(num_samples=4, scale="demo"), [("dl", "nDCG@10")])
    assert "ranks adamw 0.7600 ± 0.1800, lion 0.7200 ± 0.0800" in text
    assert (
        "5 of 6 paired differences are significant at 0.05 by both tests after Holm's correction: on nDCG@10 on dl "
        "2 of 3 (adamw over lion (seed 13), adamw over lion (seed mean)); on the other metrics adamw over lion 2, "
        "lion over adamw 1."
    ) in text, text
    assert "Tuning changed nDCG@10 on dl (tuned minus default mean) by: adamw +0.0600, lion +0.0100." in text
