"""The Optuna search: spaces, seeds and bad input. Nothing here starts Ray."""

from __future__ import annotations

import math

import pytest

from search_spaces import optuna_spaces as spaces
from search_spaces import thesis
from search_spaces.optimizers import REGISTRY
from study.run import main
from study.search.spec import SearchSpec, build_search
from study.spec import TrialSpec


def _ranges(optimizer: str) -> dict:
    return spaces.default_ranges(optimizer, thesis_warmup_steps=1000, total_steps=375_000)


def test_lion_learning_rates_are_below_and_weight_decay_above_adamw():
    adamw, lion = _ranges("adamw"), _ranges("lion")
    assert lion["lr"].low < adamw["lr"].low and lion["lr"].high < adamw["lr"].high
    assert lion["weight_decay"].low > adamw["weight_decay"].low
    assert lion["weight_decay"].high > adamw["weight_decay"].high
    # Chen et al. 2023: 3-10x smaller learning rate, 3-10x larger weight decay
    assert math.isclose(adamw["lr"].low / lion["lr"].low, 10) and math.isclose(adamw["lr"].high / lion["lr"].high, 3)
    assert math.isclose(lion["weight_decay"].low / adamw["weight_decay"].low, 3)
    assert math.isclose(lion["weight_decay"].high / adamw["weight_decay"].high, 10)
    for ranges in (adamw, lion):
        assert ranges["lr"].log and ranges["weight_decay"].log
        assert ranges["schedule"].values == ("constant", "linear", "cosine")
    assert adamw["lr"].low < 2e-5 < adamw["lr"].high  # around the thesis's AdamW rate


