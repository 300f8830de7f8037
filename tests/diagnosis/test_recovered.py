"""A poor initialisation that training recovered from is info; one followed by anything, or
by a loss that did not improve, stays a warning."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diag_helpers import trace_of

import gradwatch as gw
from gradwatch.trace import Trace

N = 100


def _trace(loss: np.ndarray, grad_decades: float = 0.0) -> Trace:
    """4 layers whose output gradient shrinks 0.45x a layer backward (a poor start, as PyTorch's
    default init on ReLU layers), with ``loss`` logged; grad_rms rising ``grad_decades``."""
    ogn = 0.45 ** (3 - np.arange(4))
    grad = 1e-3 * 10.0 ** (grad_decades * np.arange(4) / 3)
    return trace_of(4, N, {"out_grad_norm": ogn, "grad_rms": grad}, scalars={"loss": loss})


def _poor_start(findings: list[gw.Finding]) -> gw.Finding:
    (f,) = [f for f in findings if f.rule == "poor_initialization"]
    return f


@pytest.mark.parametrize(
    ("loss", "severity"),
    [
        (2.3 * 0.98 ** np.arange(N), "info"),  # learned: 2.3 -> 0.31
        (2.3 + 0.001 * np.sin(np.arange(N)), "warning"),  # never improved
        (np.r_[2.3 * 0.97 ** np.arange(50), np.full(50, 2.3)], "warning"),  # gave it all back
    ],
)
def test_a_poor_start_is_info_only_when_the_loss_improved(loss: np.ndarray, severity: str) -> None:
    f = _poor_start(gw.diagnose(_trace(loss)))
    assert f.severity == severity
    assert f.evidence["loss_improving"] is (severity == "info")
    if severity == "info":
        assert f.remedies == () and f.evidence["recovered"] is True
        assert f.message.startswith(
            "Poor initialisation, recovered from: each layer multiplies the backward gradient "
            "by about 0.45"
        )
        assert "Yet nothing else was found and the loss went 2.2" in f.message
    else:
        assert f.remedies and "recovered" not in f.evidence


def test_a_poor_start_beside_a_vanishing_gradient_stays_a_warning() -> None:
    """With a gradient finding beside it the poor start is a likely cause, not a curiosity."""
    findings = gw.diagnose(_trace(2.3 * 0.98 ** np.arange(N), grad_decades=5.0))
    assert any(f.rule == "vanishing_gradient" and f.severity != "info" for f in findings)
    assert _poor_start(findings).severity == "warning"


def test_a_subset_of_rules_does_not_settle_it() -> None:
    """Run alone, the rule cannot know nothing else went wrong: it stays a warning."""
    trace = _trace(2.3 * 0.98 ** np.arange(N))
    assert _poor_start(gw.diagnose(trace, rules=["poor_initialization"])).severity == "warning"


def test_a_plateau_after_learning_does_not_keep_a_poor_start_a_warning() -> None:
    """A loss that fell, then levelled off: the plateau (after learning, nothing else found)
    and the poor start kept each other warnings; both are info."""
    fell = 2.3 * 0.95 ** np.arange(40)
    findings = gw.diagnose(_trace(np.r_[fell, np.full(N - 40, fell[-1])]))
    (plateau,) = [f for f in findings if f.rule == "loss_plateau"]
    assert plateau.severity == "info"
    f = _poor_start(findings)
    assert f.severity == "info" and f.evidence["recovered"] is True


def test_a_digits_autoencoder_at_its_floor_draws_no_alarm() -> None:
    """A real autoencoder on digits (64-128-16-128-64, ReLU, a sigmoid output under BCE,
    Adam 1e-3, PyTorch's default init) falls 44 -> 16 and levels off at what its grey-level
    targets allow: the poor start and the plateau were warnings holding each other up."""
    from sklearn.datasets import load_digits
    from torch import nn

    torch.manual_seed(0)
    x_all = torch.tensor(load_digits().data, dtype=torch.float32) / 16.0
    enc = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 16))
    dec = nn.Sequential(nn.Linear(16, 128), nn.ReLU(), nn.Linear(128, 64), nn.Sigmoid())
    model = nn.ModuleDict({"enc": enc, "dec": dec})
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(1)
    with gw.watch(model, opt, overhead=None) as w:
        for _ in range(2000):
            x = x_all[torch.randint(0, len(x_all), (64,), generator=gen)]
            opt.zero_grad()
            loss = nn.functional.binary_cross_entropy(dec(enc(x)), x, reduction="sum") / 64
            loss.backward()
            opt.step()
            w.log(loss=loss)
    findings = gw.diagnose(w.trace)
    assert not [f.message for f in findings if f.severity != "info"]
    assert {f.rule for f in findings} >= {"poor_initialization", "loss_plateau"}
