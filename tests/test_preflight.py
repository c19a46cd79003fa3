"""`python -m study.run ... --preflight`: one line per check, exit 2 when one fails, on real small inputs."""

from __future__ import annotations

import shutil

import pytest
import yaml
from official_files import write_dl19, write_triples, write_v11_dev
from remote_code_model import save_toy_remote_model

from study.grids import build_study, restrict
from study.preflight import Context, check_gpus, node_probes
from study.run import main


def _config(tmp_path, *, storage=None, gpus: float = 0.0, model: dict | None = None, dl_qrels=None) -> str:
    """A one-trial study reading the official file layouts, as a --config file."""
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    dl = write_dl19(data, queries=3, depth=6)
    dev = write_v11_dev(data, queries=3, shown=4)
    spec = restrict(build_study("thesis", scale="smoke", name="pre"), models=["minilm"], optimizers=["adamw"])
    spec = spec.model_dump(mode="json")
    trial = spec["trials"][0]
    trial["evaluation"][0] |= {"name": "trec-dl-2019", "files": {"qrels": str(dl_qrels or dl["qrels"]), "candidates": str(dl["candidates"])}}
    trial["evaluation"][1] |= {"name": "msmarco-v1.1-qna-dev", "files": {k: str(v) for k, v in dev.items()}}
    trial["training"]["data"] = {"source": "triples", "file": str(write_triples(data / "triples.train.small.tsv", n=40))}
    trial["resources"]["gpus"] = gpus
    trial["model"] |= model or {}
    spec["storage"] = str(storage or tmp_path / "studies")
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(spec))
    return str(path)


def _lines(capsys) -> dict[str, str]:
    out = capsys.readouterr().out
    return {line.split(": ", 1)[0]: line for line in out.splitlines() if line.startswith("[")} | {"_out": out}


def test_a_ready_study_passes_every_check_and_gets_an_estimate(tmp_path, capsys):
    assert main(["--config", _config(tmp_path), "--preflight"]) == 0
    lines = _lines(capsys)
    assert lines["[ok] model minilm"].endswith("non-persistent buffers: 2, all equal to a fresh construction's")
    assert "3 queries, 18 candidates" in lines["[ok] data trec-dl-2019"]
    assert "3 queries, 12 candidates" in lines["[ok] data msmarco-v1.1-qna-dev"]
    assert "the first 40 triples parse" in lines["[ok] training data triples"]
    assert "run on CPUs" in lines["[ok] GPUs"]
    assert "study pre is new" in lines[f"[ok] storage {tmp_path / 'studies'}"]
    out = lines["_out"]
    assert "estimate: no GPU here" in out
    assert "minilm-adamw: 15 steps x " in out  # 40 triples = 80 pairs, batches of 16, 3 epochs
    assert "preflight: 7 of 7 checks passed" in out
    assert not (tmp_path / "studies" / "pre").exists()  # nothing ran


def test_a_remote_code_model_with_broken_buffers_fails_its_check(tmp_path, capsys, monkeypatch):
    toy = save_toy_remote_model(tmp_path / "toy")  # GTE's loading path: trust_remote_code, non-persistent rotary tables
    config = _config(tmp_path, model={"checkpoint": str(toy), "trust_remote_code": True})
    assert main(["--config", config, "--preflight"]) == 0
    assert "[ok] model minilm: " in capsys.readouterr().out

    monkeypatch.setattr("trainables.buffers.restore_non_persistent_buffers", lambda model: [])  # as before issue 12
    assert main(["--config", config, "--preflight"]) == 2
    lines = _lines(capsys)
    assert "broken non-persistent buffers" in lines["[FAIL] model minilm"] and "cos_cached" in lines["[FAIL] model minilm"]
    assert "not estimated: its model did not load" in lines["_out"]


def test_a_missing_model_and_a_malformed_qrels_file_fail_with_what_to_do(tmp_path, capsys):
    bad_qrels = tmp_path / "2019qrels-pass.txt"
    bad_qrels.write_text("19000 Q0 700001\n")
    config = _config(tmp_path, model={"checkpoint": str(tmp_path / "no-such-model")}, dl_qrels=bad_qrels)
    assert main(["--config", config, "--preflight"]) == 2
    lines = _lines(capsys)
    assert "hf download" in lines["[FAIL] model minilm"]
    assert f"{bad_qrels}:1: a TREC qrels (qid 0 docid relevance) line has 4 fields" in lines["[FAIL] data trec-dl-2019"]
    assert lines["[ok] data msmarco-v1.1-qna-dev"]


def test_unwritable_storage_missing_gpus_and_missing_wandb_key_fail(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc: no stored key
    storage = tmp_path / "a-file"
    storage.write_text("")
    config = _config(tmp_path, storage=storage, gpus=1.0)
    assert main(["--config", config, "--preflight", "--wandb", "online"]) == 2
    lines = _lines(capsys)
    assert "is a file, not a directory" in lines[f"[FAIL] storage {storage}"]
    assert "set WANDB_API_KEY or run `wandb login`" in lines["[FAIL] W&B (online)"]
    if shutil.which("nvidia-smi") is None:
        assert "no node has one" in lines["[FAIL] GPUs"]


def test_gpu_memory_floors_are_the_thesis_figures():
    spec = build_study("thesis", scale="full")  # real models: GTE 16 GB, ModernBERT 24 GB (§4.4.1)
    a100 = [{"host": "n1", "gpus": [80.0]}]
    assert check_gpus(spec.trials, a100)[0].ok
    small = check_gpus(spec.trials, [{"host": "n1", "gpus": [20.0, 20.0]}])[0]
    assert not small.ok and "below the 24 GB the thesis needed for modernbert" in small.detail
    no_modernbert = restrict(spec, models=["minilm", "gte"])
    assert check_gpus(no_modernbert.trials, [{"host": "n1", "gpus": [20.0]}])[0].ok


@pytest.mark.ray
def test_every_node_writes_the_storage(ray_cluster, tmp_path):
    nodes = node_probes(Context(str(tmp_path / "studies"), "s", address="auto"))
    assert len(nodes) == len([n for n in ray_cluster.nodes() if n["Alive"]]) and all(n["storage"] is None for n in nodes)
    (tmp_path / "file").write_text("")
    nodes = node_probes(Context(str(tmp_path / "file"), "s", address="auto"))
    assert all("FileExistsError" in n["storage"] or "NotADirectoryError" in n["storage"] for n in nodes)


def test_a_search_checks_its_validation_and_test_sets(tmp_path, capsys):
    argv = ["--search", "optuna", "--scale", "smoke", "--models", "minilm", "--optimizers", "lion", "--num-samples", "2"]
    assert main([*argv, "--storage", str(tmp_path), "--preflight"]) == 0
    out = capsys.readouterr().out
    for eval_set in ("builtin-smoke-validation", "builtin-smoke-dl", "builtin-smoke-dev"):
        assert f"[ok] data {eval_set}: " in out
    assert "up to 2 trials per model x optimizer" in out and "minilm-lion: 90 steps x " in out