def test_sampled_lion_points_sit_below_adamw_in_lr_and_above_in_weight_decay():
    import optuna

    def sample(optimizer: str) -> list[dict]:
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        return [spaces.SPACES[optimizer](study.ask(), _ranges(optimizer)) for _ in range(200)]

    adamw, lion = sample("adamw"), sample("lion")
    median = lambda points, key: sorted(p[key] for p in points)[len(points) // 2]  # noqa: E731
    assert median(lion, "lr") < median(adamw, "lr") / 3
    assert median(lion, "weight_decay") > median(adamw, "weight_decay") * 3
    assert {p["schedule"] for p in lion} == {"constant", "linear", "cosine"}
    assert all(0 <= p["warmup_steps"] <= 37_500 for p in adamw + lion)


def test_every_thesis_setting_lies_inside_its_space():
    spec = build_search(scale="full", num_samples=4)
    assert len(spec.pairs) == 6
    for pair in spec.pairs:
        model, optimizer = pair.trial.model.name, pair.trial.optimizer.name
        assert pair.thesis_point["lr"] == thesis.LEARNING_RATES[(model, optimizer)]
        assert pair.thesis_point["warmup_steps"] == thesis.WARMUP_STEPS
        spaces.check_contains(pair.space_ranges(), pair.thesis_point, where=pair.name)
    assert spec.validation_set == "trec-dl-2020"
    assert [e.name for e in spec.test_sets] == ["trec-dl-2019", "msmarco-v1.1-qna-dev"]


def test_search_trials_select_on_validation_and_report_on_test():
    spec = build_search(scale="smoke", num_samples=4)
    assert spec.validation_set == "builtin-smoke-validation"
    assert spec.metric_key == "builtin-smoke-validation/nDCG@10"
    for pair in spec.pairs:
        assert [e.name for e in pair.trial.evaluation] == ["builtin-smoke-validation"]
    assert [e.name for e in spec.test_sets] == ["builtin-smoke-dl", "builtin-smoke-dev"]
    data = spec.model_dump()
    data["test_sets"] = [{"name": "builtin-smoke-validation"}]
    with pytest.raises(ValueError, match="the validation set builtin-smoke-validation cannot also be a test set"):
        SearchSpec.model_validate(data)


def test_sampled_values_become_a_valid_trial_spec():
    pair = build_search(scale="smoke", num_samples=4, models=["modernbert"], optimizers=["lion"]).pairs[0]
    params = {"lr": 3e-6, "beta1": 0.85, "beta2": 0.97, "weight_decay": 0.2, "schedule": "linear", "warmup_steps": 3}
    trial = TrialSpec.model_validate(spaces.apply_params(pair.trial.model_dump(mode="json"), params))
    assert trial.optimizer.lr == 3e-6 and trial.optimizer.betas == (0.85, 0.97)
    assert trial.optimizer.weight_decay == 0.2
    assert (trial.schedule.name, trial.schedule.warmup_steps) == ("linear", 3)
    assert spaces.params_of(trial.model_dump(mode="json")) == params
    assert trial.model == pair.trial.model and trial.training == pair.trial.training  # only the searched values change


def _first_suggestions(seed: int, n: int = 5) -> list[dict]:
    from study.search.run import build_searcher

    spec = build_search(scale="smoke", num_samples=12, models=["minilm"], optimizers=["lion"], seed=seed)
    searcher = build_searcher(spec, spec.pairs[0])  # in-memory Optuna storage
    return [searcher.suggest(f"trial-{i}") for i in range(n)]


def test_the_thesis_point_is_proposed_first():
    first = _first_suggestions(seed=12, n=1)[0]
    assert {k: first[k] for k in REGISTRY["lion"].hyperparameters} == {
        "lr": 2e-5,
        "beta1": 0.9,
        "beta2": 0.99,
        "weight_decay": 0.01,
        "schedule": "linear",  # the thesis grid's reading (search_spaces/thesis.py)
        "warmup_steps": 10,
    }
    assert first["optuna_trial"] == 0
    assert first["trial"]["optimizer"] == {"name": "lion", "lr": 2e-5, "betas": [0.9, 0.99], "weight_decay": 0.01}


def test_the_same_seed_proposes_the_same_first_configurations():
    a, b, other = _first_suggestions(seed=7), _first_suggestions(seed=7), _first_suggestions(seed=8)
    assert a == b
    assert a[0] == other[0]  # the thesis point, whatever the seed
    assert a[1:] != other[1:]
    assert len({p["lr"] for p in a}) == len(a)  # distinct proposals, not one point repeated


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--range", "lr=1e-4:1e-6"], "error: --range for minilm-adamw: lr expects LOW < HIGH, but got 0.0001:1e-06 (an inverted range)"),
        (["--range", "lion.lr=1e-5:1e-5"], "error: --range for minilm-lion: lr expects LOW < HIGH, but got 1e-05:1e-05 (an empty range)"),
        (["--range", "schedule="], "error: --range expects [OPTIMIZER.]NAME=LOW:HIGH (or schedule=a,b), but got 'schedule='"),
        (["--range", "learning_rate=1e-6:1e-4"], "error: unknown hyperparameter 'learning_rate'. Known: lr, beta1"),
        (["--range", "beta_2=0.9:0.99"], "error: unknown hyperparameter 'beta_2'. Did you mean 'beta2'?"),
        (["--range", "adamw.schedule=constant,cosin"], "error: unknown schedule 'cosin'. Did you mean 'cosine'?"),
        (["--range", "beta2=0.9:1.0"], "error: --range for minilm-adamw: beta2 must lie in [0, 1), but got 0.9:1"),
        (["--range", "lion.lr=3e-5:1e-4"], "error: --range for minilm-lion: the range lr=3e-05:0.0001 excludes the thesis setting lr=2e-05"),
        (["--num-samples", "0"], "error: --num-samples must be at least 1, but got 0"),
        (["--scheduler", "hyperband"], "error: unknown scheduler 'hyperband'. Known: asha, fifo"),
        (["--metric", "ndcg@10"], "error: unknown metric 'ndcg@10'. Did you mean 'nDCG@10'?"),
        (["--optuna-storage", "not-a-url"], "error: cannot open the Optuna storage not-a-url: Could not parse"),
        (
            ["--optuna-storage", "postgresql://someone:secret@127.0.0.1:1/none"],
            "error: cannot open the Optuna storage postgresql://someone:***@127.0.0.1:1/none: ",
        ),
        (["--resume"], "error: --resume expects the search's directory (--resume DIR) or --name NAME"),
        (["--rungs", "hours"], "error: unknown rungs 'hours'. Known: epochs, steps"),
        (["--rungs", "steps", "--scheduler", "fifo"], "error: --rungs steps are ASHA's; with --scheduler fifo"),
        (["--validate-every-steps", "5"], "error: --validate-every-steps sets the step rungs' interval; pass --rungs steps"),
    ],
)
def test_search_bad_input_is_one_paragraph_and_exit_2_before_ray(argv, message, capsys, monkeypatch, tmp_path):
    import study.search.run

    def must_not_run(*args, **kwargs):
        raise AssertionError("the search started despite bad input")

    monkeypatch.setattr(study.search.run, "run_search", must_not_run)
    base = ["--search", "optuna", "--scale", "smoke", "--storage", str(tmp_path)]
    assert main(base + argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(message)
    assert "secret" not in err
    assert err.count("\n") == 1


def test_full_scale_search_resolves_its_data_and_reaches_the_search(monkeypatch, tmp_path):
    """Validation on TREC DL 2020 (RR@10: the v1.1 train slice), never a test set; the data check
    passes where the download packages are installed (stand-ins here where they are not)."""
    import importlib.machinery
    import importlib.util
    import sys
    import types

    import study.search.run
    import trainables.models

    for package in ("ir_datasets", "datasets"):
        if importlib.util.find_spec(package) is None:
            module = types.ModuleType(package)
            module.__spec__ = importlib.machinery.ModuleSpec(package, None)
            monkeypatch.setitem(sys.modules, package, module)
    started = []
    monkeypatch.setattr(trainables.models, "check_loadable_offline", lambda model: None)  # no hub here
    monkeypatch.setattr(study.search.run, "run_search", lambda spec, **kw: started.append(spec) or sys.exit(0))
    for metric, validation in (("nDCG@10", "trec-dl-2020"), ("RR@10", "msmarco-v1.1-qna-train-slice")):
        argv = ["--search", "optuna", "--num-samples", "4", "--metric", metric, "--storage", str(tmp_path / metric)]
        with pytest.raises(SystemExit):
            main(argv)
        spec = started.pop()
        assert spec.validation_set == validation and spec.scale == "full"
        assert validation not in [e.name for e in spec.test_sets] == ["trec-dl-2019", "msmarco-v1.1-qna-dev"]


def test_search_options_need_search(capsys):
    assert main(["--grid", "thesis", "--scale", "smoke", "--num-samples", "3", "--seed", "1"]) == 2
    assert capsys.readouterr().err.startswith("error: --num-samples, --seed only apply to --search")


def test_print_spec_shows_the_search(capsys, tmp_path):
    argv = ["--search", "optuna", "--scale", "smoke", "--num-samples", "5", "--models", "gte", "--range", "lion.lr=1e-6:3e-5"]
    assert main(argv + ["--storage", str(tmp_path), "--name", "s", "--print-spec"]) == 0
    import yaml

    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["num_samples"] == 5 and printed["scheduler"] == "asha" and printed["seed"] == 12
    assert [p["trial"]["model"]["name"] for p in printed["pairs"]] == ["gte", "gte"]
    assert printed["pairs"][1]["ranges"]["lr"] == {"low": 1e-6, "high": 3e-5, "log": True}
    assert printed["optuna_storage"] == f"sqlite:///{tmp_path.resolve()}/s/optuna.db"
    assert not (tmp_path / "s").exists()  # printing runs nothing and writes nothing


def test_asha_stops_on_the_searchers_metric_after_each_epoch_with_a_one_epoch_grace_period():
    """Ray's real ASHA, configured as the search configures it, fed the reports a trial makes."""
    from types import SimpleNamespace

    from ray.tune.schedulers import FIFOScheduler, TrialScheduler

    from study.search.run import build_scheduler, build_searcher

    spec = build_search(scale="smoke", num_samples=6, models=["minilm"], optimizers=["adamw"], epochs=3)
    pair = spec.pairs[0]
    asha = build_scheduler(spec, pair)
    assert asha.metric == build_searcher(spec, pair).metric == "builtin-smoke-validation/nDCG@10"
    key = asha.metric

    def report(trial, epoch: int, value: float) -> str:
        return asha.on_trial_result(None, trial, {"epoch": epoch, key: value, "builtin-smoke-validation/RR@10": 1.0})

    good, bad, better = (SimpleNamespace(trial_id=name) for name in ("good", "bad", "better"))
    for trial in (good, bad, better):
        asha.on_trial_add(None, trial)
        assert report(trial, 0, 0.0) == TrialScheduler.CONTINUE  # epoch 0 (before training) never stops a trial
    assert report(good, 1, 0.5) == TrialScheduler.CONTINUE
    assert report(bad, 1, 0.3) == TrialScheduler.STOP  # below the rung's cutoff after one epoch
    assert report(better, 1, 0.6) == TrialScheduler.CONTINUE
    assert report(good, 3, 0.7) == TrialScheduler.STOP  # the last epoch ends the trial

    fifo = build_scheduler(spec.model_copy(update={"scheduler": "fifo"}), pair)
    assert type(fifo) is FIFOScheduler


def test_optuna_never_prunes():
    from study.search.run import build_searcher

    spec = build_search(scale="smoke", num_samples=6, models=["minilm"], optimizers=["adamw"])
    searcher = build_searcher(spec, spec.pairs[0])
    import optuna

    assert isinstance(searcher._ot_study.pruner, optuna.pruners.NopPruner)  # early stopping is ASHA's alone
    sampler = searcher._ot_study.sampler
    assert isinstance(sampler, optuna.samplers.TPESampler) and sampler._multivariate and sampler._constant_liar


def test_step_rungs_validate_inside_epochs_and_asha_stops_a_weak_trial_in_its_first_epoch():
    """Full scale defaults to step rungs; Ray's real ASHA then stops on mid-epoch validations."""
    from types import SimpleNamespace

    from ray.tune.schedulers import TrialScheduler

    from study.search.run import build_scheduler, build_searcher

    full = build_search(scale="full", num_samples=6, models=["minilm"], optimizers=["adamw"])
    assert (full.rungs, full.validate_every_steps) == ("steps", 12_500)  # 125k steps an epoch / 10
    assert full.pairs[0].trial.training.validate_every_steps == 12_500
    assert build_search(scale="demo", num_samples=6).rungs == "epochs"  # demo and smoke: the thesis's epochs

    spec = build_search(scale="smoke", num_samples=6, models=["minilm"], optimizers=["adamw"], rungs="steps", validate_every=4)
    pair = spec.pairs[0]
    assert pair.trial.training.validate_every_steps == 4
    asha = build_scheduler(spec, pair)
    key = asha.metric

    def report(trial, step: int, value: float | None) -> str:
        result = {"epoch": 0, "global_step": step} | ({key: value} if value is not None else {"mid_epoch": True})
        return asha.on_trial_result(None, trial, result)

    good, bad = SimpleNamespace(trial_id="good"), SimpleNamespace(trial_id="bad")
    for trial in (good, bad):
        asha.on_trial_add(None, trial)
        assert report(trial, 0, 0.0) == TrialScheduler.CONTINUE
    assert report(good, 4, 0.5) == TrialScheduler.CONTINUE
    assert report(bad, 2, None) == TrialScheduler.CONTINUE  # a checkpoint without a validation: no rung
    assert report(bad, 4, 0.2) == TrialScheduler.STOP  # 4 steps into epoch 1 (of 30 steps): stopped

    searcher = build_searcher(spec, pair)
    config = searcher.suggest("t0")
    assert config["score_metric"] == key
    searcher.on_trial_result("t0", {"global_step": 2, "mid_epoch": True, "training_iteration": 1})  # no metric: skipped
    searcher.on_trial_result("t0", {"global_step": 4, key: 0.5, "training_iteration": 2})
    assert searcher._ot_trials["t0"].study.trials[0].intermediate_values == {2: 0.5}
