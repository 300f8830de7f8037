"""lower_lr: every learning rate multiplied by a factor, on the user's optimizer, checked
against the formula, torch's own schedulers and what the recorder sees."""

from __future__ import annotations

import math

import pytest
import torch
from remedies_helpers import make_mlp
from torch import nn

import gradwatch as gw
from gradwatch.remedies import REMEDIES, apply, lower_lr


def _rates(opt: torch.optim.Optimizer, scheduler: object, steps: int) -> list[list[float]]:
    """Every group's rate at each of ``steps`` optimizer steps, the scheduler stepped after."""
    out = []
    for _ in range(steps):
        out.append([float(g["lr"]) for g in opt.param_groups])
        opt.step()
        scheduler.step()  # type: ignore[attr-defined]
    return out


def test_every_groups_rate_is_multiplied_from_the_first_step_on() -> None:
    """Two groups at different rates each run at factor x their rate at every step (float64
    check), from the step after the call; nothing else of the optimizer changes."""
    model = make_mlp(depth=3)
    groups = [
        {"params": list(model[0].parameters()), "lr": 0.1},
        {"params": list(model[2].parameters()), "lr": 0.02, "momentum": 0.5},
    ]
    opt = torch.optim.SGD(groups, lr=0.05, momentum=0.9)
    before = [{k: v for k, v in g.items() if k not in ("params", "lr")} for g in opt.param_groups]
    got = _rates(opt, lower_lr(opt, factor=0.25), 12)
    assert got == [pytest.approx([0.025, 0.005], rel=1e-12)] * 12
    after = [
        {k: v for k, v in g.items() if k not in ("params", "lr", "initial_lr")}
        for g in opt.param_groups
    ]
    assert after == before


def test_the_default_is_a_decade_and_the_registry_says_so() -> None:
    opt = torch.optim.AdamW(make_mlp().parameters(), lr=3e-4)
    lower_lr(opt)
    assert opt.param_groups[0]["lr"] == pytest.approx(3e-5, rel=1e-12)
    assert REMEDIES["lower_lr"].options["factor"] == 0.1
    assert REMEDIES["lower_lr"].returns == "scheduler"


def test_it_chains_with_a_decay_as_a_product() -> None:
    """ChainedScheduler([lowered, cosine]): the rate is the factor times the cosine rate
    alone; a cosine made after it keeps the factor too when only the cosine is stepped (it
    computes each rate from the current one)."""
    opt = torch.optim.AdamW(make_mlp().parameters(), lr=1e-3)
    lowered = lower_lr(opt, factor=0.1)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=20)
    chained = _rates(opt, torch.optim.lr_scheduler.ChainedScheduler([lowered, cosine]), 20)
    alone_opt = torch.optim.AdamW(make_mlp().parameters(), lr=1e-3)
    alone = _rates(alone_opt, torch.optim.lr_scheduler.CosineAnnealingLR(alone_opt, T_max=20), 20)
    for k in range(20):
        assert chained[k][0] == pytest.approx(0.1 * alone[k][0], rel=1e-9)
    beside_opt = torch.optim.AdamW(make_mlp().parameters(), lr=1e-3)
    lower_lr(beside_opt, factor=0.1)  # made, then never stepped: the factor stays
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(beside_opt, T_max=20)
    beside = _rates(beside_opt, cosine, 20)
    for k in range(20):
        assert beside[k][0] == pytest.approx(chained[k][0], rel=1e-9)


def test_the_watch_records_the_lowered_rate() -> None:
    torch.manual_seed(0)
    model = make_mlp(depth=3, act=nn.ReLU)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    scheduler = apply(model, "lower_lr", optimizer=opt)
    with gw.watch(model, opt, overhead=None) as w:
        for _ in range(4):
            loss = model(torch.randn(8, 5)).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            scheduler.step()  # type: ignore[union-attr]
            w.log(loss=loss)
    assert w.trace.scalar("optimizer_lr").tolist() == pytest.approx([1e-3] * 4, rel=1e-6)


@pytest.mark.parametrize("factor", [0, 0.0, 1, 1.0, 1.5, -0.1, math.nan, math.inf, True, "0.1"])
def test_a_factor_outside_zero_one_is_named_and_leaves_the_optimizer_alone(
    factor: object,
) -> None:
    model = make_mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match=r"`factor` to be a number in \(0, 1\) but got"):
        apply(model, "lower_lr", optimizer=opt, factor=factor)
    assert [g["lr"] for g in opt.param_groups] == [0.1]
    assert "initial_lr" not in opt.param_groups[0]


def test_an_optimizer_of_another_model_or_none_is_refused() -> None:
    model = make_mlp()
    other = torch.optim.SGD(make_mlp().parameters(), lr=0.1)
    with pytest.raises(ValueError, match="lower_lr: `optimizer` updates none of the model's"):
        apply(model, "lower_lr", optimizer=other)
    assert other.param_groups[0]["lr"] == 0.1
    with pytest.raises(ValueError, match="needs the optimizer: pass optimizer="):
        apply(model, "lower_lr", optimizer=None)
    with pytest.raises(TypeError, match="expected `optimizer` to be a torch.optim.Optimizer"):
        lower_lr("adam")  # type: ignore[arg-type]
