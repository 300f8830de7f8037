"""lr_warmup: a linear learning-rate warm-up on the user's optimizer, checked against the
formula, torch's own schedulers and what the recorder sees."""

from __future__ import annotations

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

from gradwatch.remedies import apply, lr_warmup, untuned_warmup_steps


def test_the_rate_rises_linearly_to_each_groups_own_rate() -> None:
    """Step k runs at (k + 1) / steps of each group's rate, then at the rate (float64 check),
    for two groups with different rates; nothing else of the optimizer changes."""
    opt = two_group_sgd()
    before = group_settings(opt)
    scheduler = lr_warmup(opt, steps=10)
    got = scheduled_rates(opt, scheduler, 15)
    for k, row in enumerate(got):
        want = [base * min(1.0, (k + 1) / 10) for base in (0.1, 0.02)]
        assert row == pytest.approx(want, rel=1e-12)
    assert group_settings(opt) == before


def test_one_step_is_no_warm_up() -> None:
    opt = torch.optim.SGD(make_mlp().parameters(), lr=0.3)
    assert scheduled_rates(opt, lr_warmup(opt, steps=1), 3) == [[0.3]] * 3


@pytest.mark.parametrize(("beta2", "steps"), [(0.999, 2000), (0.98, 100), (0.95, 40), (0.0, 2)])
def test_the_untuned_length_is_two_over_one_minus_beta2(beta2: float, steps: int) -> None:
    """Ma & Yarats (2021): 2 / (1 - beta2) steps; AdamW's default 0.999 gives 2000."""
    opt = torch.optim.AdamW(make_mlp().parameters(), betas=(0.9, beta2))
    assert untuned_warmup_steps(opt) == steps
    scheduler = lr_warmup(opt)
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-3 / steps)
    assert isinstance(scheduler, torch.optim.lr_scheduler.LinearLR)


def test_it_chains_with_a_decay_as_a_product() -> None:
    """ChainedScheduler([warm-up, cosine]): the rate is the warm-up factor times the cosine
    rate alone (both are multiplicative, chainable schedules)."""
    chained, alone = chained_with_cosine(lambda opt: lr_warmup(opt, steps=5))
    for k in range(20):
        assert chained[k] == pytest.approx(alone[k] * min(1.0, (k + 1) / 5), rel=1e-9)


def test_the_watch_records_the_rate_each_step_used() -> None:
    """The recorder's optimizer_lr is the warmed-up rate of each step (the scheduler steps
    after optimizer.step(), as torch documents)."""
    torch.manual_seed(0)
    model = make_mlp(depth=3, act=nn.ReLU)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    scheduler = apply(model, "lr_warmup", optimizer=opt, steps=4)
    recorded = recorded_rates(model, opt, scheduler, 6)
    assert recorded == pytest.approx([2.5e-3, 5e-3, 7.5e-3, 1e-2, 1e-2, 1e-2], rel=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"steps": 0}, ValueError, r"`steps` to be an int >= 1 but got 0"),
        ({"steps": 2.5}, ValueError, r"`steps` to be an int >= 1 but got 2\.5"),
        ({"steps": True}, ValueError, r"`steps` to be an int >= 1 but got True"),
        ({}, ValueError, r"SGD has no betas; pass steps=<warm-up length>"),
    ],
)
def test_bad_input_is_named_and_leaves_the_optimizer_alone(
    kwargs: dict[str, object], error: type[Exception], match: str
) -> None:
    model = make_mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(error, match=match):
        apply(model, "lr_warmup", optimizer=opt, **kwargs)
    assert [g["lr"] for g in opt.param_groups] == [0.1]
    assert "initial_lr" not in opt.param_groups[0]
