"""Every step is sampled for the first ``dense_steps`` steps, then every ``sample_every``.

These are the fixed spacing's exact steps (``overhead=None``); under the overhead budget the
dense start is the same and the later spacing is tested in test_schedule.py.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import gradwatch as gw


def _run(steps: int, **kwargs: int) -> gw.Trace:
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with gw.watch(model, opt, overhead=None, **kwargs) as w:
        for _ in range(steps):
            opt.zero_grad()
            model(torch.randn(8, 4)).pow(2).mean().backward()
            opt.step()
    return w.trace


def test_default_samples_the_first_twenty_steps_then_every_sample_every() -> None:
    """With the defaults, activations and update ratios exist at steps 0-19, then 20, 30."""
    t = _run(35)
    for metric in ("act_mean", "update_ratio", "grad_max"):
        steps, _ = t.measured(metric)
        assert steps.tolist() == [*range(20), 20, 30], metric
    assert t.config["dense_steps"] == 20 and t.config["sample_every"] == 10


def test_dense_steps_zero_keeps_the_plain_spacing() -> None:
    """dense_steps=0 samples only multiples of sample_every."""
    steps, _ = _run(12, sample_every=4, dense_steps=0).measured("act_mean")
    assert steps.tolist() == [0, 4, 8]


def test_dense_start_then_spacing_counts_from_step_zero() -> None:
    """dense_steps=3, sample_every=5: steps 0, 1, 2, then 5 and 10."""
    steps, _ = _run(12, sample_every=5, dense_steps=3).measured("update_ratio")
    assert steps.tolist() == [0, 1, 2, 5, 10]


@pytest.mark.parametrize("bad", [-1, 1.5, True, "20"])
def test_bad_dense_steps_is_refused_with_the_argument_named(bad: object) -> None:
    """A negative, fractional, boolean or string dense_steps is a ValueError naming it."""
    with pytest.raises(ValueError, match="dense_steps"):
        gw.watch(nn.Linear(2, 2), dense_steps=bad)  # type: ignore[arg-type]
