"""`python -m study.run --seeds 12,13 --wandb offline` on real Ray (two small Lion trials), ending with its report."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
import yaml

from study import results
from study.run import main

pytestmark = pytest.mark.ray

FAKE_KEY = "reportleakcheck" + "0" * 25  # never needed offline; must appear nowhere


def wandb_history(run_file: Path) -> tuple[str, list[dict]]:
    """(group, history rows) of an offline W&B run file: W&B's record log (32 KiB blocks of
    checksummed chunks, as LevelDB's log) holding protobuf Records."""
    from wandb.proto import wandb_internal_pb2

    data, pos, pending, records = run_file.read_bytes(), 7, b"", []  # 7-byte file header
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:  # a block's tail too short for a chunk header is padding
            pos += 32768 - pos % 32768
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind == 0:
            break
        pending = chunk if kind in (1, 2) else pending + chunk  # full/first start, middle/last extend
        if kind in (1, 4):
            records.append(pending)
    group, rows = "", []
    for raw in records:
        record = wandb_internal_pb2.Record()
        record.ParseFromString(raw)
        if record.WhichOneof("record_type") == "run":
            group = record.run.run_group or group  # later run records may be partial updates
        elif record.WhichOneof("record_type") == "history":
            rows.append({item.key or "/".join(item.nested_key): item.value_json for item in record.history.item})
    return group, rows


def test_seeded_study_logs_to_wandb_offline_and_ends_with_a_report(ray_cluster, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WANDB_API_KEY", FAKE_KEY)
    choose = ["--grid", "thesis", "--scale", "smoke", "--models", "minilm", "--optimizers", "lion", "--epochs", "1"]
    assert main([*choose, "--seeds", "12,13", "--name", "wb", "--storage", str(tmp_path), "--print-spec"]) == 0
    spec = yaml.safe_load(capsys.readouterr().out)
    for trial in spec["trials"]:
        trial["training"]["data"]["max_pairs"] = 64  # 4 steps of 16 pairs (none held out)
        trial["training"]["heldout_pairs"] = 0
        trial["training"]["log_every"] = 2
    config = tmp_path / "study.yaml"
    config.write_text(yaml.safe_dump(spec))

    assert main(["--config", str(config), "--wandb", "offline"]) == 0
    printed = capsys.readouterr().out
    assert "W&B: offline, project reranker-optimizer-study, group wb, one run per trial" in printed
    assert "Study: 2/2 trials done, 0 running, 0 pending; steps 8/8 (100%); best builtin-smoke-dl/nDCG@10 = " in printed
    study_dir = tmp_path / "wb"
    assert f"  report: {study_dir / 'report' / 'report.md'}" in printed

    trials = results.load_trials(study_dir)
    assert [t.name for t in trials] == ["minilm-lion-s12", "minilm-lion-s13"]
    for trial in trials:
        assert trial.status == "finished", trial.error
        assert trial.rows[-1]["peak_memory_source"] == "cpu-rss" and trial.rows[-1]["peak_memory_bytes"] > 50 * 2**20
        [run_file] = Path(trial.trial_dir).glob("wandb/offline-run-*/run-*.wandb")
        group, history = wandb_history(run_file)
        assert group == "wb"  # one W&B run per trial, grouped by study
        assert [row["_step"] for row in history] == ["0", "2", "4"]  # epoch 0, then the step log
        assert "train/loss" in history[1] and "train/grad_norm" in history[1]
        assert "train/loss" in history[2] and "builtin-smoke-dl/nDCG@10" in history[2]  # epoch 1 at step 4

    report = (study_dir / "report" / "report.md").read_text()
    assert "trials: 2 (2 finished); seeds: 12, 13" in report
    assert "No Lion vs AdamW comparison is possible yet" in report  # no AdamW trial in this study
    rows = (study_dir / "report" / "tables" / "table_5_1.csv").read_text().splitlines()
    assert rows[0].startswith("model,optimizer,epoch,n_seeds,nDCG@10,nDCG@10 ci95,")
    assert [r.split(",")[:4] for r in rows[1:]] == [
        ["first stage", "-", "-", "2"],  # the candidates' own order, the same for both seeds
        ["minilm", "lion", "0", "2"],
        ["minilm", "lion", "1", "2"],
    ]
    assert len(list((study_dir / "report" / "plots").glob("minilm-*.png"))) == 3

    session_logs = Path(ray_cluster._private.worker._global_node.get_session_dir_path()) / "logs"
    for path in [*study_dir.rglob("*"), *session_logs.rglob("*")]:
        if path.is_file() and not path.is_symlink():
            assert FAKE_KEY.encode() not in path.read_bytes(), path
    assert FAKE_KEY not in printed
