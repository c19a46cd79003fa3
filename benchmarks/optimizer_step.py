"""The optimizer step alone, per implementation: AdamW (fused, foreach, for-loop) and Lion (Triton,
foreach, plain), on the parameters of each thesis model, plus a training step for scale.

    python -m benchmarks.optimizer_step            # thesis-sized models built from configs (a GPU; a few minutes)
    python -m benchmarks.optimizer_step --quick    # tiny stand-ins, few steps: checks itself on a CPU

An efficiency table that puts AdamW's fused kernel against lion-pytorch's Triton kernel (one launch
per tensor) compares implementations, not optimizers. So, per optimizer and model, this script

1. checks that every implementation gives the same update as the reference one (the for-loop AdamW,
   lion-pytorch's plain Lion): the same start, the same random gradients for a few steps, and the
   parameters compared (Lion's sign can flip on a rounding difference where the momentum is ~0, so
   a tiny fraction of elements may differ by 2 x lr; more than 1e-4 of them is a wrong update);
2. times the step alone (gradients fixed, `--warmup` untimed steps, then `--steps` timed ones, one
   device sync at the end), and one full training step (forward, backward, clipping, step) on a
   synthetic batch of `--batch-size` pairs of `--seq-len` tokens, so the step's share is visible;
   the implementations take turns, `--rounds` times, and each keeps its median;
3. picks the fastest correct implementation per optimizer, and says which one the trials use
   here (trainables/optimizers.py: step_implementation) and when the measurement disagrees.
   The fair comparison is Lion's fastest correct step against AdamW's, both printed as a ratio.

Triton is only tried where it imports and a GPU is present (lion-pytorch calls exit() when asked
for Triton without it). On a CPU the timings mean little; `--quick` is the self-check a test runs.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from benchmarks.gpu_mfu import load, model_spec
from search_spaces import thesis
from trainables.models import attention_preference
from trainables.optimizers import parameter_groups, step_implementation

IMPLEMENTATIONS: dict[str, tuple[str, ...]] = {
    "adamw": ("fused", "foreach", "forloop"),
    "lion": ("triton", "foreach", "plain"),
}
REFERENCE = {"adamw": "forloop", "lion": "plain"}
CHECK_LR = 1e-3  # large enough that an update differs from rounding noise in fp32
CHECK_STEPS = 3
MAX_DIFFERING = 1e-4  # fraction of elements allowed to differ (Lion's sign flips at ~0 momentum)
SEED = 12


@dataclass
class Row:
    model: str
    optimizer: str
    implementation: str
    correct: bool | None  # None: not available here
    differing_fraction: float | None
    max_abs_diff: float | None
    step_ms: float | None
    train_step_ms: float | None
    note: str = ""

    @property
    def share(self) -> float | None:
        return self.step_ms / self.train_step_ms if self.step_ms and self.train_step_ms else None


def unavailable_reason(optimizer: str, implementation: str, device: torch.device) -> str | None:
    if implementation == "triton" and not (device.type == "cuda" and importlib.util.find_spec("triton")):
        return "needs a CUDA GPU and Triton"
    if implementation == "fused" and device.type not in ("cuda", "cpu"):
        return f"no fused AdamW on {device.type}"
    return None


def make_optimizer(optimizer: str, implementation: str, groups: list[dict], *, lr: float) -> torch.optim.Optimizer:
    """The optimizer with the thesis's betas (and AdamW's eps) in the given implementation."""
    if optimizer == "adamw":
        settings = thesis.optimizer_settings("minilm", "adamw")
        kinds = {"fused": {"fused": True}, "foreach": {"foreach": True}, "forloop": {"foreach": False}}
        return torch.optim.AdamW(groups, lr=lr, betas=settings["betas"], eps=settings["eps"], **kinds[implementation])
    betas = thesis.optimizer_settings("minilm", "lion")["betas"]
    if implementation == "foreach":
        from lion_pytorch.foreach import Lion as ForeachLion

        return ForeachLion(groups, lr=lr, betas=betas)
    from lion_pytorch import Lion

    return Lion(groups, lr=lr, betas=betas, use_triton=implementation == "triton")


def _random_grads(params: list[torch.Tensor], seed: int = SEED) -> list[torch.Tensor]:
    """The same gradients for every implementation given the seed: drawn on the parameters' device
    (a GTE-sized model's 305M numbers take seconds on one CPU thread)."""
    generator = torch.Generator(device=params[0].device).manual_seed(seed)
    return [torch.randn(p.shape, generator=generator, device=p.device, dtype=p.dtype) * 1e-2 for p in params]


def compare_updates(
    model: torch.nn.Module, build: Callable[[list[dict]], torch.optim.Optimizer], reference: Callable[[list[dict]], torch.optim.Optimizer]
) -> tuple[float, float]:
    """(fraction of elements that differ by more than 1e-3 x lr, max absolute difference) after
    CHECK_STEPS steps of both optimizers from the same parameters on the same gradients."""
    results = []
    for factory in (build, reference):
        copy = {name: p.detach().clone().requires_grad_(p.requires_grad) for name, p in model.named_parameters()}
        groups = _groups_over(model, copy)
        opt = factory(groups)
        params = [p for g in groups for p in g["params"]]
        for step in range(CHECK_STEPS):
            for p, g in zip(params, _random_grads(params, seed=SEED + step)):
                p.grad = g
            opt.step()
        results.append(torch.cat([p.detach().flatten().float().cpu() for p in params]))
    diff = (results[0] - results[1]).abs()
    return float((diff > 1e-3 * CHECK_LR).float().mean()), float(diff.max())


def _groups_over(model: torch.nn.Module, copies: dict[str, torch.Tensor]) -> list[dict]:
    """The model's optimizer groups (decay / no decay), over copies of its parameters."""
    by_id = {id(p): copies[name] for name, p in model.named_parameters()}
    return [{**g, "params": [by_id[id(p)] for p in g["params"]]} for g in parameter_groups(model, 0.01)]


def time_step(opt: torch.optim.Optimizer, params: list[torch.Tensor], *, steps: int, warmup: int, device: torch.device) -> float:
    """Milliseconds per optimizer step, gradients fixed."""
    for p, g in zip(params, _random_grads(params)):
        p.grad = g
    for _ in range(warmup):
        opt.step()
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        opt.step()
    _sync(device)
    return (time.perf_counter() - start) / steps * 1e3


def time_train_step(
    model: torch.nn.Module, opt: torch.optim.Optimizer, *, batch_size: int, seq_len: int, steps: int, warmup: int, device: torch.device
) -> float:
    """Milliseconds per training step (bf16 autocast on CUDA) on a synthetic batch."""
    generator = torch.Generator().manual_seed(SEED)
    vocab = model.config.vocab_size
    ids = torch.randint(1, vocab, (batch_size, seq_len), generator=generator).to(device)
    labels = (torch.rand(batch_size, generator=generator) > 0.5).float().to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    model.train()

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits.squeeze(-1)
        torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), labels).backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(warmup):
        step()
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return (time.perf_counter() - start) / steps * 1e3


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_model(key: str, args: argparse.Namespace, device: torch.device) -> tuple[list[Row], dict[str, str]]:
    """The rows of one model, and the implementation the trials use per optimizer on its parameters.

    The implementations are timed in turn, `--rounds` times, and each row keeps its median, so a
    machine whose load changes during the run slows every implementation alike."""
    spec, _ = model_spec(key, args.source)
    _, model = load(spec, attention_preference(device.type, half_precision=device.type == "cuda"))
    model.to(device)
    used = {optimizer: step_implementation(model, optimizer) for optimizer in IMPLEMENTATIONS}
    rows: list[Row] = []
    timed: list[tuple[Row, torch.optim.Optimizer, list[float], list[float]]] = []
    for optimizer, implementations in IMPLEMENTATIONS.items():
        lr = thesis.optimizer_settings(key, optimizer)["lr"]

        def reference(groups: list[dict], optimizer=optimizer) -> torch.optim.Optimizer:
            return make_optimizer(optimizer, REFERENCE[optimizer], groups, lr=CHECK_LR)

        for implementation in implementations:
            reason = unavailable_reason(optimizer, implementation, device)
            if reason:
                rows.append(Row(key, optimizer, implementation, None, None, None, None, None, reason))
                continue

            def build(groups: list[dict], optimizer=optimizer, implementation=implementation) -> torch.optim.Optimizer:
                return make_optimizer(optimizer, implementation, groups, lr=CHECK_LR)

            differing, max_diff = compare_updates(model, build, reference)
            row = Row(key, optimizer, implementation, differing <= MAX_DIFFERING, differing, max_diff, None, None)
            opt = make_optimizer(optimizer, implementation, parameter_groups(model, 0.01), lr=lr)
            rows.append(row)
            timed.append((row, opt, [], []))
    params = [p for p in model.parameters() if p.requires_grad]
    for round_ in range(args.rounds):
        warmup = args.warmup if round_ == 0 else 0
        for _, opt, steps, train_steps in timed:
            steps.append(time_step(opt, params, steps=args.steps, warmup=warmup, device=device))
            train_steps.append(time_train_step(
                model, opt, batch_size=args.batch_size, seq_len=args.seq_len, steps=args.train_steps,
                warmup=1 if round_ == 0 else 0, device=device,
            ))  # fmt: skip
    for row, _, steps, train_steps in timed:
        row.step_ms, row.train_step_ms = statistics.median(steps), statistics.median(train_steps)
    return rows, used


