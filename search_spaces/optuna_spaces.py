"""Optuna search spaces around the thesis settings: one define-by-run function per optimizer.

A space is a side-effect-free function `space(trial, ranges) -> params`: it only asks the Optuna
trial for values inside `ranges` (plain data, below) and returns them. Building the trial spec
from those values happens elsewhere (study/search/run.py), so the spaces stay pure and cheap.

The searched hyperparameters and where each default range comes from:

- lr (log scale). AdamW: 5e-6 to 1e-4, around the thesis's 2e-5 and covering the BERT fine-tuning
  grid {2e-5 ... 5e-5} (Devlin et al. 2019, appendix A.3) with margin on both sides. Lion: the
  AdamW range divided by 10 (low end) and by 3 (high end), because "a suitable learning rate for
  Lion is typically 3-10x smaller than that for AdamW" (Chen et al. 2023, "Symbolic Discovery of
  Optimization Algorithms", §5). Both thesis Lion rates (2e-5 and ModernBERT's 2e-6) are inside.
- weight_decay (log scale). AdamW: 1e-3 to 1e-1 around the thesis's 0.01 (Loshchilov & Hutter
  2019 tune it on a log grid). Lion: the AdamW range times 3 (low end) and 10 (high end), since
  "the value of λ used for Lion is 3-10x larger than that for AdamW" (Chen et al. 2023, §5).
- beta1: 0.8 to 0.95 for both, around the default 0.9 that AdamW and Lion share (Kingma & Ba 2015;
  Chen et al. 2023 use 0.9, and 0.95 in some runs).
- beta2. AdamW: 0.98 (RoBERTa, Liu et al. 2019) to 0.9999, around the default 0.999. Lion: 0.95
  to 0.999 around its default 0.99 (Chen et al. 2023, who lower it to 0.98 for stability).
- schedule: constant, linear or cosine decay after warmup; the thesis grid uses linear decay, and
  cosine for ModernBERT + Lion (search_spaces/thesis.py gives the reading of §3.2.3 and Table 4.1).
- warmup_steps (integer): 0 to the larger of the thesis's warmup and 10% of the trial's training
  steps (§3.2.3 says "linear warmup for 10% of training steps"; Table 4.1 gives 1000 steps).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from search_spaces import optimizers as optimizer_registry
from search_spaces.ranges import Choice, FloatRange, IntRange, Range, Ranges
from study.names import check_name

if TYPE_CHECKING:
    import optuna



# Every name a registered optimizer may search; each optimizer searches its own subset
# (search_spaces/optimizers.py: `Entry.hyperparameters`).
HYPERPARAMETERS: tuple[str, ...] = ("lr", "beta1", "beta2", "beta2_decay", "weight_decay", "schedule", "warmup_steps")
SCHEDULES: tuple[str, ...] = optimizer_registry.SCHEDULES
OPTIMIZERS: tuple[str, ...] = optimizer_registry.OPTIMIZERS
BASE_RANGES: dict[str, dict[str, Range]] = {name: dict(e.ranges) for name, e in optimizer_registry.REGISTRY.items()}
LION_LR_DIVISORS = optimizer_registry.LION_LR_DIVISORS
LION_WEIGHT_DECAY_FACTORS = optimizer_registry.LION_WEIGHT_DECAY_FACTORS

WARMUP_FRACTION = 0.1  # §3.2.3: "linear warmup for 10% of training steps"


def default_ranges(optimizer: str, *, thesis_warmup_steps: int, total_steps: int) -> dict[str, Range]:
    """The documented ranges for one optimizer; warmup is bounded by this trial's length."""
    check_name(optimizer, OPTIMIZERS, what="optimizer")
    warmup_high = max(thesis_warmup_steps, math.ceil(WARMUP_FRACTION * total_steps), 1)
    return {**BASE_RANGES[optimizer], "warmup_steps": IntRange(0, warmup_high)}


