"""The optimizer registry's new entries: one update step each against its reference rule, the
schedule-free train/eval switching inside a trial, and the registry's rules for specs and grids."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

from search_spaces.optimizers import OPTIMIZERS, REGISTRY
from study.grids import build_study, restrict
from study.spec import TrialSpec
from trainables.optimizers import (
    build_optimizer,
    eval_mode,
    optimizer_state_bytes,
    train_mode,
)


def _one_weight(values: list) -> tuple[nn.Module, nn.Parameter]:
    model = nn.Module()
    model.weight = nn.Parameter(torch.tensor(values))  # a weight: decayed, not a bias
    return model, model.weight


def _spec(name: str, **settings):
    return REGISTRY[name].spec.model_validate({**REGISTRY[name].defaults("minilm"), **settings})


def test_adafactor_steps_follow_shazeer_and_stern_factored_rule():
    lr, wd, decay = 0.9, 0.1, -0.8  # lr above 1/sqrt(2): step 2's relative step is capped by 1/sqrt(t)
    start = [[1.0, -2.0, 0.5], [0.3, 0.7, -1.5]]
    model, param = _one_weight(start)
    optimizer = build_optimizer(model, _spec("adafactor", lr=lr, weight_decay=wd, beta2_decay=decay))
    theta = torch.tensor(start)
    rows, cols = torch.zeros(2, 1), torch.zeros(1, 3)
    for t, grad in enumerate((torch.tensor([[0.3, -0.2, 0.1], [1.0, 0.4, -0.6]]), torch.tensor([[-1.0, 0.5, 2.0], [0.2, -0.1, 0.3]])), 1):
        param.grad = grad.clone()
        optimizer.step()
        # Algorithm 4 (factored second moment) and 5 (relative step), with torch's lr as the cap on rho.
        beta_weight = t**decay  # 1 - beta2_t
        rows = (1 - beta_weight) * rows + beta_weight * (grad**2).mean(dim=1, keepdim=True)
        cols = (1 - beta_weight) * cols + beta_weight * (grad**2).mean(dim=0, keepdim=True)
        v = rows @ cols / rows.mean()
        u = grad / v.sqrt()
        u_hat = u / max(1.0, (u.pow(2).mean().sqrt() / 1.0).item())
        alpha = max(1e-3, theta.pow(2).mean().sqrt().item()) * min(lr, 1 / math.sqrt(t))
        theta = theta * (1 - lr * wd) - alpha * u_hat
        torch.testing.assert_close(param.detach(), theta)
    # the factored state: a row and a column, not a matrix (what makes its state cost ~0 per parameter)
    assert optimizer.state[param]["row_var"].shape == (2, 1) and optimizer.state[param]["col_var"].shape == (1, 3)


def test_adan_steps_follow_the_papers_rule():
    lr, wd, eps = 0.01, 0.1, 1e-8
    b1, b2, b3 = 0.98, 0.92, 0.99  # pytorch-optimizer's convention: the weight of the old average
    model, param = _one_weight([1.0, -2.0, 3.0, 0.5])
    optimizer = build_optimizer(model, _spec("adan", lr=lr, weight_decay=wd, betas=(b1, b2, b3), eps=eps))
    theta = torch.tensor([1.0, -2.0, 3.0, 0.5])
    m = v = n = torch.zeros(4)
    previous = None
    for k, grad in enumerate((torch.tensor([0.3, -0.2, 0.01, 1.0]), torch.tensor([-1.0, -0.5, 2.0, -0.01])), 1):
        param.grad = grad.clone()
        optimizer.step()
        # Xie et al. 2022, Algorithm 1 with bias correction and decoupled weight decay; the first
        # gradient difference is 0 (the official code's pre_grad = grad at step 1).
        diff = torch.zeros(4) if previous is None else grad - previous
        m = b1 * m + (1 - b1) * grad
        v = b2 * v + (1 - b2) * diff
        n = b3 * n + (1 - b3) * (grad + b2 * diff) ** 2
        denom = (n / (1 - b3**k)).sqrt() + eps
        theta = theta * (1 - lr * wd) - lr * (m / (1 - b1**k) + b2 * v / (1 - b2**k)) / denom
        previous = grad
        torch.testing.assert_close(param.detach(), theta)


def test_schedulefree_adamw_matches_the_packages_reference_in_both_modes():
    from schedulefree import AdamWScheduleFreeReference

    settings = {"lr": 0.05, "betas": (0.9, 0.99), "eps": 1e-8, "weight_decay": 0.1}
    model, param = _one_weight([1.0, -2.0, 3.0, 0.5])
    optimizer = build_optimizer(model, _spec("schedulefree_adamw", **settings))
    reference_param = nn.Parameter(torch.tensor([1.0, -2.0, 3.0, 0.5]))
    reference = AdamWScheduleFreeReference([reference_param], **settings)
    reference.train()
    grads = (torch.tensor([0.3, -0.2, 0.01, 1.0]), torch.tensor([-1.0, -0.5, 2.0, -0.01]), torch.tensor([0.5, 0.5, -0.5, 0.1]))
    for grad in grads:
        param.grad, reference_param.grad = grad.clone(), grad.clone()
        optimizer.step()
        reference.step()
        torch.testing.assert_close(param.detach(), reference_param.detach())  # y: where gradients are taken
    y = param.detach().clone()
    eval_mode(optimizer, "schedulefree_adamw")
    reference.eval()
    torch.testing.assert_close(param.detach(), reference_param.detach())  # x: the average that is evaluated
    assert not torch.allclose(param.detach(), y)  # the switch really moved the weights
    train_mode(optimizer, "schedulefree_adamw")
    reference.train()
    torch.testing.assert_close(param.detach(), reference_param.detach())


def test_state_costs_are_what_the_registry_says():
    model = nn.Sequential(nn.Linear(16, 32), nn.Linear(32, 4))
    n_params = sum(p.numel() for p in model.parameters())
    for name in OPTIMIZERS:
        optimizer = build_optimizer(model, _spec(name, lr=1e-4))
        for p in model.parameters():
            p.grad = torch.ones_like(p)
        optimizer.step()
        per_param = optimizer_state_bytes(optimizer) / n_params
        expected = REGISTRY[name].state_bytes_per_param
        assert (per_param == pytest.approx(expected)) if expected else per_param < 4, (name, per_param)


def test_schedules_an_optimizer_cannot_run_are_refused(smoke_all):
    data = restrict(smoke_all, models=["minilm"], optimizers=["schedulefree_adamw"]).trials[0].model_dump()
    assert data["schedule"]["name"] == "constant"  # the grid gives it the schedule it runs under
    data["schedule"]["name"] = "cosine"
    with pytest.raises(ValueError, match="schedulefree_adamw runs only with schedule constant"):
        TrialSpec.model_validate(data)


def test_grid_builds_every_registered_optimizer_from_its_defaults(smoke_all):
    names = [t.name for t in smoke_all.trials]
    assert names == [f"{m}-{o}" for m in ("minilm", "gte", "modernbert") for o in OPTIMIZERS]
    adafactor = restrict(smoke_all, models=["modernbert"], optimizers=["adafactor"]).trials[0]
    assert (adafactor.optimizer.lr, adafactor.schedule.name) == (1e-3, "linear")  # AdamW's thesis schedule
    with pytest.raises(ValueError, match="Did you mean 'adafactor'"):
        build_study("thesis", scale="smoke", optimizers=["adafactr"])


@pytest.fixture
def smoke_all():
    return build_study("thesis", scale="smoke", name="smoke-all", optimizers=OPTIMIZERS)


def test_schedulefree_trial_evaluates_the_average_and_resumes_mid_epoch_exactly(smoke_all, tmp_path, monkeypatch):
    """Schedule-free weights are switched to their average for every evaluation (and the checkpoint
    after it) and back for training; a trial killed mid-epoch resumes bit-identically either way."""
    import trainables.trial as trial_module

    data = restrict(smoke_all, models=["minilm"], optimizers=["schedulefree_adamw"]).trials[0].model_dump()
    data["training"] |= {"epochs": 1, "log_every": 3, "checkpoint_every_steps": 2, "validate_every_steps": 3, "heldout_pairs": 0}
    data["training"]["data"]["max_pairs"] = 96  # 6 steps: checkpoints at 2 and 4, validations at 3
    spec = TrialSpec.model_validate(data)

    seen: list[tuple[str, bool]] = []
    built: list[torch.optim.Optimizer] = []
    real_build, real_evaluate = trial_module.build_optimizer, trial_module.evaluate_reranker

    def build(model, optimizer_spec):
        optimizer = real_build(model, optimizer_spec)
        optimizer.register_step_pre_hook(lambda opt, args, kwargs: seen.append(("step", opt.param_groups[0]["train_mode"])))
        built.append(optimizer)
        return optimizer

    def evaluate(*args, **kwargs):
        seen.append(("eval", built[-1].param_groups[0]["train_mode"]))
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(trial_module, "build_optimizer", build)
    monkeypatch.setattr(trial_module, "evaluate_reranker", evaluate)

    reports: list[tuple[dict, Path | None]] = []

    def keep(root: Path):
        def report(metrics: dict, checkpoint_dir: Path | None) -> None:
            kept = None
            if checkpoint_dir is not None:
                kept = root / f"step{metrics['global_step']}"
                shutil.copytree(checkpoint_dir, kept)
            reports.append((dict(metrics), kept))

        return report

    trial_module.run_trial(spec, trial_dir=tmp_path / "full", report=keep(tmp_path / "full-ckpt"))
    full = list(reports)
    assert {mode for what, mode in seen if what == "step"} == {True}  # every step in train mode
    assert {mode for what, mode in seen if what == "eval"} == {False}  # every evaluation on the average
    assert [m["global_step"] for m, _ in full] == [0, 2, 3, 4, 6]

    step2 = next(c for m, c in full if m["global_step"] == 2)
    reports.clear()
    trial_module.run_trial(spec, trial_dir=tmp_path / "resumed", report=keep(tmp_path / "resumed-ckpt"), restore_from=step2)
    from trainables.trial import is_measurement

    def comparable(rows):
        return [{k: v for k, v in m.items() if not is_measurement(k)} for m, _ in rows]

    assert comparable(reports) == comparable([r for r in full if r[0]["global_step"] > 2])
