"""A loss stopped at the floor of cross-entropy over probabilities (a softmax applied twice)
is named: on hand-built losses around the floor, and on a real MLP ending in nn.Softmax."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from diag_helpers import depth_profile, layers, trace_of, train_classifier
from torch import nn

import gradwatch as gw
from gradwatch.diagnosis.probability_floor import cross_entropy_floor

N = 300
FLOOR = math.log(math.e + 9) - 1  # 10 classes


def _plateau(loss: np.ndarray) -> gw.Finding:
    """The loss_plateau finding of 6 healthy Linear layers of width 10 (the last one's 10
    outputs: the classes) with ``loss`` logged."""
    grad = np.tile(depth_profile(6, 0.0), (N, 1))
    trace = trace_of(
        6, N, {"grad_rms": grad}, scalars={"loss": loss}, layer_infos=layers(6, width=10)
    )
    (f,) = [f for f in gw.diagnose(trace) if f.rule == "loss_plateau"]
    return f


def _levels_off(above: float, dip: bool = False) -> np.ndarray:
    """From 2.30 down to ``above`` over the floor by step 100, then flat with noise >= 0;
    ``dip``: one batch's loss under the floor."""
    t = np.arange(N)
    level = FLOOR * (1 + above)
    loss = level + (2.30 - level) * np.exp(-t / 20.0) + 0.004 * np.abs(np.sin(1.3 * t))
    if dip:
        loss[250] = FLOOR - 0.01
    return loss


def test_the_floor_is_the_cross_entropy_of_a_one_hot_probability_vector() -> None:
    p = torch.zeros(1, 10)
    p[0, 3] = 1.0
    assert cross_entropy_floor(10) == pytest.approx(F.cross_entropy(p, torch.tensor([3])).item())
    assert cross_entropy_floor(10) == pytest.approx(FLOOR)


def test_a_loss_levelled_off_just_above_the_floor_names_the_double_softmax() -> None:
    f = _plateau(_levels_off(0.005))
    assert f.severity == "warning" and f.remedies == ()
    assert f.evidence["cause"] == "probability_floor"
    assert f.evidence["probability_floor"]["classes"] == 10
    assert f.message.startswith("Loss stopped at the floor of a softmax applied twice")
    assert "log(e + 9) - 1" in f.message and "Pass it the logits" in f.message


@pytest.mark.parametrize(
    ("above", "dip"), [(0.005, True), (0.03, False)], ids=["a_batch_below", "too_far_above"]
)
def test_a_loss_that_crossed_the_floor_or_stays_well_above_it_is_not(
    above: float, dip: bool
) -> None:
    """A batch below the floor is impossible for probabilities fed as logits; 3% above it is
    outside the margin: both stay the plain plateau after learning (info)."""
    f = _plateau(_levels_off(above, dip))
    assert f.severity == "info" and f.evidence.get("cause") != "probability_floor"


def _digits_mlp(softmax: bool) -> gw.Diagnosis:
    """A 64-64-10 ReLU MLP on digits, Adam 1e-2, batch 64, 600 steps, cross-entropy of its
    outputs (probabilities when it ends in nn.Softmax)."""
    from sklearn.datasets import load_digits

    x_np, y_np = load_digits(return_X_y=True)
    x, y = torch.tensor(x_np / 16.0, dtype=torch.float32), torch.tensor(y_np)
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10), *([nn.Softmax(-1)] if softmax else [])
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    trace, _ = train_classifier(model, opt, x, y, 600, gen=torch.Generator().manual_seed(0))
    return gw.diagnose(trace)


def test_a_real_model_ending_in_softmax_is_told_and_the_same_without_is_not() -> None:
    """It was told "still falling, slowly ... more steps go further" at 1.47; without the
    softmax the same model reaches 0.015 and draws no plateau warning."""
    (f,) = [f for f in _digits_mlp(softmax=True) if f.rule == "loss_plateau"]
    assert f.severity == "warning" and f.evidence["cause"] == "probability_floor"
    assert not [f for f in _digits_mlp(softmax=False) if f.severity != "info"]


def test_a_last_layer_that_is_not_the_output_head_does_not_name_it() -> None:
    """A GPT-2-like LM with a tied head: the last weight layer by depth is a block's MLP
    projection (3072 wide: floor log(e + 3071) - 1 = 7.03), not the 50257-token output. Its
    loss starts at log(50257) = 10.8, above log(e + C - 1), which no loss over probabilities
    can reach: levelling off just above 7.03 is not the double softmax."""
    floor = cross_entropy_floor(3072)
    t = np.arange(N)
    loss = floor * 1.005 + (10.8 - floor * 1.005) * np.exp(-t / 20.0)
    grad = np.tile(depth_profile(6, 0.0), (N, 1))
    infos = layers(6, width=3072)
    trace = trace_of(6, N, {"grad_rms": grad}, scalars={"loss": loss}, layer_infos=infos)
    (f,) = [f for f in gw.diagnose(trace) if f.rule == "loss_plateau"]
    assert f.evidence.get("cause") != "probability_floor"
