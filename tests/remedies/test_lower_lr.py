"""lower_lr and raise_lr: every learning rate multiplied by a factor, on the user's optimizer, checked
against the formula, torch's own schedulers and what the recorder sees."""

from __future__ import annotations

import math

import numpy as np
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

import gradwatch as gw
from gradwatch.diagnosis import Finding, RemedyHint
from gradwatch.remedies import REMEDIES, apply, lower_lr, raise_lr
from gradwatch.remedies.lower_lr import suggest_raise
from gradwatch.trace import Trace


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
    with pytest.raises(ValueError, match=r"`factor` to be a finite number in \(0, 1\) but got"):
        apply(model, "lower_lr", optimizer=opt, factor=factor)
    assert [g["lr"] for g in opt.param_groups] == [0.1]
    assert "initial_lr" not in opt.param_groups[0]


# ---------------------------------------------------------------- raise_lr
def test_raise_lr_multiplies_every_groups_rate_and_chains() -> None:
    """raise_lr is lower_lr's mirror: every group at factor x its rate from the step after
    the call (float64 check), nothing else of the optimizer changed, and chained with a
    cosine the rate is the factor times the cosine's."""
    opt = two_group_sgd()
    before = group_settings(opt)
    got = scheduled_rates(opt, raise_lr(opt, factor=100), 5)
    assert got == [pytest.approx([10.0, 2.0], rel=1e-12)] * 5
    assert group_settings(opt) == before
    chained, alone = chained_with_cosine(lambda o: raise_lr(o, factor=10))
    for k in range(20):
        assert chained[k] == pytest.approx(10 * alone[k], rel=1e-9)
    assert REMEDIES["raise_lr"].options["factor"] == 10.0
    assert REMEDIES["raise_lr"].returns == "scheduler"


@pytest.mark.parametrize("factor", [1, 1.0, 0.5, 0, -2, math.nan, math.inf, True, "10"])
def test_raise_lr_refuses_a_factor_not_above_one(factor: object) -> None:
    model = make_mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(
        ValueError, match=r"raise_lr: expected `factor` to be a finite number above 1"
    ):
        apply(model, "raise_lr", optimizer=opt, factor=factor)
    assert [g["lr"] for g in opt.param_groups] == [0.1]
    assert "initial_lr" not in opt.param_groups[0]


@pytest.mark.parametrize(
    ("ratio", "factor"),
    [(4e-6, 1e4), (6e-5, 1000.0), (2e-4, 100.0), (9e-4, 100.0), (1e-3, None), (0.0, None)],
)
def test_suggest_raise_brings_the_median_step_near_a_thousandth(
    ratio: float, factor: float | None
) -> None:
    """The power of ten (at least 10) that takes the median update ratio of the last third
    of the sampled steps to 1e-2 or above (where the real corpus's healthy runs sit); None
    where it is 1e-3 or above already, or with no step at all."""
    early = np.full((6, 3), 1e-2)  # the first two thirds are not read
    late = np.full((3, 3), ratio)
    trace = Trace.from_arrays(["a", "b", "c"], range(9), {"update_ratio": np.vstack([early, late])})
    assert suggest_raise(trace) == factor
    assert suggest_raise(Trace.from_arrays(["a"], range(3), {"grad_rms": np.ones((3, 1))})) is None


def test_prescribe_passes_the_factor_the_trace_suggests() -> None:
    trace = Trace.from_arrays(["a", "b"], range(9), {"update_ratio": np.full((9, 2), 4e-6)})
    finding = Finding(
        "loss_plateau", "warning", (), (0, 8), {}, "Loss plateau: ...",
        (RemedyHint("raise_lr", "steps too small to train"),),
    )  # fmt: skip
    (p,) = gw.prescribe([finding], trace=trace)
    assert p.remedy == "raise_lr" and p.options == {"optimizer": "<required>", "factor": 1e4}
