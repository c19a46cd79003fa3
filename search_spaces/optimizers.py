"""The optimizer registry: adding an optimizer to the study is one `Entry` in `REGISTRY`.

An entry says everything the study needs to know about one optimizer:

- `spec`: its settings as a validated, frozen pydantic model (a trial spec's `optimizer` part);
- `build`: how to make it from the shared parameter groups (trainables/optimizers.py builds the two
  groups, decayed weights and not-decayed biases/norms, the same for every optimizer);
- `defaults`: its untuned setting for a model (the thesis's for AdamW and Lion);
- `ranges` and `sources`: its search space around the defaults, and where each range comes from;
- `schedules`: the learning-rate schedules it may run under;
- `state_bytes_per_param`: what its state costs per fp32 parameter;
- `modes`: True when it keeps separate train and evaluation weights (schedule-free), so the trial
  calls `optimizer.eval()` before every evaluation and checkpoint and `optimizer.train()` before training.

Only this module's data is read at start-up; building imports torch and the optimizer's library lazily.
Sources of the new entries' settings:

- adafactor (torch.optim.Adafactor; Shazeer & Stern 2018, "Adafactor: Adaptive Learning Rates with
  Sublinear Memory Cost"). torch's `lr` caps the relative step size and scales it by each weight's RMS.
  Default 1e-3: the constant rate T5 was fine-tuned with (Raffel et al. 2020, §3.1.2); range 1e-4 to
  1e-2 (torch's default at the top). beta2_decay: -0.8 (the paper's decay exponent), range -1.0 to -0.5
  (the paper's §7 compares -0.5 and -0.8; -1.0 would average all past squares equally).
- schedulefree_adamw (the `schedulefree` package; Defazio et al. 2024, "The Road Less Scheduled").
  It replaces the schedule by iterate averaging, so it runs with a constant rate after warmup only.
  "Learning rates ... typically 1x-10x larger than for schedule-based" (the package's README): default
  the thesis's AdamW rate 2e-5 (1x), range AdamW's low end to 10x AdamW's high end. Betas as AdamW's.
- adan (pytorch-optimizer's Adan; Xie et al. 2022, "Adan: Adaptive Nesterov Momentum Algorithm").
  Its update is normalised by a second moment like Adam's, so it starts from the thesis's AdamW rate
  and AdamW's ranges; betas (0.98, 0.92, 0.99) as the paper's official code; decoupled weight decay.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from search_spaces import thesis
from search_spaces.ranges import Choice, FloatRange, Range

if TYPE_CHECKING:
    import torch

SCHEDULES: tuple[str, ...] = ("constant", "linear", "cosine")


class _OptimizerSpec(BaseModel):
    # as study/spec.py's _Spec: unknown keys, inf and nan are errors
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


def _check_betas(betas: tuple[float, ...]) -> tuple[float, ...]:
    for beta in betas:
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"each beta must be in [0, 1), but got {betas}")
    return betas


class AdamWSpec(_OptimizerSpec):
    name: Literal["adamw"] = "adamw"
    lr: float = Field(gt=0)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = Field(1e-8, gt=0)
    weight_decay: float = Field(0.01, ge=0)

    _betas = field_validator("betas")(_check_betas)


class LionSpec(_OptimizerSpec):
    name: Literal["lion"] = "lion"
    lr: float = Field(gt=0)
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = Field(0.01, ge=0)

    _betas = field_validator("betas")(_check_betas)


class AdafactorSpec(_OptimizerSpec):
    name: Literal["adafactor"] = "adafactor"
    lr: float = Field(gt=0, description="cap on the relative step size (torch.optim.Adafactor)")
    beta2_decay: float = Field(-0.8, le=0, description="second-moment decay exponent (Shazeer & Stern: -0.8)")
    weight_decay: float = Field(0.01, ge=0)


class ScheduleFreeAdamWSpec(AdamWSpec):
    """AdamW's settings; the schedule-free method replaces the schedule (constant after warmup)."""

    name: Literal["schedulefree_adamw"] = "schedulefree_adamw"


