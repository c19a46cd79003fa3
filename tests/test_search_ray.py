"""A smoke search through a real local Ray Tune, interrupted with Ctrl+C (SIGINT) and resumed.

One search serves every test here (it is the expensive part): 6 trials of MiniLM-stand-in x AdamW,
2 epochs on 320 training pairs, 2 at a time, ASHA. It is interrupted once 2 trials have finished,
then continued with `python -m study.run --search optuna --resume`.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from study.run import main
from study.search.spec import build_search, study_dir

pytestmark = pytest.mark.ray

NUM_SAMPLES = 6


def _interrupt_when_finished(spec, count: int, stop: threading.Event) -> None:
    """Press Ctrl+C (SIGINT to this process) once `count` trials have finished."""
    from study.search.run import finished_trials, open_storage

    while not stop.wait(0.5):
        done = len(finished_trials(open_storage(spec.optuna_storage), spec, spec.pairs[0]))
        if done >= count:
            os.kill(os.getpid(), signal.SIGINT)
            return


@pytest.fixture(scope="module")
def resumed_search(ray_cluster, tmp_path_factory):
    import optuna

    from study.search.run import open_storage, run_search

    storage = tmp_path_factory.mktemp("search")
    spec = build_search(
        scale="smoke",
        models=["minilm"],
        optimizers=["adamw"],
        epochs=2,
        max_pairs=320,
        num_samples=NUM_SAMPLES,
        max_concurrent=2,
        storage=str(storage),
        name="smoke-search",
    )
    open_storage(spec.optuna_storage)  # create its tables before a second connection reads them
    stop = threading.Event()
    watcher = threading.Thread(target=_interrupt_when_finished, args=(spec, 2, stop), daemon=True)
    watcher.start()
    first = run_search(spec, verbose=0)
    stop.set()

    study = optuna.load_study(study_name=spec.optuna_study_name(spec.pairs[0]), storage=spec.optuna_storage)
    finished_before = {t.number for t in study.trials if t.state.is_finished()}
    experiment = study_dir(spec) / spec.pairs[0].name
    results_before = {p.parent.name: p.read_text() for p in experiment.glob("*/result.json")}

    out = io.StringIO()
    started = time.time()
    with contextlib.redirect_stdout(out):
        code = main(["--search", "optuna", "--resume", "--name", spec.name, "--storage", str(storage)])
    return {
        "spec": spec,
        "first": first,
        "finished_before": finished_before,
        "results_before": results_before,
        "code": code,
        "stdout": out.getvalue(),
        "resume_seconds": time.time() - started,
        "study": optuna.load_study(study_name=spec.optuna_study_name(spec.pairs[0]), storage=spec.optuna_storage),
        "dir": study_dir(spec),
    }


def _tune_trials(run) -> dict[int, Path]:
    """Optuna trial number -> Tune trial directory."""
    experiment = run["dir"] / run["spec"].pairs[0].name
    dirs = {}
    for params in experiment.glob("*/params.json"):
        number = json.loads(params.read_text())["optuna_trial"]
        assert number not in dirs, f"Optuna trial {number} ran twice"
        dirs[number] = params.parent
    return dirs


def test_interruption_stops_the_search_and_resume_completes_exactly_num_samples(resumed_search):
    run = resumed_search
    assert run["first"].complete is False
    assert 2 <= len(run["finished_before"]) < NUM_SAMPLES
    assert run["code"] == 0, run["stdout"][-3000:]
    assert "Resuming smoke-search" in run["stdout"]

    trials = run["study"].trials
    assert [t.number for t in trials] == list(range(NUM_SAMPLES))  # nothing re-asked, nothing lost
    assert all(t.state == t.state.COMPLETE for t in trials)
    assert len({tuple(sorted(t.params.items())) for t in trials}) == NUM_SAMPLES
    assert sorted(_tune_trials(run)) == list(range(NUM_SAMPLES))


def test_trials_finished_before_the_interruption_are_not_run_again(resumed_search):
    run = resumed_search
    dirs = _tune_trials(run)
    for number in run["finished_before"]:
        name = dirs[number].name
        assert (dirs[number] / "result.json").read_text() == run["results_before"][name]
    for directory in dirs.values():
        # an interrupted trial continues from its last saved checkpoint (or, without one, from the
        # start: Tune then logs its epochs again); either way every epoch up to its last is there
        epochs = [json.loads(line)["epoch"] for line in (directory / "result.json").read_text().splitlines()]
        assert set(epochs) == set(range(max(epochs) + 1))
        assert (directory / "runs" / f"builtin-smoke-validation.epoch{max(epochs)}.trec").stat().st_size > 0


def test_the_thesis_point_is_evaluated_first(resumed_search):
    run = resumed_search
    pair = run["spec"].pairs[0]
    first = run["study"].trials[0]
    assert first.params == pair.thesis_point
    config = json.loads((_tune_trials(run)[0] / "params.json").read_text())
    assert config["trial"]["optimizer"] == {
        "name": "adamw",
        "lr": 2e-5,
        "betas": [0.9, 0.999],
        "eps": 1e-8,
        "weight_decay": 0.01,
    }
    assert min(run["study"].trials, key=lambda t: t.datetime_start).number == 0


def test_asha_stops_on_the_validation_metric_per_epoch(resumed_search):
    run = resumed_search
    rows = list(csv.DictReader((run["dir"] / "search_trials.csv").open()))
    assert len(rows) == NUM_SAMPLES
    assert {r["status"] for r in rows} <= {"finished", "stopped by ASHA"}
    for row in rows:
        epochs = int(row["epochs"])
        assert epochs == 2 if row["status"] == "finished" else epochs == 1  # grace period: one epoch
    key = "builtin-smoke-validation/nDCG@10"
    values = {int(r["optuna_trial"]): float(r[f"{key} (last epoch)"]) for r in rows}
    assert {t.number: t.value for t in run["study"].trials} == pytest.approx(values)  # Optuna saw the same metric


def test_the_best_configuration_is_selected_on_validation_and_reported_on_test(resumed_search):
    run = resumed_search
    best = json.loads((run["dir"] / "best_configs.json").read_text())
    assert best["selected_on"] == {"set": "builtin-smoke-validation", "metric": "nDCG@10", "key": "builtin-smoke-validation/nDCG@10"}
    assert best["reported_on"] == ["builtin-smoke-dl", "builtin-smoke-dev"]
    (pair,) = best["pairs"]
    thesis, selected = pair["thesis"], pair["selected"]
    assert thesis["is_thesis"] and thesis["optuna_trial"] == 0
    key = "builtin-smoke-validation/nDCG@10"
    # Optuna holds each trial's earlier epochs as intermediate values and its last epoch as its value
    trial_best = max(max(t.value, *t.intermediate_values.values()) for t in run["study"].trials)
    assert selected["validation"][key] == pytest.approx(trial_best)  # the best epoch of any trial
    assert selected["validation"][key] >= thesis["validation"][key]
    for entry in (thesis, selected):
        assert set(entry["params"]) == {"lr", "beta1", "beta2", "weight_decay", "schedule", "warmup_steps"}
        assert 0.0 <= entry["test"]["builtin-smoke-dl/nDCG@10"] <= 1.0
        assert 0.0 <= entry["test"]["builtin-smoke-dev/RR@10"] <= 1.0
        assert not any(k.startswith("builtin-smoke-validation") for k in entry["test"])
        runs = Path(entry["test_dir"]) / "runs"
        assert (runs / f"builtin-smoke-dl.epoch{entry['epoch']}.trec").stat().st_size > 0

    table = (run["dir"] / "best_configs.md").read_text()
    assert "selected on **builtin-smoke-validation**" in table and "reported on **builtin-smoke-dl, builtin-smoke-dev**" in table
    assert "Selected on builtin-smoke-validation (nDCG@10); reported on builtin-smoke-dl, builtin-smoke-dev" in run["stdout"]


def test_importances_and_plots_are_written(resumed_search):
    run = resumed_search
    rows = list(csv.DictReader((run["dir"] / "importances.csv").open()))
    assert {r["hyperparameter"] for r in rows} == {"lr", "beta1", "beta2", "weight_decay", "schedule", "warmup_steps"}
    assert sum(float(r["importance"]) for r in rows) == pytest.approx(1.0)
    assert {r["completed_trials"] for r in rows} == {str(NUM_SAMPLES)}
    for kind in ("optimization_history", "parallel_coordinate"):
        png = run["dir"] / "plots" / f"minilm-adamw.{kind}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert png.stat().st_size > 10_000
    assert f"optuna-dashboard sqlite:///{run['dir']}/optuna.db" in run["stdout"]
