"""The search specification: what `--search optuna` explores, validated before Ray starts.

A search runs one Optuna study per model x optimizer. Each starts from that pair's thesis trial
(study/grids.py) with its evaluation replaced by the validation set, so configurations are
selected on validation queries; the best one is then reported on the thesis's test sets.
The spec is saved in the study directory, so `--resume` continues exactly the same search.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from search_spaces import optuna_spaces as spaces
from study.names import check_path_name
from study.results import TrialResult
from study.spec import SEED_MAX, EvalSetSpec, Scale, TrialSpec

SPEC_FILE = "search_spec.json"
OPTUNA_DB = "optuna.db"
SCHEDULERS: tuple[str, ...] = ("asha", "fifo")
RUNGS: tuple[str, ...] = ("epochs", "steps")
# Step rungs: the validation set is evaluated about this many times an epoch (full scale: every
# 12.5k of 125k steps), so ASHA can stop a weak configuration within the first epoch.
VALIDATIONS_PER_EPOCH = 10
# At full scale: TREC DL 2020 (nDCG and the other graded metrics), or a fixed slice of v1.1 QnA
# train queries for RR@k, the thesis's dev-protocol metric (study/data/msmarco.py says why).
FULL_VALIDATION_SET = "trec-dl-2020"
FULL_RR_VALIDATION_SET = "msmarco-v1.1-qna-train-slice"


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class SearchPair(_Spec):
    """One model x optimizer: its thesis trial (evaluated on the validation set) and its space."""

    trial: TrialSpec
    ranges: dict[str, dict[str, Any]] = Field(description="hyperparameter -> range (search_spaces.optuna_spaces)")
    thesis_point: dict[str, Any] = Field(description="the thesis's values of the searched hyperparameters")

    @property
    def name(self) -> str:
        return self.trial.name

    def space_ranges(self) -> dict[str, spaces.Range]:
        return {name: spaces.range_from_json(value) for name, value in self.ranges.items()}

    @model_validator(mode="after")
    def _consistent(self) -> SearchPair:
        ranges = self.space_ranges()
        spaces.check_ranges(ranges, where=self.name, optimizer=self.trial.optimizer.name)
        spaces.check_contains(ranges, self.thesis_point, where=self.name)
        return self


class SearchSpec(_Spec):
    name: str
    kind: Literal["optuna"] = "optuna"
    scale: Scale = "full"
    storage: str = Field("studies", description="directory holding the study directory")
    pairs: tuple[SearchPair, ...] = Field(min_length=1)
    validation_set: str = Field(description="the set configurations are selected on")
    test_sets: tuple[EvalSetSpec, ...] = Field(min_length=1, description="the sets the selected ones are reported on")
    metric: str = "nDCG@10"
    num_samples: int = Field(ge=1, description="trials per model x optimizer, the thesis point included")
    max_concurrent: int | None = Field(None, ge=1)
    scheduler: Literal["asha", "fifo"] = "asha"
    rungs: Literal["epochs", "steps"] = Field(
        "epochs",
        description="ASHA's time unit: epochs (validate at epoch ends) or steps (validate every "
        "`validate_every_steps` inside epochs as well; the full scale's default)",
    )
    validate_every_steps: int | None = Field(None, ge=1, description="step rungs: steps between validations")
    seed: int = Field(12, ge=0, le=SEED_MAX)
    optuna_storage: str = Field(description="Optuna storage URL (sqlite:///... or postgresql://...)")
    # Tune keeps the best `checkpoints_to_keep` by the ranking metric and always the latest: 1 = the best and the last.
    checkpoints_to_keep: int = Field(1, ge=1, description="checkpoints kept per trial besides the latest (best first)")

    @field_validator("name")
    @classmethod
    def _path_name(cls, name: str) -> str:
        return check_path_name(name, what="search name")

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, metric: str) -> str:
        from eval.measures import check_metric_names

        check_metric_names([metric])
        return metric

    @model_validator(mode="after")
    def _selection_is_not_reporting(self) -> SearchSpec:
        for pair in self.pairs:
            sets = [e.name for e in pair.trial.evaluation]
            if sets != [self.validation_set]:
                raise ValueError(f"{pair.name} must be evaluated on the validation set only, but uses {sets}")
        if self.validation_set in [e.name for e in self.test_sets]:
            raise ValueError(f"the validation set {self.validation_set} cannot also be a test set")
        if self.rungs == "steps":
            if self.validate_every_steps is None:
                raise ValueError("step rungs need validate_every_steps (steps between validations)")
            for pair in self.pairs:
                if pair.trial.training.validate_every_steps != self.validate_every_steps:
                    raise ValueError(f"{pair.name} must validate every {self.validate_every_steps} steps (step rungs)")
        return self

    @property
    def metric_key(self) -> str:
        """The key ASHA and Optuna both read from each epoch's report."""
        return f"{self.validation_set}/{self.metric}"

    def optuna_study_name(self, pair: SearchPair) -> str:
        return f"{self.name}.{pair.name}"


