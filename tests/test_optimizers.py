from __future__ import annotations

import pytest
import torch
from torch import nn

from study.spec import AdamWSpec, LionSpec, ModelSpec
from trainables.models import load_cross_encoder
from trainables.optimizers import build_optimizer, optimizer_state_bytes, parameter_groups


def _tiny_bert() -> nn.Module:
    return load_cross_encoder(ModelSpec(name="m", checkpoint="standin:bert-tiny"))[1]


def _group_names(model: nn.Module, optimizer: torch.optim.Optimizer) -> list[set[str]]:
    names = {id(p): n for n, p in model.named_parameters()}
    return [{names[id(p)] for p in group["params"]} for group in optimizer.param_groups]


def test_both_optimizers_get_identical_parameter_groups():
    model = _tiny_bert()
    adamw = build_optimizer(model, AdamWSpec(lr=1e-3, weight_decay=0.01))
    lion = build_optimizer(model, LionSpec(lr=1e-4, weight_decay=0.01))
    assert _group_names(model, adamw) == _group_names(model, lion)
    decay, no_decay = _group_names(model, adamw)
    assert all(not n.endswith("bias") and "LayerNorm" not in n for n in decay)
    assert "bert.embeddings.LayerNorm.weight" in no_decay
    assert "bert.encoder.layer.0.attention.self.query.bias" in no_decay
    assert "bert.encoder.layer.0.attention.self.query.weight" in decay
    assert "classifier.weight" in decay
    assert len(decay) + len(no_decay) == len(list(model.parameters()))
    assert [g["weight_decay"] for g in adamw.param_groups] == [0.01, 0.0]
    assert [g["weight_decay"] for g in lion.param_groups] == [0.01, 0.0]


def test_norm_detection_covers_other_families():
    for checkpoint in ("standin:modernbert-tiny", "standin:roformer-tiny"):
        model = load_cross_encoder(ModelSpec(name="m", checkpoint=checkpoint))[1]
        _, no_decay = parameter_groups(model, 0.01)
        norm_params = {id(p) for m in model.modules() if isinstance(m, nn.LayerNorm) for p in m.parameters()}
        assert norm_params and norm_params <= {id(p) for p in no_decay["params"]}


def test_one_lion_step_matches_the_update_rule():
    lr, wd, beta1, beta2 = 0.1, 0.5, 0.9, 0.99
    param = nn.Parameter(torch.tensor([1.0, -2.0, 3.0, 0.5]))
    model = nn.Module()
    model.weight = param  # a weight (decayed), not a bias
    optimizer = build_optimizer(model, LionSpec(lr=lr, betas=(beta1, beta2), weight_decay=wd))
    g1 = torch.tensor([0.3, -0.2, 0.0, 1.0])
    g2 = torch.tensor([-1.0, -0.5, 2.0, -0.01])

    param.grad = g1.clone()
    optimizer.step()
    p1 = torch.tensor([1.0, -2.0, 3.0, 0.5]) * (1 - lr * wd) - lr * torch.sign((1 - beta1) * g1)
    m1 = (1 - beta2) * g1
    torch.testing.assert_close(param.detach(), p1)
    torch.testing.assert_close(optimizer.state[param]["exp_avg"], m1)

    param.grad = g2.clone()  # second step: the moment is no longer zero
    optimizer.step()
    p2 = p1 * (1 - lr * wd) - lr * torch.sign(beta1 * m1 + (1 - beta1) * g2)
    torch.testing.assert_close(param.detach(), p2)
    torch.testing.assert_close(optimizer.state[param]["exp_avg"], beta2 * m1 + (1 - beta2) * g2)


def test_lion_keeps_half_the_optimizer_state_of_adamw():
    model = _tiny_bert()
    sizes = {}
    for spec in (AdamWSpec(lr=1e-4), LionSpec(lr=1e-5)):
        optimizer = build_optimizer(model, spec)
        for p in model.parameters():
            p.grad = torch.ones_like(p)
        optimizer.step()
        sizes[spec.name] = optimizer_state_bytes(optimizer)
    n_bytes = sum(p.numel() * 4 for p in model.parameters())
    assert sizes == {"adamw": 2 * n_bytes, "lion": n_bytes}


def test_lion_on_cpu_never_asks_for_triton():
    optimizer = build_optimizer(_tiny_bert(), LionSpec(lr=1e-5))
    from lion_pytorch.lion_pytorch import update_fn

    assert optimizer.update_fn is update_fn


@pytest.mark.parametrize("checkpoint", ["standin:nope"])
def test_unknown_stand_in(checkpoint):
    with pytest.raises(ValueError, match="unknown stand-in 'standin:nope'; known: standin:bert-tiny"):
        load_cross_encoder(ModelSpec(name="m", checkpoint=checkpoint))
