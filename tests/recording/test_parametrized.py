"""weight_norm / spectral_norm: a parametrized module is one layer owning its originals."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm, weight_norm

import gradwatch as gw


def _mlp(wrap: object) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        wrap(nn.Linear(6, 8)), nn.Tanh(), wrap(nn.Linear(8, 8)), nn.Tanh(), nn.Linear(8, 2)
    )  # type: ignore[operator]


@pytest.mark.parametrize("wrap", [weight_norm, spectral_norm], ids=["weight_norm", "sn"])
def test_a_parametrized_linear_is_one_layer_with_its_originals(wrap: object) -> None:
    """The layers are the three Linear modules (no ParametrizationList of their own), typed
    Linear, with the originals among their shapes and the weight's shape under ``weight``;
    each layer's grad_norm is the norm over its bias and originals (float64 reference), and
    its activation is the Tanh that follows it. Watching changes no buffer: spectral_norm's
    power-iteration vectors match an unwatched twin's after the same steps."""
    model = _mlp(wrap)
    twin = copy.deepcopy(model)
    x = torch.randn(16, 6)
    opt, opt_twin = (torch.optim.SGD(m.parameters(), lr=0.1) for m in (model, twin))
    expected = []
    with gw.watch(model, opt, overhead=None, on_finding=lambda f: None) as w:
        for _ in range(3):
            for m, o in ((model, opt), (twin, opt_twin)):
                o.zero_grad()
                m(x).pow(2).mean().backward()
            expected.append(
                [
                    float(
                        torch.cat([p.grad.double().flatten() for p in model[i].parameters()]).norm()
                    )
                    for i in (0, 2, 4)
                ]
            )
            opt.step()
            opt_twin.step()
    trace = w.trace
    assert [(la.name, la.type, la.activation) for la in trace.layers] == [
        ("0", "Linear", "Tanh"),
        ("2", "Linear", "Tanh"),
        ("4", "Linear", None),
    ]
    shapes = trace.layers[1].shapes
    assert shapes["weight"] == [8, 8] and shapes["bias"] == [8]
    assert any(k.startswith("parametrizations.weight.original") for k in shapes)
    np.testing.assert_allclose(trace.matrix("grad_norm"), expected, rtol=1e-5)
    for (name, a), (_, b) in zip(model.named_buffers(), twin.named_buffers(), strict=True):
        torch.testing.assert_close(a, b, msg=name)