def study_dir(spec: SearchSpec) -> Path:
    return study_dir_of(spec.storage, spec.name)


def study_dir_of(storage: str, name: str) -> Path:
    return Path(storage).expanduser().resolve() / name


def build_search(
    *,
    scale: str = "full",
    models: Sequence[str] | None = None,
    optimizers: Sequence[str] | None = None,
    epochs: int | None = None,
    num_samples: int = 20,
    max_concurrent: int | None = None,
    scheduler: str = "asha",
    rungs: str | None = None,
    validate_every: int | None = None,
    metric: str = "nDCG@10",
    seed: int = 12,
    ranges: Sequence[str] = (),
    optuna_storage: str | None = None,
    name: str | None = None,
    storage: str = "studies",
    max_pairs: int | None = None,
) -> SearchSpec:
    """A validated search around the thesis grid; raises ValueError on bad input (nothing is run)."""
    from study import grids
    from study.names import check_name

    from eval.measures import check_metric_names

    if num_samples < 1:
        raise ValueError(f"--num-samples must be at least 1, but got {num_samples}")
    check_name(scheduler, SCHEDULERS, what="scheduler")
    rungs = rungs or ("steps" if scale == "full" and scheduler == "asha" else "epochs")
    check_name(rungs, RUNGS, what="rungs")
    if rungs == "steps" and scheduler != "asha":
        raise ValueError("--rungs steps are ASHA's; with --scheduler fifo every trial runs to the end")
    if validate_every is not None and validate_every < 1:
        raise ValueError(f"--validate-every-steps must be at least 1, but got {validate_every}")
    if validate_every is not None and rungs != "steps":
        raise ValueError("--validate-every-steps sets the step rungs' interval; pass --rungs steps with it")
    check_metric_names([metric])
    grid = grids.build_study("thesis", scale=scale, optimizers=optimizers)
    thesis = grids.restrict(grid, models=models, optimizers=optimizers, epochs=epochs)
    overrides = [spaces.parse_range_override(text, spaces.OPTIMIZERS) for text in ranges]
    validation = validation_set_for(thesis.trials[0], metric)
    name = name or grids.default_study_name("search", scale)
    pairs = [_pair(trial, validation, metric, overrides, max_pairs) for trial in thesis.trials]
    if rungs == "steps":
        validate_every = validate_every or default_validate_every(pairs[0].trial)
        pairs = [with_validation_every(pair, validate_every) for pair in pairs]
    return SearchSpec(
        name=name,
        scale=scale,
        storage=storage,
        pairs=pairs,
        validation_set=validation,
        test_sets=thesis.trials[0].evaluation,
        metric=metric,
        num_samples=num_samples,
        max_concurrent=max_concurrent,
        scheduler=scheduler,
        rungs=rungs,
        validate_every_steps=validate_every,
        seed=seed,
        optuna_storage=optuna_storage or default_optuna_storage(storage, name),
    )


