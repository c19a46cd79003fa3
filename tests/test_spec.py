from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import ValidationError

from search_spaces import thesis
from study.grids import build_study, restrict
from study.cli_errors import format_error
from study.run import main
from study.spec import AdamWSpec, LionSpec, StudySpec, TrainingSpec, TrialSpec


def test_thesis_grid_has_the_tables_settings():
    spec = build_study("thesis", scale="full")
    by_name = {t.name: t for t in spec.trials}
    assert sorted(by_name) == sorted(f"{m}-{o}" for m in ("minilm", "gte", "modernbert") for o in ("adamw", "lion"))
    for trial in spec.trials:
        assert trial.optimizer.weight_decay == 0.01
        assert trial.schedule.warmup_steps == 1000
        assert trial.training.grad_clip == 1.0
        assert trial.training.batch_size == 16
        assert trial.training.epochs == 3
        assert trial.training.seed == 12
        assert trial.training.precision == "bf16-mixed"
        assert trial.model.stand_in_for is None
        if trial.optimizer.name == "adamw":
            assert trial.optimizer.betas == (0.9, 0.999) and trial.optimizer.eps == 1e-8
        else:
            assert trial.optimizer.betas == (0.9, 0.99)
    assert by_name["modernbert-lion"].optimizer.lr == 2e-6
    assert {t.optimizer.lr for n, t in by_name.items() if n != "modernbert-lion"} == {2e-5}
    # §3.2.3 + sentence-transformers' default (warmup, linear decay); cosine only for ModernBERT + Lion.
    assert {t.name: t.schedule.name for t in spec.trials} == {
        "minilm-adamw": "linear", "minilm-lion": "linear", "gte-adamw": "linear", "gte-lion": "linear",
        "modernbert-adamw": "linear", "modernbert-lion": "cosine",
    }
    assert {t.model.name: t.model.max_length for t in spec.trials} == {"minilm": 512, "gte": 8192, "modernbert": 8192}
    assert by_name["gte-adamw"].model.trust_remote_code and not by_name["minilm-adamw"].model.trust_remote_code
    assert by_name["minilm-adamw"].model.checkpoint == thesis.MODELS["minilm"].hf_id


def _printed_schedules(grid: str, capsys) -> dict[str, str]:
    import yaml

    assert main(["--grid", grid, "--scale", "full", "--print-spec"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    return {f"{t['model']['name']}-{t['optimizer']['name']}": t["schedule"]["name"] for t in printed["trials"]}


def test_print_spec_shows_both_readings_of_the_thesis_schedules(capsys):
    assert _printed_schedules("thesis", capsys) == {
        "minilm-adamw": "linear", "minilm-lion": "linear", "gte-adamw": "linear", "gte-lion": "linear",
        "modernbert-adamw": "linear", "modernbert-lion": "cosine",
    }
    # Table 4.1 read literally: "None" = constant after warmup; "Cosine Annealing" for both ModernBERT trials.
    assert _printed_schedules("thesis-literal", capsys) == {
        "minilm-adamw": "constant", "minilm-lion": "constant", "gte-adamw": "constant", "gte-lion": "constant",
        "modernbert-adamw": "cosine", "modernbert-lion": "cosine",
    }
    literal = build_study("thesis-literal", scale="full")
    thesis_grid = build_study("thesis", scale="full")
    strip = lambda spec: [t.model_dump(exclude={"schedule"}) for t in spec.trials]
    assert strip(literal) == strip(thesis_grid)  # the readings differ in schedules only


def test_small_scales_name_their_stand_ins():
    for scale in ("smoke", "demo"):
        for trial in build_study("thesis", scale=scale).trials:
            assert trial.model.stand_in_for == thesis.MODELS[trial.model.name].hf_id
            assert not trial.model.trust_remote_code


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("lr", 0.0, "Input should be greater than 0"),
        ("lr", -1e-5, "Input should be greater than 0"),
        ("betas", (0.9, 1.0), "each beta must be in [0, 1), but got (0.9, 1.0)"),
        ("betas", (-0.1, 0.9), "each beta must be in [0, 1), but got (-0.1, 0.9)"),
        ("momentum", 0.9, "Extra inputs are not permitted"),
    ],
)
def test_optimizer_rejects_bad_values(field, value, message):
    for spec_class in (AdamWSpec, LionSpec):
        with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
            spec_class(**{"lr": 1e-5, field: value})


def test_training_rejects_zero_batch_and_epochs():
    with pytest.raises(ValidationError, match="batch_size\n  Input should be greater than or equal to 1"):
        TrainingSpec(batch_size=0)
    with pytest.raises(ValidationError, match="epochs\n  Input should be greater than or equal to 1"):
        TrainingSpec(epochs=0)