def choose(rows: list[Row]) -> dict[str, str | None]:
    """Per optimizer: the implementation with the least total step time over the models, among
    those correct on every model (None when none is)."""
    choice: dict[str, str | None] = {}
    for optimizer, implementations in IMPLEMENTATIONS.items():
        mine = [r for r in rows if r.optimizer == optimizer]
        totals: dict[str, float] = {}
        for implementation in implementations:
            ran = [r for r in mine if r.implementation == implementation]
            if ran and all(r.correct for r in ran):
                totals[implementation] = sum(r.step_ms for r in ran)
        choice[optimizer] = min(totals, key=totals.get) if totals else None
    return choice


def fair_ratios(rows: list[Row], choice: dict[str, str | None]) -> dict[str, float]:
    """Per model: Lion's step time over AdamW's, each with the implementation `choice` picked."""
    steps = {(r.model, r.optimizer): r.step_ms for r in rows if choice.get(r.optimizer) == r.implementation}
    models = dict.fromkeys(r.model for r in rows)
    return {m: steps[(m, "lion")] / steps[(m, "adamw")] for m in models if steps.get((m, "lion")) and steps.get((m, "adamw"))}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.optimizer_step", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny stand-ins and few steps: the CPU self-check")
    parser.add_argument("--source", choices=("hub", "config", "smoke"), default=None, help="default: config (quick: smoke)")
    parser.add_argument("--models", nargs="+", choices=list(thesis.MODELS), default=list(thesis.MODELS))
    parser.add_argument("--steps", type=int, default=None, help="timed optimizer steps (default 50; quick: 3)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 10; quick: 1)")
    parser.add_argument("--train-steps", type=int, default=None, help="timed training steps (default 20; quick: 2)")
    parser.add_argument("--batch-size", type=int, default=thesis.TRAINING["batch_size"])
    parser.add_argument("--seq-len", type=int, default=None, help="tokens per pair (default 128; quick: 32)")
    parser.add_argument("--rounds", type=int, default=None, help="timings per implementation, in turn; the median (default 3; quick: 1)")
    parser.add_argument("--json", type=Path, help="also write the rows and the choice here")
    args = parser.parse_args(argv)
    quick = args.quick
    args.source = args.source or ("smoke" if quick else "config")
    args.steps = args.steps or (3 if quick else 50)
    args.warmup = args.warmup if args.warmup is not None else (1 if quick else 10)
    args.train_steps = args.train_steps or (2 if quick else 20)
    args.seq_len = args.seq_len or (32 if quick else 128)
    args.rounds = args.rounds or (1 if quick else 3)
    if min(args.steps, args.train_steps, args.batch_size, args.seq_len, args.rounds) < 1 or args.warmup < 0:
        parser.error("expects --steps, --train-steps, --batch-size, --seq-len, --rounds >= 1 and --warmup >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (timings are not GPU numbers)"
    print(f"Optimizer step per implementation on {where}; torch {torch.__version__}", flush=True)
    rows: list[Row] = []
    used: dict[str, str] = {}
    for key in args.models:
        model_rows, used = measure_model(key, args, device)
        rows += model_rows
    choice = choose(rows)
    print_table(rows)
    for optimizer, picked in choice.items():
        agrees = "the trials use it here" if picked == used[optimizer] else f"the trials use {used[optimizer]} here"
        print(f"{optimizer}: fastest correct implementation = {picked} ({agrees})")
    fair = fair_ratios(rows, choice)
    for key, ratio in fair.items():
        print(f"{key}: Lion step / AdamW step, each at its fastest correct implementation = {ratio:.2f}")
    if args.json:
        payload = {
            "device": where, "rows": [asdict(r) | {"share": r.share} for r in rows], "choice": choice,
            "trials_use": used, "lion_over_adamw": fair,
        }  # fmt: skip
        args.json.write_text(json.dumps(payload, indent=1))
    wrong = [r for r in rows if r.correct is False]
    for row in wrong:
        print(f"WRONG UPDATE: {row.model} {row.optimizer} {row.implementation}: {row.differing_fraction:.2e} of elements differ")
    return 1 if wrong else 0


def print_table(rows: list[Row]) -> None:
    def fmt(value: float | None, spec: str) -> str:
        width = int(spec.split(".")[0])
        return "-".rjust(width) if value is None or math.isnan(value) else format(value, spec)

    header = f"{'model':<11} {'optimizer':<9} {'impl':<8} {'same update':<12} {'step ms':>9} {'train step ms':>14} {'share':>6}  note"
    print(header)
    print("-" * len(header))
    for r in rows:
        same = "-" if r.correct is None else ("yes" if r.correct else "NO")
        print(
            f"{r.model:<11} {r.optimizer:<9} {r.implementation:<8} {same:<12} {fmt(r.step_ms, '9.3f')} "
            f"{fmt(r.train_step_ms, '14.2f')} {fmt(r.share, '6.1%')}  {r.note}"
        )


if __name__ == "__main__":
    sys.exit(main())
