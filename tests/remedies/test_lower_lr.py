"""lower_lr: every learning rate multiplied by a factor, on the user's optimizer, checked
against the formula, torch's own schedulers and what the recorder sees."""

from __future__ import annotations

import math

import pytest
import torch
from remedies_helpers import (
    chained_with_cosine,
    group_settings,
    make_mlp,
    recorded_rates,
    scheduled_rates,
    two_group_sgd,
)
from torch import nn

from gradwatch.remedies import REMEDIES, apply, lower_lr


def test_every_groups_rate_is_multiplied_from_the_first_step_on() -> None:
    """Two groups at different rates each run at factor x their rate at every step (float64
    check), from the step after the call; nothing else of the optimizer changes."""
    opt = two_group_sgd()
    before = group_settings(opt)
    got = scheduled_rates(opt, lower_lr(opt, factor=0.25), 12)
    assert got == [pytest.approx([0.025, 0.005], rel=1e-12)] * 12
    assert group_settings(opt) == before


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
    chained, alone = chained_with_cosine(lambda opt: lower_lr(opt, factor=0.1))
    for k in range(20):
        assert chained[k] == pytest.approx(0.1 * alone[k], rel=1e-9)
    beside_opt = torch.optim.AdamW(make_mlp().parameters(), lr=1e-3)
    lower_lr(beside_opt, factor=0.1)  # made, then never stepped: the factor stays
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(beside_opt, T_max=20)
    beside = scheduled_rates(beside_opt, cosine, 20)
    for k in range(20):
        assert beside[k][0] == pytest.approx(chained[k], rel=1e-9)


def test_the_watch_records_the_lowered_rate() -> None:
    torch.manual_seed(0)
    model = make_mlp(depth=3, act=nn.ReLU)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    scheduler = apply(model, "lower_lr", optimizer=opt)
    recorded = recorded_rates(model, opt, scheduler, 4)
    assert recorded == pytest.approx([1e-3] * 4, rel=1e-6)


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
