from __future__ import annotations

import math

import pytest
import torch

from study.spec import ScheduleSpec
from trainables.schedules import build_scheduler, lr_multiplier


@pytest.mark.parametrize("name", ["constant", "linear", "cosine"])
def test_warmup_reaches_the_peak_on_its_last_step(name):
    assert lr_multiplier(0, name=name, warmup_steps=1000, total_steps=10_000) == pytest.approx(1 / 1000)
    assert lr_multiplier(499, name=name, warmup_steps=1000, total_steps=10_000) == pytest.approx(0.5)
    assert lr_multiplier(999, name=name, warmup_steps=1000, total_steps=10_000) == 1.0
    assert lr_multiplier(1000, name=name, warmup_steps=1000, total_steps=10_000) == 1.0


def test_end_of_training():
    kwargs = dict(warmup_steps=1000, total_steps=10_000)
    assert lr_multiplier(9_999, name="constant", **kwargs) == 1.0
    assert lr_multiplier(10_000, name="linear", **kwargs) == 0.0
    assert lr_multiplier(10_000, name="cosine", **kwargs) == pytest.approx(0.0)
    assert lr_multiplier(5_500, name="linear", **kwargs) == pytest.approx(0.5)
    assert lr_multiplier(5_500, name="cosine", **kwargs) == pytest.approx(0.5)
    assert lr_multiplier(3_250, name="cosine", **kwargs) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))


def test_scheduler_drives_the_optimizer_step_by_step():
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([param], lr=2e-5)
    scheduler = build_scheduler(optimizer, ScheduleSpec(name="cosine", warmup_steps=4), total_steps=12)
    lrs = []
    for _ in range(12):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[:4] == pytest.approx([0.5e-5, 1e-5, 1.5e-5, 2e-5])
    assert lrs[4] == pytest.approx(2e-5)
    assert lrs[-1] == pytest.approx(2e-5 * 0.5 * (1 + math.cos(math.pi * 7 / 8)))
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.0)


def test_no_warmup():
    assert lr_multiplier(0, name="linear", warmup_steps=0, total_steps=10) == 1.0
