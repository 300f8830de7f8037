"""optimizer_lr: the learning rate each recorded step used, read from the optimizer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import gradwatch as gw
from gradwatch.recording.optimizers import learning_rate


def _model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))


def test_each_step_records_the_largest_rate_its_step_used() -> None:
    """Two groups at 0.1 and 0.3, halved every 3 steps: each row holds the larger rate as
    the optimizer held it when it stepped (seen by a step pre-hook of the test's own), on
    every step under fixed spacing."""
    model = _model()
    opt = torch.optim.SGD(
        [{"params": model[0].parameters()}, {"params": model[2].parameters(), "lr": 0.3}], lr=0.1
    )
    sched = torch.optim.lr_scheduler.StepLR(opt, 3, 0.5)
    used: list[float] = []
    opt.register_step_pre_hook(lambda o, a, k: used.append(max(g["lr"] for g in o.param_groups)))
    with gw.watch(model, opt, overhead=None, on_finding=lambda f: None) as w:
        for _ in range(8):
            opt.zero_grad()
            model(torch.randn(3, 4)).sum().backward()
            opt.step()
            sched.step()
    np.testing.assert_array_equal(w.trace.scalar("optimizer_lr"), used)
    assert used[::3] == [0.3, 0.15, 0.075]


def test_thinned_recording_keeps_the_rate_on_the_steps_it_records() -> None:
    """With plain statistics every 2nd step the rate is in those rows, missing in the rest."""
    model = _model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (s + 1))
    with gw.watch(
        model, opt, every=2, dense_steps=0, overhead=None, on_finding=lambda f: None
    ) as w:
        for _ in range(6):
            opt.zero_grad()
            model(torch.randn(3, 4)).sum().backward()
            opt.step()
            sched.step()
    lr = w.trace.scalar("optimizer_lr")
    np.testing.assert_allclose(lr[::2], 1e-3 / np.array([1, 3, 5]))
    assert np.isnan(lr[1::2]).all()


def test_no_rate_without_an_optimizer_or_a_number() -> None:
    """A watch stepped by hand has no optimizer to read; a group whose lr is None (HF's
    Adafactor with relative_step) gives no column either."""
    model = _model()
    with gw.watch(model, overhead=None, on_finding=lambda f: None) as w:
        model(torch.randn(3, 4)).sum().backward()
        w.step()
    assert not w.trace.has_scalar("optimizer_lr")
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    opt.param_groups[0]["lr"] = None
    assert learning_rate(opt) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [(torch.tensor(0.02), 0.02), (3, 3.0), (float("nan"), None), (True, None), (None, None)],
)
def test_learning_rate_reads_numbers_and_cpu_tensors(value: object, expected: float | None) -> None:
    """A CPU tensor is read (no sync); ints count; NaN, booleans and None do not."""
    opt = torch.optim.SGD(_model().parameters(), lr=0.1)
    opt.param_groups[0]["lr"] = value
    got = learning_rate(opt)
    assert got == (pytest.approx(expected) if expected is not None else None)
