"""A layer and the activation module that follows it share one forward hook on sampled steps.

The fused hook must measure exactly what the layer's hook plus the activation's hook measure,
and only pairs where the activation's input is always that layer's output may be fused.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import gradwatch as gw
from gradwatch.recording.activations import SAMPLED_METRICS, ActivationSampler


class _Mixed(nn.Module):
    """Each way an activation can follow a layer, in one model."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.act1 = nn.Linear(6, 16), nn.Tanh()  # dedicated: fused
        self.fc2, self.drop, self.act2 = nn.Linear(16, 16), nn.Dropout(0.5), nn.Sigmoid()
        self.shared = nn.ReLU()  # one module after two layers: not fused
        self.fc3, self.fc4 = nn.Linear(16, 16), nn.Linear(16, 16)
        self.fc5, self.act5 = nn.Linear(16, 16), nn.ReLU()  # input changed in place first
        self.twice, self.act6a, self.act6b = nn.Linear(16, 16), nn.Tanh(), nn.Tanh()
        self.fc7 = nn.Linear(16, 16)  # a functional activation
        self.fc8, self.act8 = nn.Linear(16, 16), nn.ReLU(inplace=True)  # changes its input
        self.head = nn.Linear(16, 2)  # no activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.fc1(x))
        x = self.act2(self.drop(self.fc2(x)))  # the activation's input is Dropout's output
        x = self.shared(self.fc3(x))
        x = self.shared(self.fc4(x))
        h = self.fc5(x)
        h += x  # in place, between the layer and its activation
        x = self.act5(h)
        x = self.act6a(self.twice(x))  # one layer, called twice, two activation modules
        x = self.act6b(self.twice(x))
        x = F.relu(self.fc7(x))
        x = self.act8(self.fc8(x))  # (fused, the gradient hooked would be act8 output's)
        return self.head(x)


def _train(fuse: bool, model: nn.Module, steps: int = 4) -> tuple[gw.Trace, dict[str, int]]:
    """Sampled metrics of a short run, and the forward hooks per module while sampled."""
    torch.manual_seed(1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = torch.randn(32, 6), torch.randn(32, 2)
    hooks: dict[str, int] = {}
    with pytest.MonkeyPatch.context() as mp:
        if not fuse:
            mp.setattr(ActivationSampler, "_fusable", lambda self: {})
        with gw.watch(model, opt, sample_every=1, overhead=None, on_finding=lambda f: None) as w:
            for step in range(steps):
                if step == 2:
                    hooks = {n: len(m._forward_hooks) for n, m in model.named_modules() if n}
                opt.zero_grad()
                F.mse_loss(model(x), y).backward()
                opt.step()
    return w.trace, hooks


def _copies() -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    a = _Mixed()
    b = _Mixed()
    b.load_state_dict(a.state_dict())
    return a, b


def test_fused_pairs_measure_what_the_separate_hooks_measure() -> None:
    """Every sampled metric of every layer is the same with and without fusion, and only the
    dedicated pair (fc1, act1) lost a hook."""
    a, b = _copies()
    fused, hooks = _train(True, a)
    separate, hooks_separate = _train(False, b)
    for metric in (*SAMPLED_METRICS, "grad_norm", "weight_norm", "update_ratio"):
        np.testing.assert_array_equal(fused.matrix(metric), separate.matrix(metric), metric)
    assert np.isfinite(fused.matrix("out_grad_norm")).all()
    assert np.isfinite(fused.matrix("act_saturated")[:, fused.layer_names.index("fc1")]).all()
    assert hooks["fc1"] == 0 and hooks_separate["fc1"] == 1  # fused into act1's hook
    assert hooks["act1"] == hooks_separate["act1"] == 1
    unfused = ("fc2", "fc3", "fc4", "fc5", "twice", "fc7", "fc8", "head")
    assert all(hooks[n] == hooks_separate[n] == 1 for n in unfused), hooks


def test_fused_mlp_has_one_hook_per_layer_and_matches_float64() -> None:
    """A Linear -> Tanh stack (benchmark W1's shape) hooks each activation only; its fused
    statistics equal a float64 recomputation from the outputs and output gradients."""
    torch.manual_seed(0)
    depth = 5
    model = nn.Sequential(
        *[m for _ in range(depth) for m in (nn.Linear(12, 12), nn.Tanh())], nn.Linear(12, 1)
    )
    x, y = torch.randn(16, 12), torch.randn(16, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with gw.watch(model, opt, sample_every=1, overhead=None, on_finding=lambda f: None) as w:
        for step in range(3):
            if step == 2:  # one hook per Linear -> Tanh pair, the Tanh's; the head's own
                assert [len(m._forward_hooks) for m in model] == [0, 1] * depth + [1]
            outs: list[tuple[torch.Tensor, torch.Tensor]] = []
            h = x
            for k in range(depth):
                pre = model[2 * k](h)
                pre.retain_grad()
                h = model[2 * k + 1](pre)
                outs.append((pre, h))
            loss = F.mse_loss(model[-1](h), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    t = w.trace  # its last step is the one whose outputs are in outs
    assert all(not m._forward_hooks for m in model)  # removed at close
    for k, (pre, act) in enumerate(outs):
        a = act.detach().double()
        assert t.matrix("act_mean")[-1, k] == pytest.approx(a.mean().item(), rel=1e-5)
        assert t.matrix("act_std")[-1, k] == pytest.approx(a.std(unbiased=False).item(), rel=1e-4)
        sat = (a.abs() > 0.97).double().mean().item()
        assert t.matrix("act_saturated")[-1, k] == pytest.approx(sat, abs=1e-12)
        og = pre.grad.double().norm().item()
        assert t.matrix("out_grad_norm")[-1, k] == pytest.approx(og, rel=1e-5)