def default_validate_every(trial: TrialSpec) -> int:
    """Steps between validations for step rungs: about VALIDATIONS_PER_EPOCH a (first) epoch."""
    steps_per_epoch = max(1, total_training_steps(trial) // trial.training.epochs)
    return max(1, math.ceil(steps_per_epoch / VALIDATIONS_PER_EPOCH))


def with_validation_every(pair: SearchPair, steps: int) -> SearchPair:
    trial = pair.trial.model_dump(mode="json")
    trial["training"]["validate_every_steps"] = steps
    return SearchPair.model_validate(pair.model_dump(mode="json") | {"trial": trial})


def validation_set_for(trial: TrialSpec, metric: str = "nDCG@10") -> str:
    """Built-in data: its validation queries; MS MARCO: TREC DL 2020, or the v1.1 train slice for RR@k."""
    data = trial.training.data
    if data.source == "builtin":
        return f"builtin-{data.size}-validation"
    return FULL_RR_VALIDATION_SET if metric.startswith("RR") else FULL_VALIDATION_SET


def default_optuna_storage(storage: str, name: str) -> str:
    return f"sqlite:///{study_dir_of(storage, name) / OPTUNA_DB}"


def display_url(url: str) -> str:
    """A storage URL safe to print: the password hidden."""
    import sqlalchemy

    try:
        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 -- not a URL sqlalchemy can parse: hide any user-info password by hand
        return re.sub(r"(://[^/@:]*:)[^@/]*@", r"\1***@", url)


def total_training_steps(trial: TrialSpec) -> int:
    """Optimizer steps the trial takes (sets the warmup range); built-in data is counted exactly."""
    data = trial.training.data
    if data.source == "builtin":
        from study.data import registry

        pairs = len(registry.load_training_pairs(data, seed=trial.training.seed))
    else:
        pairs = data.max_pairs or 0
    return math.ceil(pairs / trial.training.batch_size) * trial.training.epochs


def _pair(trial: TrialSpec, validation: str, metric: str, overrides: list, max_pairs: int | None) -> SearchPair:
    base = trial.model_dump(mode="json")
    dev = base["evaluation"][-1]  # the dev role is like the validation set: binary judgments, its depth
    table_metrics = list(dict.fromkeys((metric, "RR@10")))
    base["evaluation"] = [{**dev, "name": validation, "table_metrics": table_metrics}]
    if max_pairs is not None:
        base["training"]["data"]["max_pairs"] = max_pairs
    base_spec = TrialSpec.model_validate(base)
    ranges = spaces.default_ranges(
        trial.optimizer.name,
        thesis_warmup_steps=trial.schedule.warmup_steps,
        total_steps=total_training_steps(base_spec),
    )
    for targets, hyperparameter, bounds in overrides:
        if trial.optimizer.name in targets and (hyperparameter in ranges or targets == [trial.optimizer.name]):
            ranges[hyperparameter] = bounds  # a name the optimizer does not search is an error only if aimed at it
    point = spaces.params_of(base)
    where = f"--range for {base_spec.name}"
    spaces.check_ranges(ranges, where=where, optimizer=trial.optimizer.name)  # plain errors before pydantic's
    spaces.check_contains(ranges, point, where=where)
    return SearchPair(
        trial=base_spec,
        ranges={k: spaces.range_to_json(v) for k, v in ranges.items()},
        thesis_point=point,
    )


def save(spec: SearchSpec, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / SPEC_FILE
    path.write_text(spec.model_dump_json(indent=2))
    return path


def load(directory: Path) -> SearchSpec:
    path = Path(directory) / SPEC_FILE
    if not path.exists():
        raise ValueError(
            f"--resume expects a search study directory holding {SPEC_FILE}, but {directory} has none; "
            "pass the --name (and --storage) of the search to continue"
        )
    return SearchSpec.model_validate(json.loads(path.read_text()))


def check_resume_options(saved: SearchSpec, given: Mapping[str, Any]) -> None:
    """ValueError when --resume is asked to change the search it continues."""
    for option, value in given.items():
        field = option.removeprefix("--").replace("-", "_")
        if value is not None and getattr(saved, field) != value:
            was, got = getattr(saved, field), value
            if field == "optuna_storage":  # never print a password
                was, got = display_url(was), display_url(got)
            raise ValueError(
                f"--resume continues search {saved.name} as it was started ({option} {was}), "
                f"but got {option} {got}; drop {option} or start a new search with another --name"
            )


@dataclass(frozen=True)
class SearchTrial:
    """One Tune trial of a search, read back from its directory."""

    pair: str
    optuna_trial: int
    params: dict[str, Any]
    result: TrialResult
    is_thesis: bool

    def best_epoch(self, metric_key: str) -> tuple[float, int] | None:
        scored = [(row[metric_key], row["epoch"]) for row in self.result.rows if row.get(metric_key) is not None]
        # highest value; on a tie the earlier epoch
        return max(scored, key=lambda item: (item[0], -item[1])) if scored else None
