"""Inputs that are not standardised (features in raw units, pixels in 0-255) are named as
the cause of a poor start, instead of the weights' initialisation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import gradwatch as gw
from gradwatch.diagnosis import Finding


def _digits_run(
    scale: float | None, optimizer: str, act: type[nn.Module] = nn.ReLU
) -> Finding | None:
    """A 64-64-64-10 MLP on scikit-learn's digits, 100 steps: the pixels (0-16) times
    ``scale``, or standardised (None). Its poor_initialization finding (or None)."""
    from sklearn.datasets import load_digits

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 64), act(), nn.Linear(64, 64), act(), nn.Linear(64, 10))
    opt = (
        torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        if optimizer == "sgd"
        else torch.optim.Adam(model.parameters(), lr=1e-3)
    )
    xs, ys = load_digits(return_X_y=True)
    x, y = torch.tensor(xs, dtype=torch.float32), torch.tensor(ys)
    x = (x - x.mean()) / x.std() if scale is None else x * scale
    gen = torch.Generator().manual_seed(0)
    with gw.watch(model, opt, overhead=None, on_finding=lambda f: None) as w:
        for _ in range(100):
            i = torch.randint(0, len(x), (64,), generator=gen)
            loss = F.cross_entropy(model(x[i]), y[i])
            opt.zero_grad()
            loss.backward()
            opt.step()
            w.log(loss=loss)
    found = [f for f in gw.diagnose(w.trace) if f.rule == "poor_initialization"]
    return found[0] if found else None


@pytest.mark.parametrize(("optimizer", "severity"), [("sgd", "warning"), ("adam", "info")])
def test_raw_byte_scale_inputs_are_named_as_the_cause(optimizer: str, severity: str) -> None:
    """Pixels times 16 (RMS 124, like raw image bytes): the first layer's output std is 40 at
    step 0 where its weights give 0.58 from unit-variance inputs. The finding says the inputs
    are not standardised (RMS about 70, an underestimate after the ReLU) and offers LSUV and
    BatchNorm, not He or Xavier inits (it said "2 layer(s) start with an output std ...").
    Under Adam training recovers: info, told that standardised inputs would start it right."""
    f = _digits_run(16.0, optimizer)
    assert f is not None and f.severity == severity
    assert f.layers[0] == "0"
    assert f.evidence["input_rms_at_least"] == pytest.approx(70, rel=0.1)
    assert "is fed inputs of RMS about 70" in f.message
    assert "the inputs are not standardised" in f.message
    if severity == "warning":
        assert [r.id for r in f.remedies] == ["init_lsuv", "batchnorm"]
        assert "standardise the inputs" in f.message
    else:
        assert "standardised inputs would start it at its working scale" in f.message


def test_standardised_inputs_or_a_saturating_first_layer_are_not_named() -> None:
    """Standardised digits: no poor start at all. Raw pixels (RMS 7.7) into tanh layers: the
    first layer saturates near 1, which no input RMS of 10 or more explains."""
    assert _digits_run(None, "adam") is None
    f = _digits_run(1.0, "adam", act=nn.Tanh)
    assert f is None or "input_rms_at_least" not in f.evidence
