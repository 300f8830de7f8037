"""The cheaper sampled step measures what the per-parameter reference measures."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

import gradwatch as gw


def _reference(before: list[torch.Tensor], after: list[torch.Tensor]) -> tuple[float, float]:
    """(weight norm, update ratio) of one layer in float64, from copies of its parameters."""
    w = sum(float(b.double().pow(2).sum()) for b in before) ** 0.5
    d = sum(
        float((a.double() - b.double()).pow(2).sum()) for a, b in zip(after, before, strict=True)
    )
    return w, d**0.5 / w


def test_weight_norm_and_update_ratio_with_channels_last_and_replaced_data() -> None:
    """A channels_last (non-contiguous) conv weight and a parameter whose ``.data`` is replaced
    mid-run: weight_norm and update_ratio still equal a float64 recomputation at every step."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Tanh(), nn.Flatten(), nn.Linear(8 * 6 * 6, 4))
    model[0].to(memory_format=torch.channels_last)
    assert not model[0].weight.is_contiguous()
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    expected = []
    with gw.watch(model, opt, sample_every=1, overhead=None) as w:
        for step in range(6):
            if step == 3:
                with torch.no_grad():  # new storage: cached flat views must follow it
                    model[3].weight.data = model[3].weight.data.clone() * 1.5
            opt.zero_grad()
            model(torch.randn(5, 3, 8, 8)).pow(2).mean().backward()
            before = [[p.detach().clone() for p in m.parameters()] for m in (model[0], model[3])]
            opt.step()
            after = [[p.detach().clone() for p in m.parameters()] for m in (model[0], model[3])]
            expected.append([_reference(b, a) for b, a in zip(before, after, strict=True)])
    trace = w.trace
    exp = np.array(expected)  # (steps, layers, 2)
    np.testing.assert_allclose(trace.matrix("weight_norm"), exp[:, :, 0], rtol=1e-5)
    np.testing.assert_allclose(trace.matrix("update_ratio"), exp[:, :, 1], rtol=1e-4)