def test_optimizer_is_a_tagged_union():
    trial = build_study("thesis", scale="smoke").trials[0].model_dump()
    trial["optimizer"] = {"name": "lion", "lr": 1e-5}
    assert isinstance(TrialSpec.model_validate(trial).optimizer, LionSpec)
    trial["optimizer"] = {"name": "sgd", "lr": 1e-5}
    with pytest.raises(ValidationError, match="does not match any of the expected tags: 'adamw', 'lion'"):
        TrialSpec.model_validate(trial)
    trial["optimizer"] = {"name": "lion", "lr": 1e-5, "eps": 1e-8}  # Lion has no eps
    with pytest.raises(ValidationError, match="optimizer.lion.eps\n  Extra inputs are not permitted"):
        TrialSpec.model_validate(trial)


def test_specs_are_frozen():
    spec = build_study("thesis", scale="smoke")
    with pytest.raises(ValidationError, match="Instance is frozen"):
        spec.trials[0].training.epochs = 5


def test_unknown_metric_suggests_the_closest():
    trial = build_study("thesis", scale="smoke").trials[0].model_dump()
    trial["evaluation"][0]["table_metrics"] = ["nDCG@11"]
    with pytest.raises(ValidationError, match="unknown metric 'nDCG@11'. Did you mean 'nDCG@10'"):
        TrialSpec.model_validate(trial)


def test_restrict_filters_and_overrides():
    spec = restrict(build_study("thesis", scale="smoke"), models=["gte"], optimizers=["lion"], epochs=1, name="x")
    assert [t.name for t in spec.trials] == ["gte-lion"]
    assert spec.trials[0].training.epochs == 1 and spec.name == "x"


def test_study_rejects_mixed_evaluation_sets():
    spec = build_study("thesis", scale="smoke").model_dump()
    spec["trials"][1]["evaluation"] = spec["trials"][1]["evaluation"][:1]
    with pytest.raises(ValidationError, match="every trial must evaluate on the same sets"):
        StudySpec.model_validate(spec)


def test_print_spec_round_trips_through_config(tmp_path, capsys):
    assert main(["--grid", "thesis", "--scale", "smoke", "--name", "rt", "--print-spec"]) == 0
    printed = capsys.readouterr().out
    path = tmp_path / "study.yaml"
    path.write_text(printed)
    assert main(["--config", str(path), "--print-spec"]) == 0
    assert capsys.readouterr().out == printed


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--grid", "thesi"], "error: unknown grid 'thesi'. Did you mean 'thesis'? Known: thesis"),
        (["--grid", "thesis", "--scale", "smok"], "error: unknown scale 'smok'. Did you mean 'smoke'?"),
        (["--grid", "thesis", "--models", "minilm,gtee"], "error: unknown model 'gtee'. Did you mean 'gte'?"),
        (["--grid", "thesis", "--optimizers", "lino"], "error: unknown optimizer 'lino'. Did you mean 'lion'?"),
        (["--grid", "thesis", "--epochs", "0"], "error: --epochs must be at least 1, but got 0"),
        (["--grid", "thesis", "--name", "a b"], "error: invalid study spec: name: study name 'a b' is not a usable name"),
    ],
)
def test_cli_bad_input_is_one_paragraph_and_exit_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(message)
    assert err.count("\n") == 1  # one paragraph


def test_cli_bad_config_values(tmp_path, capsys):
    printed = subprocess.run(
        [sys.executable, "-m", "study.run", "--grid", "thesis", "--scale", "smoke", "--print-spec"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    path = tmp_path / "bad.yaml"
    path.write_text(printed.replace("lr: 2.0e-05", "lr: -1.0", 1))
    assert main(["--config", str(path)]) == 2
    assert "error: invalid study spec: trials.0.optimizer.adamw.lr: Input should be greater than 0 (got -1.0)." in (
        capsys.readouterr().err
    )


def test_format_error_keeps_plain_errors():
    assert format_error(ValueError("plain")) == "plain"


def test_help_is_instant_without_heavy_imports():
    code = "import sys, study.run; print(sorted(m for m in ('torch', 'ray', 'transformers', 'pydantic') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    result = subprocess.run([sys.executable, "-m", "study.run", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "--grid" in result.stdout


def test_model_that_cannot_load_offline_fails_before_ray(capsys, tmp_path):
    printed = subprocess.run(
        [sys.executable, "-m", "study.run", "--grid", "thesis", "--scale", "smoke", "--print-spec"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    path = tmp_path / "missing-model.yaml"
    path.write_text(printed.replace("checkpoint: standin:bert-tiny", "checkpoint: no-such-org/no-such-model", 2))
    assert main(["--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: model 'no-such-org/no-such-model' cannot be loaded here:")
    assert "--scale smoke" in err


def test_full_scale_says_what_it_needs_before_ray(capsys):
    import importlib.util

    assert main(["--grid", "thesis"]) == 2
    err = capsys.readouterr().err
    if importlib.util.find_spec("ir_datasets") is None or importlib.util.find_spec("datasets") is None:
        assert err.startswith("error: the full-scale data is downloaded with ")
        assert 'pip install -e ".[data]"' in err
    else:  # the data packages are here; offline, the models cannot be fetched
        assert err.startswith("error: model 'microsoft/MiniLM-L12-H384-uncased' cannot be loaded here")
