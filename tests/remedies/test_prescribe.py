"""prescribe: pooled, ranked remedies, filtered to what applies to this model."""

from __future__ import annotations

import numpy as np
import pytest
from remedies_helpers import make_mlp
from torch import nn

from gradwatch.diagnosis import Finding, RemedyHint
from gradwatch.remedies import Prescription, applicability, prescribe
from gradwatch.trace import Trace


def _finding(rule: str, severity: str, *remedies: str) -> Finding:
    return Finding(
        rule=rule,
        severity=severity,  # type: ignore[arg-type]
        layers=("0",),
        steps=(0, 9),
        evidence={},
        message="test",
        remedies=tuple(RemedyHint(r, f"{r} because {rule}") for r in remedies),
    )


def test_residual_and_lstm_are_not_offered_where_they_do_not_fit() -> None:
    """A pyramid MLP gets no residual (no Linear(d, d)) and no lstm (no nn.RNN)."""
    pyramid = nn.Sequential(
        nn.Linear(8, 6), nn.Sigmoid(), nn.Linear(6, 4), nn.Sigmoid(), nn.Linear(4, 1)
    )
    f = _finding("vanishing_gradient", "critical", "residual", "lstm", "relu", "batchnorm")
    got = prescribe([f], pyramid)
    assert [p.remedy for p in got] == ["relu", "batchnorm"]
    every = prescribe([f], pyramid, include_inapplicable=True)
    assert [p.remedy for p in every][-2:] == ["residual", "lstm"]
    assert every[-2].why_not is not None and "shape-preserving" in every[-2].why_not
    assert every[-1].why_not == "the model has no nn.RNN to replace"


def test_ranking_pools_findings_by_severity_and_rank() -> None:
    """Score = sum of severity weight / rank: a remedy two findings share outranks the others."""
    model = make_mlp(depth=4)
    f1 = _finding("vanishing_gradient", "critical", "residual", "relu")  # 3/1, 3/2
    f2 = _finding("saturated_activation", "warning", "relu", "batchnorm")  # 2/1, 2/2
    got = prescribe([f1, f2], model)
    scores = {p.remedy: p.score for p in got}
    assert scores == {
        "relu": pytest.approx(3.5),
        "residual": pytest.approx(3.0),
        "batchnorm": pytest.approx(1.0),
    }
    assert [p.remedy for p in got] == ["relu", "residual", "batchnorm"]
    relu = got[0]
    assert relu.rules == ("vanishing_gradient", "saturated_activation")
    assert (
        "relu because vanishing_gradient" in relu.reason and "saturated_activation" in relu.reason
    )


def test_applicability_of_each_family() -> None:
    """Structural checks: activation already used, RNN present, data-needing options marked."""
    relu_mlp = make_mlp(depth=4, act=nn.ReLU)
    assert applicability(relu_mlp, "relu") == (False, "the model already uses relu everywhere")
    assert applicability(relu_mlp, "tanh") == (True, None)
    assert applicability(nn.Sequential(nn.RNN(3, 4)), "gru") == (True, None)
    assert applicability(nn.Sequential(nn.RNN(3, 4)), "init_identity") == (True, None)
    assert applicability(relu_mlp, "init_identity")[0] is False
    ok, why = applicability(relu_mlp, "faster_hardware")
    assert ok is False and why is not None  # CPU-only test machine


def test_relu_does_not_fit_a_model_whose_activations_never_saturate() -> None:
    """GELU and SiLU have no saturated tail: swapping them for ReLU passes no more gradient.
    One saturating activation among them (a tanh) keeps relu applicable."""
    gelu_silu = nn.Sequential(
        nn.Linear(4, 4), nn.GELU(), nn.Linear(4, 4), nn.SiLU(), nn.Linear(4, 2)
    )
    assert applicability(gelu_silu, "relu") == (
        False,
        "the model's activations (GELU, SiLU) do not saturate: a ReLU would pass no more gradient",
    )
    assert applicability(gelu_silu, "leaky_relu") == (True, None)  # only relu is judged so
    mixed = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 4), nn.GELU(), nn.Linear(4, 2))
    assert applicability(mixed, "relu") == (True, None)


def test_options_come_from_the_trace_and_mark_required_data() -> None:
    """clip_norm carries max_norm from suggest_max_norm(trace); init_lsuv marks inputs as
    required; lower_lr marks the optimizer and says its factor."""
    norms = np.arange(1.0, 21.0)
    trace = Trace.from_arrays(
        ["l0"], range(20), {"grad_rms": np.ones((20, 1))}, scalars={"global_grad_norm": norms}
    )
    f = _finding("exploding_gradient", "critical", "clip_norm", "init_lsuv", "lower_lr")
    got = {p.remedy: p for p in prescribe([f], make_mlp(), trace=trace)}
    assert got["clip_norm"].options == {"max_norm": pytest.approx(float(np.quantile(norms, 0.9)))}
    assert got["init_lsuv"].options == {"inputs": "<required>"}
    assert got["lower_lr"].options == {"optimizer": "<required>", "factor": 0.1}
    assert isinstance(got["clip_norm"], Prescription)
    assert got["clip_norm"].to_json()["options"]["max_norm"] == pytest.approx(18.1)


def test_without_a_model_nothing_is_checked_and_unknown_ids_are_dropped() -> None:
    """model=None returns every known remedy with checked=False; unknown ids are skipped."""
    f = _finding("vanishing_gradient", "warning", "residual", "teleport")
    got = prescribe([f])
    assert [(p.remedy, p.checked, p.applicable) for p in got] == [("residual", False, True)]
    with pytest.raises(TypeError, match="Finding"):
        prescribe(["vanishing_gradient"])  # type: ignore[list-item]