# ---- the spaces ---------------------------------------------------------------------------------


def _suggest(trial: optuna.Trial, ranges: Ranges) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for name in (n for n in HYPERPARAMETERS if n in ranges):
        bounds = ranges[name]
        if isinstance(bounds, Choice):
            params[name] = trial.suggest_categorical(name, list(bounds.values))
        elif isinstance(bounds, IntRange):
            params[name] = trial.suggest_int(name, bounds.low, bounds.high)
        else:
            params[name] = trial.suggest_float(name, bounds.low, bounds.high, log=bounds.log)
    return params


def space(trial: optuna.Trial, ranges: Ranges) -> dict[str, Any]:
    """Any registered optimizer: its hyperparameters (the names in `ranges`) within `ranges`."""
    return _suggest(trial, ranges)


# One define-by-run space serves every optimizer: what differs is the ranges (names and bounds).
SPACES: dict[str, Callable[[optuna.Trial, Ranges], dict[str, Any]]] = dict.fromkeys(OPTIMIZERS, space)


# ---- between hyperparameters and trial specs ----------------------------------------------------


def apply_params(trial: dict, params: Mapping[str, Any]) -> dict:
    """A copy of a trial spec (as a dict) with the sampled hyperparameters substituted:
    betaN -> optimizer.betas[N-1], schedule and warmup_steps -> the schedule, the rest -> the optimizer."""
    optimizer = dict(trial["optimizer"])
    schedule = dict(trial["schedule"])
    betas = list(optimizer.get("betas", ()))
    for name, value in params.items():
        if name == "schedule":
            schedule["name"] = value
        elif name == "warmup_steps":
            schedule["warmup_steps"] = int(value)
        elif _beta_index(name) is not None:
            betas[_beta_index(name)] = float(value)
        else:
            optimizer[name] = float(value)
    if betas:
        optimizer["betas"] = tuple(betas)
    return {**trial, "optimizer": optimizer, "schedule": schedule}


def params_of(trial: dict) -> dict[str, Any]:
    """The searched hyperparameters of a trial spec (as a dict): the thesis point of its space."""
    optimizer, schedule = trial["optimizer"], trial["schedule"]
    params: dict[str, Any] = {}
    for name in optimizer_registry.REGISTRY[optimizer["name"]].hyperparameters:
        if name == "schedule":
            params[name] = schedule["name"]
        elif name == "warmup_steps":
            params[name] = int(schedule["warmup_steps"])
        elif _beta_index(name) is not None:
            params[name] = float(optimizer["betas"][_beta_index(name)])
        else:
            params[name] = float(optimizer[name])
    return params


def _beta_index(name: str) -> int | None:
    return int(name[4:]) - 1 if name.startswith("beta") and name[4:].isdigit() else None


# ---- user overrides and validation --------------------------------------------------------------

# name -> (smallest allowed value, whether it is allowed, largest allowed value, whether allowed)
_LIMITS: dict[str, tuple[float, bool, float, bool]] = {
    "lr": (0.0, False, math.inf, False),
    "beta1": (0.0, True, 1.0, False),
    "beta2": (0.0, True, 1.0, False),
    "beta2_decay": (-math.inf, False, 0.0, True),
    "weight_decay": (0.0, True, math.inf, False),
    "warmup_steps": (0, True, math.inf, False),
}


