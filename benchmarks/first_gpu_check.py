"""The first-GPU check: a few minutes on one GPU that show whether the GPU path works as the tests
on the CPU say it does.

    python -m benchmarks.first_gpu_check                  # the thesis's three models (hub or HF cache)
    python -m benchmarks.first_gpu_check --source config  # the same sizes built from configs: no downloads
    python -m benchmarks.first_gpu_check --quick          # tiny stand-ins, few steps: the CPU mode the tests run

It prints, in this order:
- the environment: torch and the CUDA it is built for, the driver (nvidia-smi), the device; on a
  machine where CUDA is unusable, the reason (trainables/cuda_check.py) and exit 1;
- per model, one line each:
  buffers   every non-persistent buffer of the model as the project loads it, compared with a fresh
            construction of the same class from its config on the device (transformers 5 loads on
            the meta device, where remote-code buffers can come back empty); names any that differ;
  step      one bf16 training step with AdamW and one with Lion: finite loss, parameters moved;
  speed     `--steps` timed steps (default 200) of the project's training loop per optimizer, pairs/s;
  scores    distinct scores of `--candidates` pairs (default 1000): fp32, the project's scoring under
            bf16 autocast (fp32 head), and the whole classifier under bf16 (what reranking did before);
  syncs     host synchronisations per training step over `--sync-steps` steps with one log line,
            counted by CUDA's sync debug mode (CUDA only).
Exit status 0 when every check passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import subprocess
import sys
import time
import warnings

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import torch

from benchmarks.gpu_mfu import SEED, load, model_spec
from search_spaces import thesis
from study.data import registry
from study.data.tokenized import tokenize_pairs
from study.spec import AdamWSpec, LionSpec, ScheduleSpec, TrainDataSpec
from trainables.cuda_check import cuda_problem
from trainables.loss import pointwise_bce
from trainables.models import attention_preference, model_input_names
from trainables.optimizers import build_optimizer
from trainables.schedules import build_scheduler
from trainables.training import epoch_batches, train_one_epoch


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.first_gpu_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", choices=("hub", "config", "smoke"), default="hub")
    parser.add_argument("--models", nargs="+", choices=list(thesis.MODELS), default=list(thesis.MODELS))
    parser.add_argument("--steps", type=int, default=200, help="timed training steps per optimizer")
    parser.add_argument("--candidates", type=int, default=1000, help="pairs scored for the distinct-score count")
    parser.add_argument("--sync-steps", type=int, default=20, help="steps over which syncs are counted")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--quick", action="store_true", help="stand-ins on the smoke collection, 3 steps, 200 candidates (for a CPU)")
    args = parser.parse_args(argv)
    if args.quick:
        args.source, args.steps, args.candidates, args.sync_steps = "smoke", 3, 200, 3
    return args


def environment(device: torch.device) -> list[str]:
    lines = [f"torch {torch.__version__}, built for CUDA {torch.version.cuda}"]
    try:
        smi = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        lines.append(f"nvidia-smi: {smi.stdout.strip() or smi.stderr.strip()}")
    except (OSError, subprocess.TimeoutExpired) as err:
        lines.append(f"nvidia-smi: not available ({err})")
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        lines.append(f"device: {torch.cuda.get_device_name(device)} (sm_{major}{minor}), bf16 {torch.cuda.is_bf16_supported()}")
    else:
        lines.append(f"device: CPU ({torch.get_num_threads()} threads)")
    return lines


def broken_buffers(model: torch.nn.Module, device: torch.device) -> list[str]:
    """Non-persistent buffers that differ from a fresh construction of the same class from the config."""
    torch.manual_seed(SEED)
    with torch.device(device):
        fresh = type(model)(model.config)
    fresh_buffers = dict(fresh.named_buffers())
    broken = []
    for module_name, module in model.named_modules():
        for name in getattr(module, "_non_persistent_buffers_set", ()):
            full = f"{module_name}.{name}" if module_name else name
            loaded, built = module._buffers.get(name), fresh_buffers.get(full)
            if loaded is None or built is None:
                continue
            if loaded.shape != built.shape or not torch.allclose(loaded.float(), built.float().to(loaded.device)):
                broken.append(full)
    del fresh
    return broken


def one_step(model, tokens, labels, batch, optimizer, device, bf16: bool) -> tuple[float, float]:
    """One training step; returns (loss, largest parameter change)."""
    before = [p.detach().clone() for p in model.parameters() if p.requires_grad]
    inputs = {k: v.to(device) for k, v in tokens.batch(batch).items()}
    target = torch.from_numpy(labels[batch]).to(device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    model.train()
    with autocast:
        logits = model(**inputs).logits
    loss = pointwise_bce(logits, target)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    moved = max(float((p.detach() - b).abs().max()) for p, b in zip((p for p in model.parameters() if p.requires_grad), before))
    return float(loss.detach()), moved


def distinct_scores(model, tokens, count: int, device: torch.device) -> dict[str, int]:
    from eval.rerank import score_pairs
    from study.data.tokenized import TokenizedPairs

    n = min(count, len(tokens))
    subset = TokenizedPairs(tokens.input_ids, tokens.token_type_ids, tokens.offsets[: n + 1], tokens.pad_token_id)
    fp32 = score_pairs(model, subset, batch_size=64, device=device)
    mixed = score_pairs(model, subset, batch_size=64, device=device, autocast_dtype=torch.bfloat16)
    whole_bf16 = []
    model.eval()
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16):
        for start in range(0, n, 64):
            batch = {k: v.to(device) for k, v in subset.batch(np.arange(start, min(start + 64, n))).items()}
            whole_bf16.append(model(**batch).logits.reshape(-1).float().cpu().numpy())
    return {
        "pairs": n,
        "fp32": len(np.unique(fp32)),
        "bf16 encoder + fp32 head": len(np.unique(mixed)),
        "bf16 head": len(np.unique(np.concatenate(whole_bf16))),
    }


def syncs_per_step(model, optimizer, scheduler, tokens, labels, batches, device) -> float | None:
    """Host syncs per step over `batches` (one log line at the end), from CUDA's sync debug mode."""
    if device.type != "cuda":
        return None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            train_one_epoch(
                model, optimizer, scheduler, tokens, labels, batches, device=device, autocast_dtype=torch.bfloat16,
                grad_clip=1.0, log_every=len(batches), epoch=1, first_step=0, on_log=lambda line: None, loader_workers=0,
            )  # fmt: skip
        finally:
            torch.cuda.set_sync_debug_mode(0)
    syncs = [w for w in caught if "synchroniz" in str(w.message)]
    return len(syncs) / len(batches)


