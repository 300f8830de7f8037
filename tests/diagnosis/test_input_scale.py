"""Inputs that are not standardised (features in raw units, pixels in 0-255) are named as
the cause of a poor start, instead of the weights' initialisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diag_helpers import train_classifier
from torch import nn

import gradwatch as gw
from gradwatch.diagnosis import Finding


def _digits_run(
    scale: float | None,
    optimizer: str,
    act: type[nn.Module] = nn.ReLU,
    steps: int = 100,
    norm_first: bool = False,
) -> gw.Diagnosis:
    """A 64-64-64-10 MLP on scikit-learn's digits (after a BatchNorm1d with ``norm_first``):
    the pixels (0-16) times ``scale``, or standardised (None)."""
    from sklearn.datasets import load_digits

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 64), act(), nn.Linear(64, 64), act(), nn.Linear(64, 10))
    if norm_first:
        model = nn.Sequential(nn.BatchNorm1d(64), model)
    opt = (
        torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        if optimizer == "sgd"
        else torch.optim.Adam(model.parameters(), lr=1e-3)
    )
    xs, ys = load_digits(return_X_y=True)
    x, y = torch.tensor(xs, dtype=torch.float32), torch.tensor(ys)
    x = (x - x.mean()) / x.std() if scale is None else x * scale
    trace, _ = train_classifier(model, opt, x, y, steps, gen=torch.Generator().manual_seed(0))
    return gw.diagnose(trace)


def _poor_start(d: gw.Diagnosis) -> Finding | None:
    found = [f for f in d if f.rule == "poor_initialization"]
    return found[0] if found else None


@pytest.mark.parametrize(("optimizer", "severity"), [("sgd", "warning"), ("adam", "info")])
def test_raw_byte_scale_inputs_are_named_as_the_cause(optimizer: str, severity: str) -> None:
    """Pixels times 16 (RMS 124, like raw image bytes): the first layer's output std is 40 at
    step 0 where its weights give 0.58 from unit-variance inputs (RMS about 70 from those, an
    underestimate after the ReLU; 124 as the watch reads it off the inputs). The finding says
    the inputs are not standardised and offers LSUV and BatchNorm, not He or Xavier inits (it
    said "2 layer(s) start with an output std ..."). Under Adam training recovers: info, told
    that standardised inputs would start it right."""
    f = _poor_start(_digits_run(16.0, optimizer))
    assert f is not None and f.severity == severity
    assert f.layers[0] == "0"
    assert f.evidence["input_rms_at_least"] == pytest.approx(70, rel=0.1)
    assert "is fed inputs of RMS 124 (its output std 40 at step 0" in f.message
    assert "the inputs are not standardised" in f.message
    if severity == "warning":
        assert [r.id for r in f.remedies] == ["init_lsuv", "batchnorm"]
        assert "standardise the inputs" in f.message
    else:
        assert "standardised inputs would start it at its working scale" in f.message


def test_standardised_inputs_or_a_saturating_first_layer_are_not_named() -> None:
    """Standardised digits: no poor start at all. Raw pixels (RMS 7.7) into tanh layers: the
    first layer saturates near 1, which no input RMS of 10 or more explains."""
    assert _poor_start(_digits_run(None, "adam")) is None
    f = _poor_start(_digits_run(1.0, "adam", act=nn.Tanh))
    assert f is None or "input_rms_at_least" not in f.evidence


def test_every_alarm_of_a_run_fed_raw_inputs_is_told_their_scale() -> None:
    """Raw digits (0-16, RMS 7.7) under SGD 0.05 + momentum: 69% of the first layer's ReLUs
    die and the loss stalls; the dead units and the plateau were told nothing of the inputs
    (the first layer's output std, 2.5, is within poor_initialization's tenfold). Now every
    alarm says their RMS and asks to standardise them, its own remedies kept. Standardised,
    or normalised by the model's own first layer (BatchNorm1d), nothing is said."""
    d = _digits_run(1.0, "sgd", steps=300)
    alarms = [f for f in d if f.severity != "info"]
    assert {"dead_units", "loss_plateau"} <= {f.rule for f in alarms}
    said = "The model's inputs (`arg0`) have an RMS of 7.73 (mean 4.85)"
    assert all(said in f.message for f in alarms)
    (dead,) = [f for f in alarms if f.rule == "dead_units"]
    assert dead.remedies and dead.evidence["model_input"]["rms"] == pytest.approx(7.73, abs=0.01)
    for quiet in (_digits_run(None, "sgd", steps=300), _digits_run(1.0, "sgd", norm_first=True)):
        assert not any("The model's inputs" in f.message for f in quiet)


@pytest.mark.parametrize(
    ("record", "first_is_norm", "told"),
    [
        ({"source": "arg0", "shape": [8, 4], "rms": 5.0, "mean": 1.0}, False, True),
        ({"source": "arg0", "shape": [8, 4], "rms": 4.99, "mean": 1.0}, False, False),
        ({"source": "arg0", "shape": [8, 4], "rms": 50.0, "mean": 1.0}, True, False),
        ({"source": "arg0", "shape": [8, 4], "rms": float("nan"), "mean": 1.0}, False, False),
        ({"rms": "large"}, False, False),
        (None, False, False),
    ],
)
def test_the_input_record_read_and_its_limits(
    record: dict[str, object] | None, first_is_norm: bool, told: bool
) -> None:
    """At INPUT_RMS_LIMIT or above, unless the model's first layer is a norm layer; a
    record that is missing, not finite or not a number says nothing."""
    from gradwatch.diagnosis.input_scale import INPUT_RMS_LIMIT, unscaled_inputs
    from gradwatch.trace import LayerInfo, Trace

    assert INPUT_RMS_LIMIT == 5.0
    first = (
        LayerInfo("bn", "BatchNorm1d", 0, 8) if first_is_norm else LayerInfo("fc", "Linear", 0, 8)
    )
    t = Trace.from_arrays(
        [first, LayerInfo("head", "Linear", 1, 8)], [0], {"grad_rms": [[1.0, 1.0]]}
    )
    if record is not None:
        t.meta["model_input"] = record
    assert (unscaled_inputs(t) is not None) == told


def test_a_first_output_without_spread_at_step_0_says_nothing_of_the_inputs() -> None:
    """The first layer's output std 0 at step 0 (its median over the first rows far from 1):
    no input RMS is implied (log10 of 0 raised inside diagnose, found by the property test)."""
    from diag_helpers import trace_of

    n = 3
    std = np.full((n, 4), 1.0)
    std[:, 0] = [0.0, 50.0, 50.0]  # the first row says nothing; the median is far from 1
    trace = trace_of(4, n, {"act_std": std, "weight_norm": np.full((n, 4), 4.0)})
    findings = gw.diagnose(trace)  # (raised ValueError: math domain error)
    (f,) = [f for f in findings if f.rule == "poor_initialization"]
    assert "input_rms_at_least" not in f.evidence
