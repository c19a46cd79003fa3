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


def test_optimizer_step_quick_run_checks_every_implementation(tmp_path):
    """Every implementation available here gives the reference update; Triton is named unavailable."""
    import json

    out = _run("benchmarks.optimizer_step", "--quick", "--models", "minilm", "--json", str(tmp_path / "steps.json"))
    result = json.loads((tmp_path / "steps.json").read_text())
    rows = {(r["optimizer"], r["implementation"]): r for r in result["rows"]}
    assert set(rows) == {("adamw", i) for i in ("fused", "foreach", "forloop")} | {("lion", i) for i in ("triton", "foreach", "plain")}
    for key, row in rows.items():
        if key == ("lion", "triton"):
            assert row["correct"] is None and row["note"] == "needs a CUDA GPU and Triton"
        else:
            assert row["correct"] is True and row["step_ms"] > 0 and 0 < row["share"] < 1, row
    assert result["choice"]["adamw"] in ("fused", "foreach", "forloop") and result["choice"]["lion"] in ("foreach", "plain")
    assert result["trials_use"] == {"adamw": "fused", "lion": "plain"}  # on a CPU
    assert "Lion step / AdamW step, each at its fastest correct implementation" in out


def test_optimizer_step_check_catches_a_wrong_update():
    """The same-update check can fail: Lion with another beta1 is not the reference Lion."""
    import torch

    from benchmarks.optimizer_step import (
        CHECK_LR,
        MAX_DIFFERING,
        compare_updates,
        make_optimizer,
    )

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.LayerNorm(64), torch.nn.Linear(64, 1))

    def reference(groups):
        return make_optimizer("lion", "plain", groups, lr=CHECK_LR)

    def same(groups):
        return make_optimizer("lion", "foreach", groups, lr=CHECK_LR)

    def wrong(groups):
        from lion_pytorch import Lion

        return Lion(groups, lr=CHECK_LR, betas=(0.5, 0.99))

    assert compare_updates(model, same, reference)[0] <= MAX_DIFFERING
    assert compare_updates(model, wrong, reference)[0] > 0.01