class AdanSpec(_OptimizerSpec):
    name: Literal["adan"] = "adan"
    lr: float = Field(gt=0)
    betas: tuple[float, float, float] = (0.98, 0.92, 0.99)
    eps: float = Field(1e-8, gt=0)
    weight_decay: float = Field(0.01, ge=0)

    _betas = field_validator("betas")(_check_betas)


Build = Callable[[list[dict], Any, "torch.nn.Module"], "torch.optim.Optimizer"]


@dataclass(frozen=True)
class Entry:
    name: str
    spec: type[_OptimizerSpec]
    build: Build
    defaults: Callable[[str], dict]  # model name -> the optimizer part of a trial spec (untuned)
    ranges: Mapping[str, Range]  # searched hyperparameters except warmup_steps (bounded per trial)
    state_bytes_per_param: float  # fp32 parameters; Adafactor's factored state is O(rows + columns)
    schedules: tuple[str, ...] = SCHEDULES
    modes: bool = False  # separate train/eval weights: switch around evaluation and checkpoints
    library: str = "torch"
    notes: str = field(default="", compare=False)

    @property
    def hyperparameters(self) -> tuple[str, ...]:
        return (*self.ranges, "warmup_steps")


# ---- how each one is built (lazy imports: the CLI never loads torch) ----------------------------


def _build_adamw(groups: list[dict], spec: AdamWSpec, model) -> torch.optim.Optimizer:
    import torch

    # fused: one kernel pass over all tensors; on a CPU the per-tensor loop is ~3x slower, a
    # large share of a small model's step. Same update rule (and what HF's Trainer defaults to).
    return torch.optim.AdamW(groups, lr=spec.lr, betas=spec.betas, eps=spec.eps, fused=fusable(model))


def _build_lion(groups: list[dict], spec: LionSpec, model) -> torch.optim.Optimizer:
    from lion_pytorch import Lion

    # lion-pytorch calls exit() when use_triton=True and Triton is missing: ask only when it imports.
    return Lion(groups, lr=spec.lr, betas=spec.betas, use_triton=triton_usable(model))


def _build_adafactor(groups: list[dict], spec: AdafactorSpec, model) -> torch.optim.Optimizer:
    import torch

    return torch.optim.Adafactor(groups, lr=spec.lr, beta2_decay=spec.beta2_decay)


def _build_schedulefree_adamw(groups: list[dict], spec: ScheduleFreeAdamWSpec, model) -> torch.optim.Optimizer:
    from schedulefree import AdamWScheduleFree

    # warmup_steps=0: warmup comes from the trial's schedule (a constant rate after linear warmup),
    # which scales group["lr"] exactly as the optimizer's own warmup would.
    return AdamWScheduleFree(groups, lr=spec.lr, betas=spec.betas, eps=spec.eps, warmup_steps=0)


def _build_adan(groups: list[dict], spec: AdanSpec, model) -> torch.optim.Optimizer:
    from pytorch_optimizer import Adan

    return Adan(groups, lr=spec.lr, betas=spec.betas, eps=spec.eps, weight_decouple=True)


def fusable(model) -> bool:
    return all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in model.parameters())


def triton_usable(model) -> bool:
    if not any(p.is_cuda for p in model.parameters()):
        return False
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


# ---- the ranges (sources: search_spaces/optuna_spaces.py for AdamW and Lion, above for the rest) ----

# Lion's ranges relative to AdamW's (Chen et al. 2023, §5): lr 3-10x smaller, weight decay 3-10x larger.
LION_LR_DIVISORS = (10.0, 3.0)  # (low end, high end)
LION_WEIGHT_DECAY_FACTORS = (3.0, 10.0)
ADAMW_LR = FloatRange(5e-6, 1e-4, log=True)
ADAMW_WEIGHT_DECAY = FloatRange(1e-3, 1e-1, log=True)
ADAMW_RATE = 2e-5  # the thesis's AdamW rate (Table 4.1), the default of the Adam-like entries
ALL_SCHEDULES = Choice(SCHEDULES)

