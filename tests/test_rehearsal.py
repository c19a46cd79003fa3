"""A full-scale rehearsal: what `--grid thesis --scale full` resolves, run through the CLI and Ray on the CPU.

The spec is the full scale's, as the CLI resolves it (trainable, data registry and loaders, evaluation
sets, checkpoint settings, report), with four substitutions only:
- checkpoints: local directories holding models built from configs of the thesis's families and
  loading paths: BERT with MiniLM-L12-H384's config, ModernBERT-base's config (its global/local
  attention pattern, rotary settings, 8192 positions), and a remote-code model (`trust_remote_code`,
  non-persistent rotary tables) in place of GTE. Their depth and width are cut to a few layers of 64
  (STUDY_REHEARSAL_REAL_SHAPES=1 keeps the real ones: 12 x 384, 22 x 768, 12 x 768), so the test fits
  in CI: at the real widths one trial writes gigabytes of checkpoints. All use BERT's uncased
  vocabulary (the tokenizer every local model here ships);
- data: small files in the official layouts (tests/official_files.py), and with them 16 held-out
  pairs for the evaluation loss instead of the full scale's 1000;
- resources: one CPU per trial instead of fractions of a GPU.
Everything else (3 epochs, learning rates, schedules, warmup, 2M-pair cap, 30-minute checkpoints,
metrics, report with the thesis's columns) is the full scale's own.
"""

from __future__ import annotations

import json
import os

import pytest
import yaml
from official_files import write_dl19, write_triples, write_v11_dev
from remote_code_model import save_toy_remote_model

from study.run import build_parser, main, resolve_spec

pytestmark = pytest.mark.ray

REAL = os.environ.get("STUDY_REHEARSAL_REAL_SHAPES") == "1"
SMALL = {"hidden_size": 64, "num_attention_heads": 2, "intermediate_size": 128}


def _save_native(directory, config) -> str:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from trainables.models import stand_in_tokenizer_path

    AutoModelForSequenceClassification.from_config(config).save_pretrained(directory)
    AutoTokenizer.from_pretrained(stand_in_tokenizer_path()).save_pretrained(directory)
    return str(directory)


def _model_dirs(tmp_path) -> dict[str, str]:
    from transformers import BertConfig, ModernBertConfig

    bert_tokens = {"vocab_size": 30522, "pad_token_id": 0, "num_labels": 1}
    minilm = {"num_hidden_layers": 12, "hidden_size": 384, "num_attention_heads": 12, "intermediate_size": 1536}
    modernbert = {"num_hidden_layers": 22, "hidden_size": 768, "num_attention_heads": 12, "intermediate_size": 1152}
    gte = {"num_hidden_layers": 12, "hidden_size": 768, "num_attention_heads": 12, "intermediate_size": 3072}
    if not REAL:
        minilm = minilm | SMALL | {"num_hidden_layers": 2}
        modernbert = modernbert | SMALL | {"num_hidden_layers": 3}  # one global and two local-attention layers
        gte = gte | SMALL | {"num_hidden_layers": 2}
    return {
        "minilm": _save_native(tmp_path / "minilm", BertConfig(max_position_embeddings=512, **minilm, **bert_tokens)),
        "modernbert": _save_native(
            tmp_path / "modernbert",
            ModernBertConfig(
                **modernbert, **bert_tokens, cls_token_id=101, sep_token_id=102, bos_token_id=101, eos_token_id=102
            ),
        ),
        "gte": str(save_toy_remote_model(tmp_path / "gte", max_position_embeddings=8192, **gte)),
    }


def test_the_full_scale_study_runs_end_to_end_on_stand_in_files(ray_cluster, tmp_path, capsys):
    args = build_parser().parse_args(
        ["--grid", "thesis", "--scale", "full", "--name", "rehearsal", "--storage", str(tmp_path / "studies")]
    )
    spec = resolve_spec(args).model_dump(mode="json")  # what the CLI resolves for the full scale
    data = tmp_path / "data"
    data.mkdir()
    dl19 = write_dl19(data, queries=4, depth=8)
    v11 = write_v11_dev(data, queries=4, shown=5)
    files = {
        "trec-dl-2019": {k: str(v) for k, v in dl19.items()},
        "msmarco-v1.1-qna-dev": {k: str(v) for k, v in v11.items()},
    }
    # 48 pairs: 16 held out for the evaluation loss (the full scale's 1000, cut to the file), 32
    # trained: 2 steps per epoch
    triples = str(write_triples(data / "triples.train.small.tsv", n=24))
    checkpoints = _model_dirs(tmp_path / "models")
    for trial in spec["trials"]:
        assert trial["training"]["data"] == {"source": "msmarco-passage-train", "size": None, "file": None,
                                             "collection": None, "max_pairs": 2_000_000}
        trial["model"]["checkpoint"] = checkpoints[trial["model"]["name"]]
        trial["training"]["data"]["file"] = triples  # the official file in place of the download
        for evaluation in trial["evaluation"]:
            evaluation["files"] = files[evaluation["name"]]
        trial["training"]["heldout_pairs"] = 16
        trial["resources"] = {"cpus": 1.0, "gpus": 0.0}
    config = tmp_path / "rehearsal.yaml"
    config.write_text(yaml.safe_dump(spec, sort_keys=False))

    assert main(["--config", str(config)]) == 0
    out = capsys.readouterr().out

    study_dir = tmp_path / "studies" / "rehearsal"
    saved = {t["name"]: t for t in json.loads((study_dir / "results.json").read_text())}
    assert sorted(saved) == sorted(f"{m}-{o}" for m in ("minilm", "gte", "modernbert") for o in ("adamw", "lion"))
    for name, trial in saved.items():
        assert [row["epoch"] for row in trial["rows"]] == [0, 1, 2, 3], name
        assert all(0 <= row["trec-dl-2019/nDCG@10"] <= 1 for row in trial["rows"])
        assert not trial["stand_in_for"]  # the full scale's trials: not stand-ins
    trial_dirs = [d for d in study_dir.iterdir() if (d / "steps.jsonl").exists()]
    assert len(trial_dirs) == 6
    for trial_dir in trial_dirs:
        steps = [json.loads(line) for line in (trial_dir / "steps.jsonl").read_text().splitlines()]
        assert [s["step"] for s in steps if "loss" in s] == [2, 4, 6]  # 32 trained pairs: 2 steps of 16 per epoch
        assert steps[-1]["lr"] < 2e-6  # the full scale's 1000 warmup steps: still warming up
        runs = trial_dir / "runs"
        assert (runs / "trec-dl-2019.epoch3.trec").read_text() != (runs / "trec-dl-2019.epoch0.trec").read_text().replace(
            "epoch0", "epoch3"
        )  # it trained: the scores moved
    assert "Results (per model x optimizer x epoch" in out
    report = study_dir / "report"
    for table in ("table_5_1", "table_5_1_vs_thesis"):
        text = (report / "tables" / f"{table}.md").read_text()
        assert "MiniLM" in text or "minilm" in text, table
    assert "**not comparable** with the thesis" not in (report / "report.md").read_text()  # full scale: beside the thesis's numbers
