"""Training throughput and model FLOPs utilisation (MFU) per thesis model, in bf16 on a CUDA GPU.

    python -m benchmarks.gpu_mfu                   # the thesis's three models (Hugging Face hub or cache)
    python -m benchmarks.gpu_mfu --source config   # the same sizes built from configs: no downloads
    python -m benchmarks.gpu_mfu --source smoke    # tiny stand-ins: exercises the script on a CPU

Per model it runs the project's training loop as a trial does (`trainables.training`: random
batches of 16 pairs from the built-in demo collection, the thesis's protocol; bf16 autocast with fp32
weights, fused AdamW, DataLoader workers padding batches into pinned memory): `--warmup` untimed
steps, then `--steps` timed ones, ending with one device sync; twice, on the same batches from the
same loaded weights with a fresh optimizer: padded (`training.padding_free: false`) and padding-free
(the default; trainables/packed.py), so the gain is known where the thesis's runs happen. A family
without a padding-free forward (GTE's remote code; its RoFormer stand-in) runs padded only and says
so. A few minutes of device time for all three.

MFU = 6 x non-embedding parameters x real (unpadded) tokens / seconds / the device's peak dense bf16
FLOP/s (the usual model-FLOPs count: padding, attention scores and recomputation are not credited).
"executed" is what torch.utils.flop_counter counts for the batches the loop really ran, counted on
the first batch and scaled by computed tokens (padded: B x L per batch; padding-free: the real
tokens), so the [CLS]-only last BERT layer and the skipped padding show there as fewer FLOPs.

`--source config` builds each thesis architecture at its real size with random weights: MiniLM-L12
(BERT, H384), ModernBERT-base, and for gte-multilingual-base (remote code, not buildable offline) a
BERT-base-sized encoder with its 250k vocabulary. Throughput does not depend on the weights.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import torch

from benchmarks.memory import measure_peak
from search_spaces import thesis
from study.data import registry
from study.data.tokenized import tokenize_pairs
from study.spec import AdamWSpec, ModelSpec, ScheduleSpec, TrainDataSpec
from trainables.models import (
    attention_preference,
    load_cross_encoder,
    model_from_config,
    model_input_names,
    stand_in_tokenizer_path,
)
from trainables.optimizers import build_optimizer
from trainables.packed import set_padding_free
from trainables.schedules import build_scheduler
from trainables.training import epoch_batches, train_one_epoch

# Dense (no sparsity) bf16 tensor-core peaks from NVIDIA's data sheets, matched against
# torch.cuda.get_device_name() in this order. Others: pass --peak-tflops.
PEAK_BF16_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H200", 989.0),
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.0),  # SXM5 ("NVIDIA H100 80GB HBM3")
    ("A100", 312.0),
    ("L40S", 362.0),
    ("L4", 121.0),
)

SOURCES = ("hub", "config", "smoke")
FORWARDS = ("padded", "padding-free")
SEED = 12


@dataclass
class Result:
    model: str
    built_from: str
    attention: str
    forward: str  # "padded" or "padding-free"
    non_embedding_params: int
    steps: int
    pairs_per_s: float
    real_tokens_per_s: float
    padding: float  # computed tokens per real token
    mfu: float | None
    executed_tflops_per_s: float | None
    peak_memory_gib: float
    error: str | None = None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_mfu", description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", choices=SOURCES, default="hub", help="where the models come from")
    parser.add_argument("--models", nargs="+", choices=list(thesis.MODELS), default=list(thesis.MODELS))
    parser.add_argument("--steps", type=int, default=None, help="timed steps per model (default 50; smoke: 4)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 10; smoke: 1)")
    parser.add_argument("--batch-size", type=int, default=thesis.TRAINING["batch_size"])
    parser.add_argument("--loader-workers", type=int, default=None, help="default: 3 on CUDA, 0 on a CPU")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (training.compile)")
    parser.add_argument("--peak-tflops", type=float, help="the device's dense bf16 peak, if not in the table")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    smoke = args.source == "smoke"
    args.steps = args.steps if args.steps is not None else (4 if smoke else 50)
    args.warmup = args.warmup if args.warmup is not None else (1 if smoke else 10)
    if args.steps < 1 or args.warmup < 0 or args.batch_size < 1:
        parser.error(
            "expects --steps >= 1, --warmup >= 0, --batch-size >= 1, "
            f"but got {args.steps}, {args.warmup}, {args.batch_size}"
        )
    return args


def peak_flops(device: torch.device, override_tflops: float | None) -> float | None:
    if override_tflops is not None:
        return override_tflops * 1e12
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, tflops in PEAK_BF16_TFLOPS:
        if key in name:
            return tflops * 1e12
    return None


def model_spec(key: str, source: str) -> tuple[ModelSpec, str]:
    """The ModelSpec to load and a note on what it is."""
    model = thesis.MODELS[key]
    if source == "hub":
        spec = ModelSpec(
            name=key, checkpoint=model.hf_id, max_length=model.max_length, trust_remote_code=model.trust_remote_code
        )
        return spec, model.hf_id
    if source == "smoke":
        tiny = {"minilm": "standin:bert-tiny", "gte": "standin:roformer-tiny", "modernbert": "standin:modernbert-tiny"}
        return ModelSpec(name=key, checkpoint=tiny[key], stand_in_for=model.hf_id), f"{tiny[key]} (tiny, random)"
    spec = ModelSpec(name=key, checkpoint=f"config:{key}", stand_in_for=model.hf_id)
    return spec, f"{model.hf_id} sized config (random)"


def load(spec: ModelSpec, attention: tuple[str, ...]):
    """load_cross_encoder, or for `config:<key>` the thesis architecture at full size with random weights."""
    if not spec.checkpoint.startswith("config:"):
        return load_cross_encoder(spec, attention=attention)
    import transformers
    from transformers import AutoTokenizer

    configs = {
        "minilm": transformers.BertConfig(  # microsoft/MiniLM-L12-H384-uncased
            hidden_size=384, num_hidden_layers=12, num_attention_heads=12, intermediate_size=1536
        ),
        "gte": transformers.BertConfig(  # gte-multilingual-base's sizes (its own code adds RoPE and a GLU)
            vocab_size=250048, hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072
        ),
        "modernbert": transformers.ModernBertConfig(  # answerdotai/ModernBERT-base (the class defaults)
            pad_token_id=0, cls_token_id=101, sep_token_id=102, bos_token_id=101, eos_token_id=102
        ),
    }
    config = configs[spec.checkpoint.removeprefix("config:")]
    config.num_labels = 1
    torch.manual_seed(SEED)
    return AutoTokenizer.from_pretrained(stand_in_tokenizer_path()), model_from_config(config, attention=attention)


def measure(key: str, args: argparse.Namespace, device: torch.device, peak: float | None) -> list[Result]:
    """Padded, then padding-free where the family has that forward: the same batches and weights."""
    spec, built_from = model_spec(key, args.source)
    bf16 = device.type == "cuda"
    tokenizer, model = load(spec, attention_preference(device.type, half_precision=bf16))
    model.to(device)
    if args.compile:
        model.compile(dynamic=True)
    train = registry.load_training_pairs(TrainDataSpec(source="builtin", size="demo"), seed=SEED)
    tokens = tokenize_pairs(
        tokenizer,
        [p.query for p in train],
        [p.passage for p in train],
        max_length=spec.max_length,
        with_token_type_ids="token_type_ids" in model_input_names(model),
    )
    labels = np.array([p.label for p in train], dtype=np.float32)
    batches: list[np.ndarray] = []
    epoch = 0
    while len(batches) < args.warmup + args.steps:
        epoch += 1
        batches += epoch_batches(tokens.lengths, args.batch_size, batching="random", seed=SEED, epoch=epoch)
    warm, timed = batches[: args.warmup], batches[args.warmup : args.warmup + args.steps]
    start = {k: v.detach().clone() for k, v in model.state_dict().items()}
    results = []
    for forward in FORWARDS:
        if not set_padding_free(model, forward == "padding-free"):
            break  # no padding-free forward for this family: padded only
        model.load_state_dict(start)
        results.append(_measure_one(model, spec, built_from, forward, tokens, labels, warm, timed, args, device, peak))
        if device.type == "cuda":
            torch.cuda.empty_cache()
    if not results:  # a family set_padding_free does not know (remote code): its own, padded forward
        results.append(_measure_one(model, spec, built_from, "padded", tokens, labels, warm, timed, args, device, peak))
    return results


def _measure_one(model, spec, built_from, forward, tokens, labels, warm, timed, args, device, peak) -> Result:
    bf16 = device.type == "cuda"
    optimizer = build_optimizer(model, AdamWSpec(lr=2e-5))
    scheduler = build_scheduler(optimizer, ScheduleSpec(name="constant", warmup_steps=1000), total_steps=len(warm) + len(timed))
    workers = args.loader_workers if args.loader_workers is not None else (3 if device.type == "cuda" else 0)
    common = dict(
        device=device,
        autocast_dtype=torch.bfloat16 if bf16 else None,
        grad_clip=1.0,
        log_every=10**9,  # one sync, at the end
        epoch=1,
        on_log=lambda line: None,
        loader_workers=workers,
    )
    if warm:
        train_one_epoch(model, optimizer, scheduler, tokens, labels, warm, first_step=0, **common)
    with measure_peak(device.type) as memory:
        stats = train_one_epoch(model, optimizer, scheduler, tokens, labels, timed, first_step=len(warm), **common)
    real = int(sum(tokens.lengths[b].sum() for b in timed))
    computed = int(sum(tokens.lengths[b].max() * len(b) for b in timed))
    params = non_embedding_params(model)
    executed = executed_flops(model, tokens, labels, timed, device=device, bf16=bf16, packed=forward == "padding-free")
    peak_bytes = memory.cuda_bytes if memory.cuda_bytes is not None else memory.rss_bytes
    return Result(
        model=spec.name,
        built_from=built_from,
        attention=model.config._attn_implementation,
        forward=forward,
        non_embedding_params=params,
        steps=stats.steps,
        pairs_per_s=stats.pairs_per_s,
        real_tokens_per_s=real / stats.seconds,
        padding=computed / real,
        mfu=6 * params * real / stats.seconds / peak if peak else None,
        executed_tflops_per_s=executed / stats.seconds / 1e12 if executed else None,
        peak_memory_gib=peak_bytes / 2**30,
    )


def non_embedding_params(model: torch.nn.Module) -> int:
    embedding = sum(p.numel() for m in model.modules() if isinstance(m, torch.nn.Embedding) for p in m.parameters())
    return sum(p.numel() for p in model.parameters()) - embedding


def executed_flops(
    model, tokens, labels, batches, *, device: torch.device, bf16: bool, packed: bool
) -> float | None:
    """FLOPs of forward + backward over `batches` as torch.utils.flop_counter counts them, from a
    count on the first batch scaled by computed tokens (padded: B x L; `packed`: the real ones);
    None if counting fails."""
    import contextlib

    from torch.utils.flop_counter import FlopCounterMode

    from trainables.loss import pointwise_bce

    first = batches[0]
    inputs = {k: v.to(device) for k, v in tokens.batch(first).items()}
    target = torch.from_numpy(labels[first]).to(device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    try:
        with FlopCounterMode(display=False) as counter:
            with autocast:
                logits = model.forward(**inputs).logits  # eager, even when compiled
            pointwise_bce(logits, target).backward()
    except Exception:  # a kernel without a FLOP formula: report the MFU only
        return None
    finally:
        model.zero_grad(set_to_none=True)
    def computed(b: np.ndarray) -> int:
        return int(tokens.lengths[b].sum()) if packed else int(tokens.lengths[b].max()) * len(b)

    return counter.get_total_flops() / computed(first) * sum(computed(b) for b in batches)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    peak = peak_flops(device, args.peak_tflops)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"device: {name}; peak dense bf16: {f'{peak / 1e12:.0f} TFLOP/s' if peak else 'unknown (MFU not computed)'}")
    print(f"{args.warmup} untimed + {args.steps} timed steps of {args.batch_size} pairs per model ({args.source})")
    if device.type != "cuda" and args.source != "smoke":
        print("no CUDA device: this runs fp32 on the CPU and will be slow; --source smoke exercises the script")
    results = []
    for key in args.models:
        start = time.perf_counter()
        try:
            done = measure(key, args, device, peak)
        except (RuntimeError, OSError, ValueError) as err:  # e.g. the hub cannot be reached
            note, reason = model_spec(key, args.source)[1], str(err).splitlines()[0]
            done = [Result(key, note, "", "", 0, 0, 0.0, 0.0, 0.0, None, None, 0.0, error=reason)]
        print(f"  {key}: done in {time.perf_counter() - start:.0f} s", flush=True)
        results += done
        if device.type == "cuda":
            torch.cuda.empty_cache()
    print_table(results)
    if args.json:
        args.json.write_text(json.dumps({"device": name, "results": [asdict(r) for r in results]}, indent=2))
    return 0 if all(r.error is None for r in results) else 1


def print_table(results: list[Result]) -> None:
    row = "{:12}{:14}{:>10}{:>10}{:>12}{:>9}{:>8}{:>11}{:>10}  {}"
    print()
    header = (
        "model", "forward", "params*", "pairs/s", "tokens/s", "padding", "MFU", "exec TF/s", "peak GiB",
        "attention/source",
    )  # fmt: skip
    print(row.format(*header))
    for r in results:
        if r.error:
            print(f"{r.model:12}skipped: {r.error}")
            continue
        print(
            row.format(
                r.model,
                r.forward,
                f"{r.non_embedding_params / 1e6:.3g}M",
                f"{r.pairs_per_s:.1f}",
                f"{r.real_tokens_per_s:.0f}",
                f"{r.padding:.3f}",
                f"{r.mfu:.1%}" if r.mfu is not None else "n/a",
                f"{r.executed_tflops_per_s:.3g}" if r.executed_tflops_per_s is not None else "n/a",
                f"{r.peak_memory_gib:.2f}",
                f"{r.attention} / {r.built_from}",
            )
        )
    print("* non-embedding parameters; MFU = 6 x params* x real tokens / time / peak bf16 FLOP/s")
    print("padding: computed positions per real token of the padded batches (random batches)")
    for key in dict.fromkeys(r.model for r in results if not r.error):
        padded, free = (next((r for r in results if r.model == key and r.forward == f), None) for f in FORWARDS)
        if padded and free:
            print(f"{key}: padding-free / padded pairs/s {free.pairs_per_s / padded.pairs_per_s:.2f}x")
        elif padded:
            print(f"{key}: padded only (no padding-free forward for this family)")


if __name__ == "__main__":
    sys.exit(main())
