"""The README's performance commands, run in quick variants so an API change cannot break them silently."""

from __future__ import annotations

import subprocess
import sys


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


def test_padding_free_quick_run_reports_padding_and_equal_outputs():
    out = _run("benchmarks.padding_free", "--quick")  # exits 1 if padded and padding-free logits differ
    shares = {}
    for line in out.splitlines():
        cells = line.split()
        if cells[:1] == ["minilm"] and "demo" in cells:
            shares = {"random": float(cells[-2].rstrip("%")), "bucketed": float(cells[-1].rstrip("%"))}
    # Random batches of the demo pairs carry real padding; bucketing removes nearly all of it.
    assert shares and shares["random"] > 5 * shares["bucketed"] > 0, out
    assert out.count("random padding-free vs bucketed padded") == 2, out
    assert "bert-tiny: padded vs padding-free logits max |diff|" in out and out.count(": agree") == 2, out
