"""GradScaler with a fused optimizer (``AdamW(fused=True)``, Hugging Face's default).

GradScaler does not unscale such an optimizer's gradients nor skip its step: the fused kernel
divides by the loss scale and, on an inf, leaves the weights as they were. So the step hooks
see gradients still multiplied by the scale and a step that was in effect skipped. Each test
compares with a float64 recomputation from the gradients the optimizer received.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import gradwatch as gw

FP16_TINY = 2.0**-14
FUSED = [
    pytest.param(lambda p: torch.optim.AdamW(p, lr=1e-2, fused=True), id="AdamW"),
    pytest.param(lambda p: torch.optim.Adam(p, lr=1e-2, fused=True), id="Adam"),
]


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(6, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 2)
    )


def _batches(n: int = 5) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(3)
    return [torch.randn(16, 6, generator=gen) for _ in range(n)]


class Received:
    """The gradients each optimizer step received (float64) and the loss scale they carry."""

    def __init__(self, model: nn.Module, opt: torch.optim.Optimizer) -> None:
        self.grads: list[list[torch.Tensor]] = []
        self.scales: list[float] = []

        def hook(optimizer: Any, args: Any, kwargs: Any) -> None:
            scale = getattr(optimizer, "grad_scale", None)  # GradScaler's, while it steps
            self.scales.append(1.0 if scale is None else float(scale))
            self.grads.append([p.grad.detach().double().clone() for p in model.parameters()])

        opt.register_step_pre_hook(hook)

    def unscaled(self) -> list[list[torch.Tensor]]:
        return [[g / s for g in gs] for gs, s in zip(self.grads, self.scales, strict=True)]


def _per_layer(grads: list[list[torch.Tensor]], fn: Any) -> np.ndarray:
    """fn over each (weight, bias) pair, per step: shape (steps, layers)."""
    return np.array([[fn(w, b) for w, b in zip(gs[::2], gs[1::2], strict=True)] for gs in grads])


def _train(
    make_opt: Any, *, pass_scaler: bool, unscale: bool = False, poison_at: int | None = None
) -> tuple[gw.Trace, Received, list[bool]]:
    model = _model()
    opt = make_opt(model.parameters())
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    step = {"n": 0}

    def poison(g: torch.Tensor) -> torch.Tensor:
        return g * float("inf") if step["n"] == poison_at else g

    model[2].weight.register_hook(poison)
    moved = []
    options = {"scaler": scaler} if pass_scaler else {}
    with gw.watch(model, opt, sample_every=1, overhead=None, **options) as w:
        received = Received(model, opt)
        for x in _batches():
            before = model[4].weight.detach().clone()
            opt.zero_grad()
            with torch.autocast("cpu", dtype=torch.float16):
                loss = model(x).float().pow(2).mean()
            scaler.scale(loss).backward()
            if unscale:
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1e3)
            scaler.step(opt)
            scaler.update()
            moved.append(not torch.equal(before, model[4].weight))
            step["n"] += 1
    return w.trace, received, moved


@pytest.mark.parametrize("make_opt", FUSED)
@pytest.mark.parametrize("pass_scaler", [True, False])
def test_fused_optimizer_statistics_are_of_the_unscaled_gradients(
    make_opt: Any, pass_scaler: bool
) -> None:
    """grad_norm, grad_max, the global norm and the underflow count are those of the
    gradients divided by the loss scale (with or without `scaler=`: the optimizer says)."""
    trace, received, _ = _train(make_opt, pass_scaler=pass_scaler)
    assert set(received.scales) == {2.0**10}  # the gradients did carry the scale
    g = received.unscaled()
    norm = _per_layer(g, lambda w, b: float(torch.sqrt(w.square().sum() + b.square().sum())))
    gmax = _per_layer(g, lambda w, b: float(max(w.abs().max(), b.abs().max())))
    np.testing.assert_allclose(trace.matrix("grad_norm"), norm, rtol=1e-5)
    np.testing.assert_allclose(trace.matrix("grad_max"), gmax, rtol=1e-6)
    np.testing.assert_allclose(
        trace.scalar("global_grad_norm"), np.sqrt((norm**2).sum(axis=1)), rtol=1e-5
    )
    # Underflow as the backward held them: |g| * scale below fp16's smallest normal.
    below = _per_layer(
        received.grads,
        lambda w, b: (
            (int((w.abs() < FP16_TINY).sum()) + int((b.abs() < FP16_TINY).sum()))
            / (w.numel() + b.numel())
        ),
    )
    np.testing.assert_allclose(trace.matrix("grad_underflow"), below, rtol=1e-6)


@pytest.mark.parametrize("make_opt", FUSED)
def test_gradients_the_user_unscaled_are_not_divided_again(make_opt: Any) -> None:
    """After `scaler.unscale_(opt)` (to clip) the fused optimizer gets unscaled gradients."""
    trace, received, _ = _train(make_opt, pass_scaler=True, unscale=True)
    assert set(received.scales) == {1.0}
    norm = _per_layer(
        received.grads, lambda w, b: float(torch.sqrt(w.square().sum() + b.square().sum()))
    )
    np.testing.assert_allclose(trace.matrix("grad_norm"), norm, rtol=1e-5)


@pytest.mark.parametrize("make_opt", FUSED)
@pytest.mark.parametrize("pass_scaler", [True, False])
def test_a_fused_optimizer_s_gradscaler_skip_is_a_skipped_step(
    make_opt: Any, pass_scaler: bool
) -> None:
    """An inf at step 2: the fused step leaves the weights as they were, and the trace
    records step 2 as skipped (no update ratio), as GradScaler's skip of any other
    optimizer is: GradScaler's business, not a NaN that reached the weights."""
    trace, _, moved = _train(make_opt, pass_scaler=pass_scaler, poison_at=2)
    assert moved == [True, True, False, True, True]  # the optimizer's own skip
    assert trace.skipped_steps() == {2: ["L1 2"]}
    ratio = trace.matrix("update_ratio")
    assert np.isnan(ratio[2]).all() and np.isfinite(ratio[[0, 1, 3, 4]]).all()
    finding = next(f for f in gw.diagnose(trace) if f.rule == "nonfinite_gradient")
    assert finding.severity != "critical" and finding.evidence["skipped_steps"] == 1
    # The same run with an optimizer GradScaler skips itself reads the same.
    plain, _, plain_moved = _train(
        lambda p: torch.optim.Adam(p, lr=1e-2), pass_scaler=True, poison_at=2
    )
    assert plain_moved == moved and plain.skipped_steps() == trace.skipped_steps()
