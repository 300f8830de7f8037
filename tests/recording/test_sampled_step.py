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


def test_small_parameters_batched_together_match_float64_per_layer() -> None:
    """Biases and norm parameters are concatenated and reduced together on CPU, large weights
    one by one, a float64 layer apart: every layer's gradient, weight and update statistics
    still equal a float64 recomputation, and a NaN in one bias's gradient reaches its layer's
    grad_max (and no other's)."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(64, 128),  # 8192-element weight: reduced alone; its bias batched
        nn.LayerNorm(128),  # two 128-element parameters: batched
        nn.Tanh(),
        nn.Linear(128, 16),  # 2048-element weight: batched with the biases
        nn.Tanh(),
        nn.Linear(16, 4).double(),  # float64: never batched with float32 tensors
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.1)  # stateless: the NaN step is undone
    layers = [model[0], model[1], model[3], model[5]]
    x = torch.randn(8, 64)
    expected = []
    with gw.watch(model, opt, sample_every=1, overhead=None, on_finding=lambda f: None) as w:
        for step in range(4):
            opt.zero_grad()
            out = model[5](model[:5](x).double())
            out.pow(2).mean().backward()
            if step == 2:
                model[3].bias.grad[3] = float("nan")
            grads = [torch.cat([p.grad.double().flatten() for p in m.parameters()]) for m in layers]
            before = [[p.detach().clone() for p in m.parameters()] for m in layers]
            opt.step()
            after = [[p.detach().clone() for p in m.parameters()] for m in layers]
            if step == 2:
                with torch.no_grad():  # undo the NaN's effect on the weights
                    for m, b in zip(layers, before, strict=True):
                        for p, v in zip(m.parameters(), b, strict=True):
                            p.copy_(v)
            expected.append(
                [
                    [g.norm().item(), g.abs().max().item(), *_reference(b, a)]
                    for g, b, a in zip(grads, before, after, strict=True)
                ]
            )
    trace = w.trace
    exp = np.array(expected)  # (steps, layers, 4)
    ok = np.ones(exp.shape[:2], dtype=bool)
    ok[2, 2] = False  # the layer whose bias gradient had a NaN
    for k, metric in enumerate(["grad_norm", "grad_max", "weight_norm", "update_ratio"]):
        got = trace.matrix(metric)
        np.testing.assert_allclose(got[ok], exp[:, :, k][ok], rtol=1e-5, err_msg=metric)
    assert np.isfinite(exp[ok]).all()
    assert np.isnan(trace.matrix("grad_max")[2, 2])
    assert np.isfinite(np.delete(trace.matrix("grad_max")[2], 2)).all()