_ADAMW_RANGES: dict[str, Range] = {
    "lr": ADAMW_LR,
    "beta1": FloatRange(0.8, 0.95),
    "beta2": FloatRange(0.98, 0.9999),
    "weight_decay": ADAMW_WEIGHT_DECAY,
    "schedule": ALL_SCHEDULES,
}


def _thesis_defaults(optimizer: str) -> Callable[[str], dict]:
    return lambda model: thesis.optimizer_settings(model, optimizer)


def _fixed_defaults(settings: dict) -> Callable[[str], dict]:
    return lambda model: dict(settings)


REGISTRY: dict[str, Entry] = {
    e.name: e
    for e in (
        Entry("adamw", AdamWSpec, _build_adamw, _thesis_defaults("adamw"), _ADAMW_RANGES, 8.0),
        Entry(
            "lion",
            LionSpec,
            _build_lion,
            _thesis_defaults("lion"),
            {
                "lr": FloatRange(ADAMW_LR.low / LION_LR_DIVISORS[0], ADAMW_LR.high / LION_LR_DIVISORS[1], log=True),
                "beta1": FloatRange(0.8, 0.95),
                "beta2": FloatRange(0.95, 0.999),
                "weight_decay": FloatRange(
                    ADAMW_WEIGHT_DECAY.low * LION_WEIGHT_DECAY_FACTORS[0],
                    ADAMW_WEIGHT_DECAY.high * LION_WEIGHT_DECAY_FACTORS[1],
                    log=True,
                ),
                "schedule": ALL_SCHEDULES,
            },
            4.0,
            library="lion-pytorch",
        ),
        Entry(
            "adafactor",
            AdafactorSpec,
            _build_adafactor,
            _fixed_defaults({"name": "adafactor", "lr": 1e-3, "beta2_decay": -0.8, "weight_decay": 0.01}),
            {
                "lr": FloatRange(1e-4, 1e-2, log=True),
                "beta2_decay": FloatRange(-1.0, -0.5),
                "weight_decay": ADAMW_WEIGHT_DECAY,
                "schedule": ALL_SCHEDULES,
            },
            0.0,
        ),
        Entry(
            "schedulefree_adamw",
            ScheduleFreeAdamWSpec,
            _build_schedulefree_adamw,
            _fixed_defaults(
                {"name": "schedulefree_adamw", "lr": ADAMW_RATE, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.01}
            ),
            {
                "lr": FloatRange(ADAMW_LR.low, ADAMW_LR.high * 10, log=True),
                "beta1": FloatRange(0.8, 0.95),
                "beta2": FloatRange(0.98, 0.9999),
                "weight_decay": ADAMW_WEIGHT_DECAY,
                "schedule": Choice(("constant",)),
            },
            8.0,
            schedules=("constant",),
            modes=True,
            library="schedulefree",
        ),
        Entry(
            "adan",
            AdanSpec,
            _build_adan,
            _fixed_defaults(
                {"name": "adan", "lr": ADAMW_RATE, "betas": (0.98, 0.92, 0.99), "eps": 1e-8, "weight_decay": 0.01}
            ),
            {"lr": ADAMW_LR, "weight_decay": ADAMW_WEIGHT_DECAY, "schedule": ALL_SCHEDULES},
            16.0,
            library="pytorch-optimizer",
        ),
    )
}
OPTIMIZERS: tuple[str, ...] = tuple(REGISTRY)
THESIS_OPTIMIZERS: tuple[str, ...] = ("adamw", "lion")  # the thesis grid's two, the default selection


def default_label(optimizer: str) -> str:
    """What reports call an optimizer's untuned setting: "thesis" where the thesis set it (AdamW,
    Lion), else "default" (the entry's own, from the sources above)."""
    return "thesis" if optimizer in THESIS_OPTIMIZERS else "default"


def entry(name: str) -> Entry:
    """The registered optimizer called `name`; ValueError with the closest name otherwise."""
    from study.names import check_name

    check_name(name, OPTIMIZERS, what="optimizer")
    return REGISTRY[name]


def spec_types() -> tuple[type[_OptimizerSpec], ...]:
    return tuple(e.spec for e in REGISTRY.values())
