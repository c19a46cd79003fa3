"""The GPU path's guarantees, checked on the CPU: fp32 scores under bf16 autocast, a loud error
when a GPU trial finds no usable CUDA, the trial's thread count, and divergence not retried."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from eval.head_precision import fp32_head, head_modules
from eval.rerank import score_pairs
from study.data.tokenized import TokenizedPairs
from trainables.models import model_from_config


def _tiny_bert():
    from transformers import BertConfig

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=1000, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, num_labels=1
    )
    return model_from_config(config).eval()


def _random_pairs(count: int, length: int = 24) -> TokenizedPairs:
    rng = np.random.default_rng(0)
    ids = rng.integers(5, 1000, size=count * length).astype(np.int32)
    return TokenizedPairs(ids, None, np.arange(count + 1, dtype=np.int64) * length, pad_token_id=0)


def test_scores_under_bf16_autocast_are_fp32_and_do_not_tie():
    model, pairs = _tiny_bert(), _random_pairs(1000)
    cpu = torch.device("cpu")
    fp32 = score_pairs(model, pairs, batch_size=250, device=cpu)
    mixed = score_pairs(model, pairs, batch_size=250, device=cpu, autocast_dtype=torch.bfloat16)

    # what reranking did before: the whole classifier, head included, under bf16 autocast
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        batch = pairs.batch(np.arange(len(pairs)))
        bf16_head = model(**batch).logits.reshape(-1).float().numpy()

    distinct = {name: len(np.unique(s)) for name, s in (("fp32", fp32), ("mixed", mixed), ("bf16", bf16_head))}
    print(distinct)
    assert distinct["fp32"] == 1000
    assert distinct["mixed"] >= 990  # the fp32 head: (almost) every score distinct
    assert distinct["bf16"] < 700  # the bf16 head: scores collapse onto bf16's grid
    assert mixed.dtype == np.float32


def test_the_head_is_restored_after_scoring():
    model = _tiny_bert()
    modules = head_modules(model)
    assert model.classifier in modules and model.bert.pooler in modules and model.bert not in modules
    with fp32_head(model, "cpu"):
        assert all("forward" in m.__dict__ for m in modules)
    assert all("forward" not in m.__dict__ for m in modules)


def _smoke_trial(**resources):
    from study.grids import build_study

    trial = build_study("thesis", scale="smoke").trials[0]
    return type(trial).model_validate(trial.model_dump() | {"resources": resources})


@pytest.fixture
def threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_a_gpu_trial_without_usable_cuda_stops_and_says_why(monkeypatch, tmp_path, threads):
    from trainables import trial as trial_module
    from trainables.cuda_check import CudaUnavailableError

    def old_driver():
        raise RuntimeError(
            "The NVIDIA driver on your system is too old (found version 11040). Please update your GPU driver"
        )

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "init", old_driver)
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    spec = _smoke_trial(cpus=2.0, gpus=0.5)
    with pytest.raises(CudaUnavailableError) as raised:
        trial_module.run_trial(spec, trial_dir=tmp_path, report=lambda *_: pytest.fail("it trained"))
    message = str(raised.value)
    assert "asks for 0.5 GPU" in message and "torch.cuda.is_available() is False" in message
    assert "built for CUDA 12.8" in message and "driver on your system is too old (found version 11040)" in message
    assert not (tmp_path / trial_module.STEP_LOG).exists()  # nothing trained

    monkeypatch.setattr(torch.version, "cuda", None)  # a CPU-only wheel
    with pytest.raises(CudaUnavailableError, match="CPU-only build"):
        trial_module.device_and_autocast(spec)


def test_a_trial_uses_its_own_cpus_as_threads_on_either_device(monkeypatch, threads):
    from trainables.trial import device_and_autocast

    torch.set_num_threads(1)
    assert device_and_autocast(_smoke_trial(cpus=2.0, gpus=0.0)) == (torch.device("cpu"), None)
    assert torch.get_num_threads() == 2
    torch.set_num_threads(1)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # the CUDA path, without a GPU
    assert device_and_autocast(_smoke_trial(cpus=3.0, gpus=1.0)) == (torch.device("cuda"), torch.bfloat16)
    assert torch.get_num_threads() == 3


def test_a_diverged_trial_is_not_trained_again_by_tunes_retry(monkeypatch, tmp_path):
    """What a Tune retry (or --resume) of a diverged trial runs: it fails at once, before run_trial."""
    import types

    import pyarrow.fs
    from ray import tune

    from trainables import reranker
    from trainables.training import NonFiniteLossError

    storage = types.SimpleNamespace(
        storage_filesystem=pyarrow.fs.LocalFileSystem(),
        trial_fs_path=str(tmp_path / "storage" / "trial"),
        trial_working_directory=str(tmp_path / "work"),
    )
    monkeypatch.setattr(tune, "get_context", lambda: types.SimpleNamespace(get_storage=lambda: storage))
    monkeypatch.setattr(tune, "get_checkpoint", lambda: None)
    runs = []

    def diverging(spec, **kwargs):
        runs.append(spec.name)
        raise NonFiniteLossError("training loss became nan by step 50 (epoch 1): the run diverged.")

    monkeypatch.setattr(reranker, "run_trial", diverging)
    config = {"trial": _smoke_trial(cpus=1.0, gpus=0.0).model_dump(mode="json")}
    with pytest.raises(NonFiniteLossError, match="became nan by step 50"):
        reranker.train_reranker(config)
    with pytest.raises(NonFiniteLossError, match=r"became nan by step 50 .* \(not retried: the divergence is deterministic\)"):
        reranker.train_reranker(config)  # the retry
    assert len(runs) == 1


def test_a_batch_without_padding_runs_without_a_mask_and_scores_the_same():
    """transformers checks a mask with `.all()` (a host sync on CUDA) every step; unpadded batches skip it."""
    from trainables.training import padded_batches

    model, pairs = _tiny_bert(), _random_pairs(8)
    labels = np.zeros(8, dtype=np.float32)
    ((inputs, _),) = list(padded_batches(pairs, labels, [np.arange(8)]))
    assert set(inputs) == {"input_ids"}
    with torch.inference_mode():
        unmasked = model(**inputs).logits
        masked = model(**pairs.batch(np.arange(8))).logits
    assert torch.allclose(unmasked, masked)


def test_remote_code_runs_pinned_only(monkeypatch):
    from study.spec import ModelSpec
    from trainables.models import check_loadable_offline
    from trainables.remote_code import load_kwargs

    gte = ModelSpec(name="gte", checkpoint="Alibaba-NLP/gte-multilingual-base", trust_remote_code=True)
    monkeypatch.delenv("STUDY_MODEL_REVISIONS", raising=False)
    with pytest.raises(ValueError, match="runs code from the Hugging Face hub.*Alibaba-NLP/new-impl=<commit>"):
        check_loadable_offline(gte)  # before Ray: the preflight refuses unpinned remote code
    assert load_kwargs("microsoft/MiniLM-L12-H384-uncased", False) == {}
    monkeypatch.setenv("STUDY_MODEL_REVISIONS", "Alibaba-NLP/gte-multilingual-base=abc123, Alibaba-NLP/new-impl=def456")
    assert load_kwargs(gte.checkpoint, True) == {"revision": "abc123", "code_revision": "def456"}
    monkeypatch.setenv("STUDY_MODEL_REVISIONS", "Alibaba-NLP/gte-multilingual-base")
    with pytest.raises(ValueError, match="expects REPO=COMMIT"):
        load_kwargs(gte.checkpoint, True)