def parse_range_override(text: str, optimizers: tuple[str, ...]) -> tuple[list[str], str, Range]:
    """`[OPTIMIZER.]NAME=LOW:HIGH` (or `schedule=a,b`) -> (optimizers it applies to, name, range)."""
    name, sep, value = text.partition("=")
    if not sep or not value:
        raise ValueError(f"--range expects [OPTIMIZER.]NAME=LOW:HIGH (or schedule=a,b), but got {text!r}")
    targets = list(optimizers)
    if "." in name:
        optimizer, name = name.split(".", 1)
        check_name(optimizer, OPTIMIZERS, what="optimizer in --range")
        targets = [optimizer]
    check_name(name, HYPERPARAMETERS, what="hyperparameter")
    if name == "schedule":
        values = tuple(v for v in value.split(",") if v)
        for schedule in values:
            check_name(schedule, SCHEDULES, what="schedule")
        return targets, name, Choice(values)
    low_text, sep, high_text = value.partition(":")
    if not sep:
        raise ValueError(f"--range {name} expects LOW:HIGH, but got {value!r}")
    try:
        if name == "warmup_steps":
            return targets, name, IntRange(int(low_text), int(high_text))
        log = name in ("lr", "weight_decay")
        return targets, name, FloatRange(float(low_text), float(high_text), log=log)
    except ValueError:
        kind = "integers" if name == "warmup_steps" else "numbers"
        raise ValueError(f"--range {name} expects LOW:HIGH as {kind}, but got {value!r}") from None


def check_ranges(ranges: Mapping[str, Range], *, where: str, optimizer: str) -> None:
    """ValueError for a missing or unknown name, an inverted or empty range, or values out of bounds."""
    entry = optimizer_registry.entry(optimizer)
    for name in ranges:
        check_name(name, entry.hyperparameters, what=f"hyperparameter of {optimizer}")
    missing = [n for n in entry.hyperparameters if n not in ranges]
    if missing:
        raise ValueError(f"{where}: the search space needs a range for {', '.join(missing)}")
    for name, bounds in ranges.items():
        if isinstance(bounds, Choice):
            if not bounds.values:
                raise ValueError(f"{where}: {name} expects at least one choice, but got none")
            for value in bounds.values:
                check_name(value, entry.schedules, what=f"schedule for {optimizer}")
            continue
        if not bounds.low < bounds.high:
            raise ValueError(
                f"{where}: {name} expects LOW < HIGH, but got {bounds.low:g}:{bounds.high:g} "
                f"({'an empty' if bounds.low == bounds.high else 'an inverted'} range)"
            )
        smallest, smallest_ok, largest, largest_ok = _LIMITS[name]
        too_low = bounds.low < smallest or (bounds.low == smallest and not smallest_ok)
        too_high = bounds.high > largest or (bounds.high == largest and not largest_ok)
        if too_low or too_high:
            interval = f"{'[' if smallest_ok else '('}{smallest:g}, {largest:g}{']' if largest_ok else ')'}"
            raise ValueError(f"{where}: {name} must lie in {interval}, but got {bounds.low:g}:{bounds.high:g}")


def check_contains(ranges: Mapping[str, Range], point: Mapping[str, Any], *, where: str) -> None:
    """ValueError when the thesis point lies outside the ranges: the search must start from it."""
    for name, value in point.items():
        bounds = ranges[name]
        inside = value in bounds.values if isinstance(bounds, Choice) else bounds.low <= value <= bounds.high
        if not inside:
            shown = ",".join(bounds.values) if isinstance(bounds, Choice) else f"{bounds.low:g}:{bounds.high:g}"
            raise ValueError(
                f"{where}: the range {name}={shown} excludes the thesis setting {name}={value}; the search "
                "starts from the thesis settings, so widen the range to include it"
            )


def range_to_json(bounds: Range) -> dict:
    if isinstance(bounds, Choice):
        return {"choices": list(bounds.values)}
    if isinstance(bounds, IntRange):
        return {"low": bounds.low, "high": bounds.high, "int": True}
    return {"low": bounds.low, "high": bounds.high, "log": bounds.log}


def range_from_json(data: Mapping[str, Any]) -> Range:
    if "choices" in data:
        return Choice(tuple(data["choices"]))
    if data.get("int"):
        return IntRange(int(data["low"]), int(data["high"]))
    return FloatRange(float(data["low"]), float(data["high"]), log=bool(data.get("log", False)))
