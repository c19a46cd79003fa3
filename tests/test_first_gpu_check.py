"""The first-GPU check runs in its CPU quick mode (the README says how to run it on a GPU)."""

from __future__ import annotations

from benchmarks import first_gpu_check


def test_the_first_gpu_check_runs_every_check_in_its_quick_mode(capsys):
    assert first_gpu_check.main(["--quick", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "built for CUDA" in out and "device: CPU" in out
    for model in ("minilm", "gte", "modernbert"):
        for check in ("buffers", "step adamw", "step lion", "speed adamw", "speed lion", "syncs", "scores"):
            assert any(line.startswith(f"{model:11} {check:12} ok") for line in out.splitlines()), (model, check)
    assert "bf16 encoder + fp32 head 200" in out and "all checks passed" in out


def test_without_usable_cuda_the_check_says_why_and_fails(monkeypatch, capsys):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert first_gpu_check.main(["--quick"]) == 1
    assert "CUDA unusable: the trial asks for 1 GPU" in capsys.readouterr().out


def test_a_buffer_that_came_back_wrong_is_named():
    import torch
    from transformers import BertConfig

    from trainables.models import model_from_config

    model = model_from_config(BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, num_labels=1))
    assert first_gpu_check.broken_buffers(model, torch.device("cpu")) == []
    model.bert.embeddings.position_ids.zero_()  # what an empty meta-device buffer looks like once materialised
    assert first_gpu_check.broken_buffers(model, torch.device("cpu")) == ["bert.embeddings.position_ids"]
