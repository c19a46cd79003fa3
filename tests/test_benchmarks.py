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
        "--candidates", "20", "--evaluations", "1", "--max-length", "64", "--queries", "1", "--threads", "1",
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
    # Attention alone, three ways; the exit status already says their outputs agree with the grid's.
    ways = [line[36:50].strip() for line in out.splitlines() if line.startswith("tiny (2 heads x 16)")]
    assert ways == ["grid + mask", "per sequence", "jagged"], out


def test_padding_free_attention_only_compares_the_three_ways():
    out = _run("benchmarks.padding_free", "--quick", "--attention-only")  # exits 1 if a way's output differs
    ways = [line[36:50].strip() for line in out.splitlines() if line.startswith("tiny (2 heads x 16)")]
    assert ways == ["grid + mask", "per sequence", "jagged"], out
    assert "Padding share" not in out and "Training speed" not in out, out


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