def check_model(key: str, args: argparse.Namespace, device: torch.device) -> list[tuple[str, bool, str]]:
    """(check, passed, what was seen) for one model."""
    spec, built_from = model_spec(key, args.source)
    bf16 = device.type == "cuda" or args.quick
    tokenizer, model = load(spec, attention_preference(device.type, half_precision=bf16))
    model.to(device)
    results: list[tuple[str, bool, str]] = []
    broken = broken_buffers(model, device)
    results.append(("buffers", not broken, f"{built_from}, attention {model.config._attn_implementation}: "
                    + (f"differ from a fresh build: {', '.join(broken)}" if broken else "all non-persistent buffers match")))

    train = registry.load_training_pairs(TrainDataSpec(source="builtin", size="smoke" if args.quick else "demo"), seed=SEED)
    tokens = tokenize_pairs(
        tokenizer, [p.query for p in train], [p.passage for p in train], max_length=min(spec.max_length, 512),
        with_token_type_ids="token_type_ids" in model_input_names(model),
    )  # fmt: skip
    labels = np.array([p.label for p in train], dtype=np.float32)
    batches: list[np.ndarray] = []
    epoch = 0
    while len(batches) < args.steps + 1:
        epoch += 1
        batches += epoch_batches(tokens.lengths, thesis.TRAINING["batch_size"], batching="random", seed=SEED, epoch=epoch)

    initial = {k: v.detach().clone() for k, v in model.state_dict().items()}
    for optimizer_spec in (AdamWSpec(lr=2e-5), LionSpec(lr=2e-6)):
        model.load_state_dict(initial)
        optimizer = build_optimizer(model, optimizer_spec)
        loss, moved = one_step(model, tokens, labels, batches[0], optimizer, device, bf16)
        results.append((f"step {optimizer_spec.name}", math.isfinite(loss) and moved > 0,
                        f"bf16={bf16}: loss {loss:.4f}, largest parameter change {moved:.3g}"))  # fmt: skip
        scheduler = build_scheduler(optimizer, ScheduleSpec(name="constant", warmup_steps=1), total_steps=args.steps)
        timed = batches[1 : args.steps + 1]
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        stats = train_one_epoch(
            model, optimizer, scheduler, tokens, labels, timed, device=device,
            autocast_dtype=torch.bfloat16 if bf16 else None, grad_clip=1.0, log_every=10**9, epoch=1, first_step=1,
            on_log=lambda line: None, loader_workers=0,
        )  # fmt: skip
        seconds = time.perf_counter() - start
        results.append((f"speed {optimizer_spec.name}", math.isfinite(stats.mean_loss),
                        f"{stats.steps} steps in {seconds:.1f} s: {stats.pairs / seconds:.1f} pairs/s, mean loss {stats.mean_loss:.4f}"))  # fmt: skip
        if optimizer_spec.name == "adamw":
            per_step = syncs_per_step(model, optimizer, scheduler, tokens, labels, batches[1 : args.sync_steps + 1], device)
            # a sync every step (the attention-mask check, a .item()) shows as >= 1; the log line's few, as ~0.1
            results.append(("syncs", per_step is None or per_step < 0.5,
                            "n/a on the CPU" if per_step is None else f"{per_step:.2f} per step over {args.sync_steps} steps (one log line)"))  # fmt: skip

    counts = distinct_scores(model, tokens, args.candidates, device)
    results.append(("scores", counts["bf16 encoder + fp32 head"] >= 0.99 * counts["fp32"],
                    ", ".join(f"{k} {v}" for k, v in counts.items())))  # fmt: skip
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("\n".join(environment(torch.device("cpu"))))
        print(f"CUDA unusable: {cuda_problem(1)}")
        return 1
    device = torch.device(args.device)
    print("\n".join(environment(device)), flush=True)
    passed = True
    for key in args.models:
        start = time.perf_counter()
        try:
            results = check_model(key, args, device)
        except (RuntimeError, OSError, ValueError) as err:  # e.g. the hub cannot be reached
            results = [("load", False, str(err).splitlines()[0])]
        for check, ok, seen in results:
            print(f"{key:11} {check:12} {'ok  ' if ok else 'FAIL'} {seen}", flush=True)
            passed &= ok
        print(f"{key:11} ({time.perf_counter() - start:.0f} s)", flush=True)
    print("all checks passed" if passed else "SOME CHECKS FAILED")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
