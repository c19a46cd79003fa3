"""The README's performance commands, run in quick variants so an API change cannot break them silently."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def _run(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    return done.stdout


def test_vs_sentence_transformers_quick_run_agrees_with_the_reference():
    out = _run(
        "benchmarks.vs_sentence_transformers", "--rounds", "1", "--train-steps", "2", "--warmup-steps", "1",
        "--candidates", "20", "--evaluations", "1", "--max-length", "64",
    )  # fmt: skip
    assert "training pairs/s" in out and "reranking pairs/s" in out and "bucketed batches pairs/s" in out
    assert "training tokens per real token" in out  # each side's batch padding, beside the ratio
    # Same weights, same batch: the first step's loss and gradient norm and the scores must agree.
    assert "first-step loss" in out and out.count(": agree") >= 3, out


def test_gpu_mfu_smoke_source_runs_on_the_cpu_padded_and_padding_free():
    out = _run(
        "benchmarks.gpu_mfu", "--source", "smoke", "--models", "minilm", "gte", "--steps", "2", "--warmup", "1",
    )  # fmt: skip
    assert "MFU" in out
    rows = [line.split()[:2] for line in out.splitlines() if line.startswith(("minilm ", "gte "))]
    # BERT has a padding-free forward, so both ways run; GTE's stand-in (RoFormer) keeps its own, padded.
    assert rows == [["minilm", "padded"], ["minilm", "padding-free"], ["gte", "padded"]], out
    assert "minilm: padding-free / padded pairs/s" in out and "gte: padded only" in out, out


def _tiny_collection(folder: Path) -> Path:
    """A BEIR-style collection: 4 queries, 12 passages of very different lengths, graded judgments."""
    folder.mkdir()
    words = ["wing", "flow", "pressure", "boundary", "layer", "heat", "transfer", "shock", "wave", "lift", "drag"]
    with (folder / "corpus.jsonl").open("w") as corpus:
        for d in range(12):
            text = " ".join(words[(d + i) % len(words)] for i in range(5 + 20 * (d % 4)))
            corpus.write(json.dumps({"_id": f"d{d}", "title": "", "text": text}) + "\n")
    (folder / "queries.tsv").write_text("".join(f"q{q}\t{words[q]} {words[q + 3]}\n" for q in range(4)))
    (folder / "qrels.txt").write_text("".join(f"q{q} 0 d{q * 3 + k} {2 + k % 2}\n" for q in range(4) for k in range(2)))
    return folder


def test_padding_free_quick_run_reports_padding_and_equal_outputs(tmp_path):
    collection = _tiny_collection(tmp_path / "tinycoll")
    # exits 1 if padded and padding-free logits differ
    out = _run("benchmarks.padding_free", "--quick", "--collection", str(collection))
    shares = {}
    for line in out.splitlines():
        cells = line.split()
        if cells[:1] == ["minilm"] and cells[-6:-5] in (["demo"], ["tinycoll"]):
            shares[cells[-6]] = {"random": float(cells[-2].rstrip("%")), "bucketed": float(cells[-1].rstrip("%"))}
    # Random batches of the demo pairs carry real padding; bucketing removes nearly all of it.
    assert shares["demo"]["random"] > 5 * shares["demo"]["bucketed"] > 0, out
    assert shares["tinycoll"]["random"] > 0, out  # the collection's pairs were built and measured
    assert out.count("random padding-free vs bucketed padded") == 2, out
    assert "bert-tiny: padded vs padding-free logits max |diff|" in out and out.count(": agree") == 2, out
