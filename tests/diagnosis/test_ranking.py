"""The one remedy ranking (diagnosis.ranking): what gw.prescribe and the verdict both use."""

from __future__ import annotations

import numpy as np
import pytest

from gradwatch.diagnosis import Finding, RemedyHint, rank_remedies
from gradwatch.remedies import prescribe
from gradwatch.trace import LayerInfo, Trace


def _finding(rule: str, severity: str, *ids: str) -> Finding:
    return Finding(
        rule, severity, (), None, {}, "m", tuple(RemedyHint(i, f"{rule}:{i}") for i in ids)
    )  # type: ignore[arg-type]


FINDINGS = [
    _finding("vanishing_gradient", "critical", "residual", "relu", "lstm"),
    _finding("saturated_activation", "warning", "relu", "batchnorm"),
    _finding("loss_plateau", "info", "init_he", "not_a_remedy"),
]


def test_scores_are_severity_over_rank_summed() -> None:
    """Score = sum of severity weight / rank (hand-computed); unknown ids dropped; reasons
    and rules pooled in order."""
    ranked = rank_remedies(FINDINGS)
    scores = {r.remedy: r.score for r in ranked}
    assert scores == pytest.approx(
        {"relu": 3 / 2 + 2 / 1, "residual": 3.0, "lstm": 1.0, "batchnorm": 1.0, "init_he": 1.0}
    )
    assert [r.remedy for r in ranked] == ["relu", "residual", "lstm", "batchnorm", "init_he"]
    relu = ranked[0]
    assert relu.rules == ("vanishing_gradient", "saturated_activation")
    assert relu.reason == "vanishing_gradient:relu; saturated_activation:relu"


def test_prescribe_without_a_model_is_this_ranking() -> None:
    """gw.prescribe(findings, trace=) ranks exactly as rank_remedies(findings, trace=)."""
    layers = [LayerInfo(f"fc{i}", "Linear", i, 64, {"weight": [8, 8]}, "Sigmoid") for i in range(3)]
    t = Trace.from_arrays(layers, [0], {"grad_rms": np.ones((1, 3))})
    ranked = rank_remedies(FINDINGS, trace=t)
    assert [r.remedy for r in ranked if not r.applicable] == ["lstm"]  # no RNN recorded
    for incl in (False, True):
        got = prescribe(FINDINGS, trace=t, include_inapplicable=incl)
        want = [r for r in ranked if incl or r.applicable]
        assert [(p.remedy, p.score, p.applicable, p.why_not, p.rules) for p in got] == [
            (r.remedy, r.score, r.applicable, r.why_not, r.rules) for r in want
        ]


def test_rejects_what_is_not_a_finding() -> None:
    with pytest.raises(TypeError, match="Finding"):
        rank_remedies([{"rule": "x"}])  # type: ignore[list-item]
