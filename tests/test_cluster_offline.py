"""Cluster options without a cluster: addresses, tokens, storage locations, CLI checks, GPU shares."""

from __future__ import annotations

import stat

import pytest
import yaml

from search_spaces import thesis
from study.cluster import storage
from study.cluster.nodes import ensure_auth_token, gcs_address, node_environment
from study.grids import build_study
from study.run import main


def test_gcs_addresses_bracket_ipv6_hosts():
    assert gcs_address("10.0.0.5", 6379) == "10.0.0.5:6379"
    assert gcs_address("fd00::2", 6379) == "[fd00::2]:6379"
    assert gcs_address("[fd00::2]", 6379) == "[fd00::2]:6379"


def test_a_missing_token_file_is_created_private_and_an_existing_one_kept(tmp_path):
    path = tmp_path / "ray" / "auth_token"
    ensure_auth_token({"RAY_AUTH_TOKEN_PATH": str(path)})
    token = path.read_text()
    assert len(token) == 64 and int(token, 16) >= 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    ensure_auth_token({"RAY_AUTH_TOKEN_PATH": str(path)})
    assert path.read_text() == token


def test_nodes_refuse_to_run_without_token_auth():
    assert node_environment({})["RAY_AUTH_MODE"] == "token"
    with pytest.raises(ValueError, match="cluster nodes run with Ray's token authentication, but RAY_AUTH_MODE is 'disabled'"):
        node_environment({"RAY_AUTH_MODE": "disabled"})


def test_storage_locations_join_and_split_locally_and_as_uris(tmp_path):
    assert storage.join("s3://bucket/studies?region=eu-west-1", "thesis") == "s3://bucket/studies/thesis?region=eu-west-1"
    assert storage.split_location("s3://bucket/studies/thesis?region=eu-west-1") == (
        "s3://bucket/studies?region=eu-west-1",
        "thesis",
    )
    assert storage.join(str(tmp_path), "a") == str(tmp_path / "a")
    assert storage.split_location(str(tmp_path / "a")) == (str(tmp_path), "a")


@pytest.mark.parametrize("as_uri", [False, True])
def test_files_are_written_whole_and_read_back(tmp_path, as_uri):
    location = f"file://{tmp_path}/study/x.json" if as_uri else str(tmp_path / "study" / "x.json")
    storage.write_text(location, '{"a": 1}')
    assert storage.exists(location) and storage.read_text(location) == '{"a": 1}'
    assert [p.name for p in (tmp_path / "study").iterdir()] == ["x.json"]  # no temporary file left


def _bad_input(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    return capsys.readouterr().err


def test_resume_takes_the_saved_study_as_it_is(tmp_path, capsys):
    study_dir = tmp_path / "s1"
    spec = build_study("thesis", scale="smoke", name="s1", storage="elsewhere")
    storage.write_text(str(study_dir / "study_spec.json"), spec.model_dump_json())

    assert main(["--resume", str(study_dir), "--print-spec"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert (printed["storage"], printed["name"], len(printed["trials"])) == (str(tmp_path), "s1", 6)

    err = _bad_input(capsys, ["--resume", str(study_dir), "--models", "minilm", "--epochs", "2"])
    assert "--resume continues the study as it was saved, so it takes no --models, --epochs" in err
    err = _bad_input(capsys, ["--resume", str(tmp_path / "nothing")])
    assert f"{tmp_path / 'nothing'} is not a study directory: it has no study_spec.json" in err


def test_node_env_and_max_failures_are_checked(capsys):
    base = ["--grid", "thesis", "--scale", "smoke", "--print-spec"]
    assert main([*base, "--max-failures", "2", "--node-env", "HF_HOME=/cache/hf"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["max_failures"] == 2
    assert "--max-failures must be at least 0, but got -1" in _bad_input(capsys, [*base, "--max-failures", "-1"])
    assert "--node-env expects NAME=VALUE, but got 'HF_HOME'" in _bad_input(capsys, [*base, "--node-env", "HF_HOME"])
    err = _bad_input(capsys, [*base, "--node-env", "WANDB_API_KEY=abc", "--node-env", "HF_TOKEN=def"])
    assert "HF_TOKEN, WANDB_API_KEY look like credentials" in err and "abc" not in err


def test_full_scale_trials_share_a100_80gb_cards_by_memory_need():
    trials = build_study("thesis", scale="full").trials
    gpus = {t.model.name: t.resources.gpus for t in trials}
    assert gpus == {"minilm": 0.25, "gte": 0.5, "modernbert": 0.5}
    for name, share in gpus.items():
        assert share * 80 >= 1.5 * thesis.MODELS[name].memory_gb  # headroom over §4.4.1's needs
    assert {t.resources.cpus for t in trials} == {4.0}
    assert {t.resources.gpus for t in build_study("thesis", scale="smoke").trials} == {0.0}


def test_a_result_line_cut_short_by_a_killed_driver_is_skipped(tmp_path):
    import json

    from study.results import load_trials

    trial = build_study("thesis", scale="smoke").trials[0]
    trial_dir = tmp_path / "minilm-adamw-00000"
    trial_dir.mkdir()
    (trial_dir / "params.json").write_text(json.dumps({"trial": trial.model_dump(mode="json")}))
    rows = [json.dumps({"epoch": e, "builtin-smoke-dl/nDCG@10": 0.1 * e}) for e in (0, 1)]
    (trial_dir / "result.json").write_text("\n".join(rows) + '\n{"epoch": 2, "builtin-smo')
    (loaded,) = load_trials(tmp_path)
    assert [row["epoch"] for row in loaded.rows] == [0, 1] and loaded.status == "incomplete"
