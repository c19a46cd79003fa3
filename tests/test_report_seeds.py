"""--seeds: each trial once per seed, with names that stay unique (and unchanged for one seed)."""

from __future__ import annotations

import pytest
import yaml

from study.grids import build_study, restrict, with_seeds
from study.run import main


def test_several_seeds_repeat_every_trial_with_a_seed_tag():
    spec = with_seeds(restrict(build_study("thesis", scale="smoke"), models=["minilm"]), [12, 13, 14])
    assert [(t.name, t.training.seed) for t in spec.trials] == [
        ("minilm-adamw-s12", 12),
        ("minilm-adamw-s13", 13),
        ("minilm-adamw-s14", 14),
        ("minilm-lion-s12", 12),
        ("minilm-lion-s13", 13),
        ("minilm-lion-s14", 14),
    ]


def test_one_seed_keeps_the_names_and_changes_the_seed():
    spec = with_seeds(build_study("thesis", scale="smoke"), [7])
    assert sorted(t.name for t in spec.trials) == sorted(
        f"{m}-{o}" for m in ("minilm", "gte", "modernbert") for o in ("adamw", "lion")
    )
    assert {t.training.seed for t in spec.trials} == {7}


def test_repeated_seeds_are_rejected():
    with pytest.raises(ValueError, match=r"--seeds expects distinct seeds, but \[12\] repeat"):
        with_seeds(build_study("thesis", scale="smoke"), [12, 13, 12])


def test_cli_seeds_reach_the_printed_spec(capsys):
    assert main(["--grid", "thesis", "--scale", "smoke", "--models", "gte", "--seeds", "12,13", "--print-spec"]) == 0
    trials = yaml.safe_load(capsys.readouterr().out)["trials"]
    assert [(t["model"]["name"], t["optimizer"]["name"], t["tag"], t["training"]["seed"]) for t in trials] == [
        ("gte", "adamw", "s12", 12),
        ("gte", "adamw", "s13", 13),
        ("gte", "lion", "s12", 12),
        ("gte", "lion", "s13", 13),
    ]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--seeds", "12,x"], "error: --seeds expects comma-separated integers such as 12,13,14, but got '12,x'"),
        (["--seeds", "12,12"], "error: --seeds expects distinct seeds, but [12] repeat"),
        (["--wandb", "onlin"], "invalid choice: 'onlin'"),
    ],
)
def test_cli_rejects_bad_seeds_and_wandb_modes(argv, message, capsys):
    try:
        code = main(["--grid", "thesis", "--scale", "smoke", *argv, "--print-spec"])
    except SystemExit as exit_:  # argparse's own choices check
        code = exit_.code
    assert code == 2
    assert message in capsys.readouterr().err
