"""GradScaler-skipped steps recorded by gw.watch are reported as calibration, or as a failure."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import gradwatch as gw


def _train_with_scaler(loss_factor: float, steps: int = 60) -> gw.Trace:
    """A tiny MLP under a CPU GradScaler starting at 2^127: the scaled gradients overflow
    until the scale has halved enough, about log2(loss_factor) + a few times."""
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.01 / loss_factor)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**127)
    gen = torch.Generator().manual_seed(0)
    with gw.watch(model, opt, scaler=scaler) as w:
        for _ in range(steps):
            x = torch.randn(32, 8, generator=gen)
            y = torch.randint(0, 2, (32,), generator=gen)
            loss = nn.functional.cross_entropy(model(x), y) * loss_factor
            opt.zero_grad()
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
    return w.trace


@pytest.mark.parametrize(("loss_factor", "severity"), [(1e2, "info"), (1e9, "warning")])
def test_scaler_skips_are_calibration_unless_they_persist(
    loss_factor: float, severity: str
) -> None:
    """A few leading skips are info; a run of skips longer than 16 is a warning."""
    trace = _train_with_scaler(loss_factor)
    skipped = int(trace.scalar("skipped").sum())
    found = {f.rule: f for f in gw.diagnose(trace)}
    f = found["nonfinite_gradient"]
    assert f.severity == severity
    assert f.evidence["skipped_steps"] == skipped
    assert (skipped > 16) == (severity == "warning")
    assert f.layers[0] == "2"  # the last Linear: backward visits it first
