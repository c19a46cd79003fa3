"""Turn a named grid (or a YAML file) plus command-line choices into a validated StudySpec."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

from search_spaces import thesis
from search_spaces.optimizers import REGISTRY, THESIS_OPTIMIZERS, Entry
from study.names import check_name
from study.scales import DEV_TABLE_METRICS, DL_TABLE_METRICS, SCALES, ScaleProfile
from study.spec import OPTIMIZERS, StudySpec

GRIDS: tuple[str, ...] = tuple(thesis.GRID_SCHEDULES)  # thesis, thesis-literal
MODELS: tuple[str, ...] = tuple(thesis.MODELS)


def thesis_trials(
    scale: ScaleProfile, grid: str = "thesis", optimizers: Sequence[str] = THESIS_OPTIMIZERS
) -> list[dict]:
    """The thesis trials, resolved for one scale, as plain dicts (validated by StudySpec): its six
    by default. `grid` picks the reading of the thesis's schedules (search_spaces/thesis.py); any
    other registered optimizer joins with its own defaults (search_spaces/optimizers.py) under
    AdamW's schedule for the model where it allows it (schedule-free: constant)."""
    schedules = thesis.GRID_SCHEDULES[grid]
    trials = []
    for key, model in thesis.MODELS.items():
        source = scale.models.get(key)
        for optimizer in optimizers:
            entry = REGISTRY[optimizer]
            trials.append(
                {
                    "scale": scale.name,
                    "model": {
                        "name": key,
                        "checkpoint": source.checkpoint if source else model.hf_id,
                        "max_length": (source.max_length if source else None) or model.max_length,
                        "trust_remote_code": model.trust_remote_code and source is None,
                        "stand_in_for": model.hf_id if source else None,
                    },
                    "optimizer": entry.defaults(key),
                    "schedule": {
                        "name": _schedule(schedules, key, entry),
                        "warmup_steps": scale.warmup_steps if scale.warmup_steps is not None else thesis.WARMUP_STEPS,
                    },
                    "training": {
                        **thesis.TRAINING,
                        "log_every": scale.log_every,
                        "heldout_pairs": scale.heldout_pairs,
                        "heldout_every": scale.heldout_every,
                        "data": scale.train_data,
                        "checkpoint_every_minutes": scale.checkpoint_every_minutes,
                    },
                    "evaluation": [
                        _eval_set(scale.test_set, DL_TABLE_METRICS, scale.eval_batch_size, scale.test_depth),
                        _eval_set(scale.dev_set, DEV_TABLE_METRICS, scale.eval_batch_size, scale.dev_depth),
                    ],
                    "resources": {**scale.resources, **scale.model_resources.get(key, {})},
                }
            )
    return trials


def _schedule(schedules: dict[tuple[str, str], str], model: str, entry: Entry) -> str:
    """The thesis's schedule for the pair; a new optimizer takes AdamW's, or its own first if it can't."""
    wanted = schedules.get((model, entry.name), schedules[(model, "adamw")])
    return wanted if wanted in entry.schedules else entry.schedules[0]


def _eval_set(name: str, table_metrics: tuple[str, ...], batch_size: int, depth: int | None) -> dict:
    return {"name": name, "table_metrics": table_metrics, "batch_size": batch_size, "depth": depth}


def build_study(
    grid: str,
    *,
    scale: str = "full",
    name: str | None = None,
    storage: str = "studies",
    max_concurrent: int | None = None,
    optimizers: Sequence[str] | None = None,
) -> StudySpec:
    """A built-in grid; `optimizers` builds those registered optimizers' trials (default: the thesis's two)."""
    check_name(grid, GRIDS, what="grid")
    check_name(scale, SCALES, what="scale")
    for optimizer in optimizers or ():
        check_name(optimizer, OPTIMIZERS, what="optimizer")
    return StudySpec(
        name=name or default_study_name(grid, scale),
        grid=grid,
        scale=scale,
        trials=thesis_trials(SCALES[scale], grid, tuple(dict.fromkeys(optimizers or THESIS_OPTIMIZERS))),
        storage=storage,
        max_concurrent=max_concurrent,
    )


def load_study_file(path: str | Path) -> StudySpec:
    """A StudySpec from YAML (the format `--print-spec` prints), validated like the built-in grids."""
    import yaml

    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"config file {path} does not exist") from None
    except UnicodeDecodeError as err:
        raise ValueError(f"config file {path} is not valid UTF-8 (byte {err.start}); save it as UTF-8") from None
    except yaml.YAMLError as err:
        raise ValueError(f"config file {path} is not valid YAML: {' '.join(str(err).split())}") from None
    if not isinstance(raw, dict):
        raise TypeError(f"config file {path} must hold a mapping (a study), but holds {type(raw).__name__}")
    # Top-level `x-...` keys only hold YAML anchors for reuse (as in docker-compose files).
    return StudySpec.model_validate({k: v for k, v in raw.items() if not str(k).startswith("x-")})


def restrict(
    spec: StudySpec,
    *,
    models: Sequence[str] | None = None,
    optimizers: Sequence[str] | None = None,
    epochs: int | None = None,
    name: str | None = None,
    storage: str | None = None,
    max_concurrent: int | None = None,
) -> StudySpec:
    """The study with only the chosen models and optimizers, and the command line's overrides."""
    known_models = sorted({t.model.name for t in spec.trials})
    for model in models or ():
        check_name(model, known_models, what="model")
    for optimizer in optimizers or ():
        check_name(optimizer, OPTIMIZERS, what="optimizer")
    trials = [
        t.model_dump()
        for t in spec.trials
        if (not models or t.model.name in models) and (not optimizers or t.optimizer.name in optimizers)
    ]
    if not trials:
        raise ValueError(f"no trial matches models={list(models or [])} and optimizers={list(optimizers or [])}")
    if epochs is not None:
        for trial in trials:
            trial["training"]["epochs"] = epochs
    updates = {"trials": trials, "name": name, "storage": storage, "max_concurrent": max_concurrent}
    data = spec.model_dump() | {k: v for k, v in updates.items() if v is not None}
    return StudySpec.model_validate(data)  # re-validated: overrides obey the same rules


def default_study_name(grid: str, scale: str) -> str:
    return f"{grid}-{scale}-{dt.datetime.now():%Y%m%d-%H%M%S}"


def with_seeds(spec: StudySpec, seeds: Sequence[int]) -> StudySpec:
    """Every trial once per seed. With several seeds each name ends in `-s<seed>` (minilm-adamw-s13);
    with one, names stay as they are and only the seed changes."""
    seeds = list(seeds)
    if not seeds:
        raise ValueError("--seeds expects at least one seed, but got none")
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise ValueError(f"--seeds expects distinct seeds, but {repeated} repeat")
    tagged = len(seeds) > 1
    trials = []
    for trial in spec.trials:
        for seed in seeds:
            data = trial.model_dump()
            data["training"]["seed"] = seed
            if tagged:
                data["tag"] = "_".join(filter(None, (trial.tag, f"s{seed}")))
            trials.append(data)
    return StudySpec.model_validate(spec.model_dump() | {"trials": trials})
