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


def _blocks_trace(in_branch: int, total: int = 6) -> Trace:
    """``total`` square Linear layers, the first ``in_branch`` inside residual branches."""
    infos = [
        LayerInfo(
            f"h.{i}.mlp.fc",
            "Linear",
            i,
            16 * 16,
            shapes={"weight": [16, 16]},
            branch=f"h.{i}.mlp" if i < in_branch else None,
        )
        for i in range(total)
    ]
    return Trace.from_arrays(infos, [0], {"grad_rms": np.ones((1, total))})


@pytest.mark.parametrize(("in_branch", "fits"), [(4, False), (3, True), (0, True)])
def test_residual_does_not_fit_a_model_whose_layers_sit_in_residual_branches(
    in_branch: int, fits: bool
) -> None:
    """Most weight layers inside a residual branch (a transformer, a ResNet): the model has
    residual connections already, so the ranking, the verdict and the findings as shown leave
    residual out; half or fewer: it still fits."""
    from gradwatch.diagnosis.ranking import fitting_hints, layer_table_applicability

    trace = _blocks_trace(in_branch)
    ok, why = layer_table_applicability(trace, "residual")
    assert ok == fits
    if not fits:
        assert why == (
            "the recorded model has residual connections already: 4 of its 6 weight layers "
            "sit in a residual branch"
        )
    ranked = {r.remedy: r.applicable for r in rank_remedies(FINDINGS, trace=trace)}
    assert ranked["residual"] == fits
    hints = [h.id for h in fitting_hints(FINDINGS[0], trace)]  # (no RNN layer: no lstm)
    assert hints == (["residual", "relu"] if fits else ["relu"])
    assert [h.id for h in fitting_hints(FINDINGS[0], None)] == ["residual", "relu", "lstm"]


def test_printed_findings_leave_out_what_the_layer_table_rules_out() -> None:
    """print_findings with the trace shows the hints that fit (the CLI passes it)."""
    import io

    from rich.console import Console

    from gradwatch.report.console import print_findings

    out = io.StringIO()
    print_findings(FINDINGS[:1], Console(file=out, width=200), trace=_blocks_trace(6))
    assert "1. relu" in out.getvalue() and "residual" not in out.getvalue()
    out = io.StringIO()
    print_findings(FINDINGS[:1], Console(file=out, width=200))
    assert "1. residual" in out.getvalue()


@pytest.mark.parametrize(
    ("first_rate", "fits"), [(1e-3, True), (0.96e-3, True), (0.5e-3, False), (None, True)]
)
def test_a_warm_up_does_not_fit_a_run_that_warmed_up(first_rate: float | None, fits: bool) -> None:
    """lr_warmup is ruled out when the recorded rate rose over the first steps (the first
    step below 95% of the peak); a run that started at its peak, or recorded no rate, keeps
    it."""
    from gradwatch.diagnosis.ranking import layer_table_applicability

    infos = [LayerInfo(f"fc{i}", "Linear", i, 64, {"weight": [8, 8]}) for i in range(2)]
    scalars = {} if first_rate is None else {"optimizer_lr": np.array([first_rate, 1e-3, 1e-3])}
    t = Trace.from_arrays(infos, [0, 1, 2], {"grad_rms": np.ones((3, 2))}, scalars=scalars)
    ok, why = layer_table_applicability(t, "lr_warmup")
    assert ok == fits
    if not fits:
        assert why is not None and "warmed up already" in why


def test_a_rate_first_known_late_says_nothing_about_a_warm_up() -> None:
    """A trainer's own log of the rate that starts at its logging interval (HF: step 500)
    comes after most warm-ups: whether the run warmed up is unknown, so lr_warmup is not
    ruled out and no rule calls the start cold."""
    from gradwatch.diagnosis._common import started_cold

    infos = [LayerInfo("fc", "Linear", 0, 64, {"weight": [8, 8]})]
    steps = np.arange(0, 1000, 50)
    for first, cold in ((500, None), (10, True), (11, None)):
        logged = np.append(first, steps[steps > first])
        t = Trace.from_arrays(
            infos, steps, {"grad_rms": np.ones((len(steps), 1))},
            scalars={"learning_rate": np.full(len(logged), 1e-3)}, scalar_steps=logged,
        )  # fmt: skip
        assert started_cold(t) is cold, first
