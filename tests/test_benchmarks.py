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
        "--candidates", "20", "--evaluations", "1", "--max-length", "64", "--queries", "1", "--threads", "1",
    )  # fmt: skip
    assert "training pairs/s" in out and "reranking pairs/s" in out and "bucketed batches pairs/s" in out
    # Same weights, same batch: the first step's loss and gradient norm and the scores must agree.
    assert "first-step loss" in out and out.count(": agree") >= 3, out


def test_gpu_mfu_smoke_source_runs_on_the_cpu():
    out = _run("benchmarks.gpu_mfu", "--source", "smoke", "--models", "minilm", "--steps", "2", "--warmup", "1")
    assert "minilm" in out and "MFU" in out
