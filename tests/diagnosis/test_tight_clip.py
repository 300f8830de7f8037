"""A gradient clip far under the gradient's norm keeps every step tiny: the plateau names the
clip, not the learning rate (measured on a real loop)."""

from __future__ import annotations

import pytest
import torch
from diag_helpers import four_class_loop, train_classifier

import gradwatch as gw


def _clipped_run(max_norm: float) -> gw.Diagnosis:
    """A 16-32-32-4 ReLU MLP on 4-class data, SGD 0.1 + momentum, 150 steps, its gradients
    clipped with ``clip_grad_norm_(max_norm)`` before each step."""
    model, x, y, gen = four_class_loop()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    trace, _ = train_classifier(model, opt, x, y, 150, gen=gen, clip=max_norm)
    return gw.diagnose(trace)


def test_a_clip_far_under_the_gradient_norm_is_named_as_what_keeps_steps_tiny() -> None:
    """Clipped at 1e-3 (the gradient's norm is ~0.25): the loss stays near its start and the
    plateau says the clip scaled every gradient by ~0.004, not that the rate is too low.
    Clipped at 1.0 it trains and nothing is said."""
    (f,) = [f for f in _clipped_run(1e-3) if f.rule == "loss_plateau"]
    assert f.evidence["cause"] == "tight_clip"
    assert f.evidence["clip_coef_median"] == pytest.approx(4e-3, rel=0.5)
    assert "so the clip, not the learning rate, keeps the steps this small" in f.message
    assert not [f for f in _clipped_run(1.0) if f.rule == "loss_plateau"]
