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
    ("first_logged", "rates", "length"),
    [
        (0, [1e-3, 1e-3, 1e-3], 0),
        (0, [0.96e-3, 1e-3, 1e-3], 0),
        (0, [0.25e-3, 0.5e-3, 1e-3], 100),
        (10, [1e-3, 1e-3, 1e-3], 0),
        (11, [1e-3, 1e-3, 1e-3], None),
        (500, [1e-3, 1e-3, 1e-3], None),
    ],
)
def test_the_warm_up_length_is_known_only_from_the_start(
    first_logged: int, rates: list[float], length: int | None
) -> None:
    """Steps until the rate reached 95% of its peak (0: none). A trainer's own log of the
    rate that starts at its logging interval (HF: step 500) comes after most warm-ups, so
    more than 10 steps in, whether the run warmed up is unknown."""
    from gradwatch.diagnosis.rates import started_cold, warm_up_length

    infos = [LayerInfo("fc", "Linear", 0, 64, {"weight": [8, 8]})]
    steps = np.arange(0, 1000, 50)
    logged = np.array([first_logged, first_logged + 50, first_logged + 100])
    t = Trace.from_arrays(
        infos, steps, {"grad_rms": np.ones((len(steps), 1))},
        scalars={"learning_rate": np.array(rates)}, scalar_steps=logged,
    )  # fmt: skip
    assert warm_up_length(t) == length
    assert started_cold(t) is (None if length is None else length == 0)


@pytest.mark.parametrize(
    ("norms", "in_branch", "fits"), [(2, 4, False), (1, 4, True), (2, 2, True)]
)
def test_a_norm_does_not_fit_a_normalised_residual_net(
    norms: int, in_branch: int, fits: bool
) -> None:
    """batchnorm/layernorm are ruled out for a residual net with a norm layer per two
    branches (every transformer and ResNet block has one); a residual net without norms
    (a ResNet with BatchNorm removed) or a plain stack keeps them."""
    from gradwatch.diagnosis.ranking import layer_table_applicability

    infos = [
        LayerInfo(
            f"h.{i}.fc", "Linear", i, 16 * 16, {"weight": [16, 16]},
            branch=f"h.{i}" if i < in_branch else None,
        )
        for i in range(6)
    ] + [LayerInfo(f"h.{i}.ln", "LayerNorm", 6 + i, 32, {"weight": [16]}) for i in range(norms)]  # fmt: skip
    t = Trace.from_arrays(infos, [0], {"grad_rms": np.ones((1, len(infos)))})
    for remedy in ("batchnorm", "layernorm"):
        ok, why = layer_table_applicability(t, remedy)
        assert ok == fits
        if not fits:
            assert why == (
                "the recorded model is a normalised residual net already: 2 normalisation "
                "layers beside its 4 residual branches"
            )


@pytest.mark.parametrize(
    ("acts", "fits"),
    [(("NewGELUActivation", "gelu"), False), (("GELU", "Tanh"), True), (("GELU", None), False)],
)
def test_relu_is_ruled_out_when_no_recorded_activation_saturates(
    acts: tuple[str | None, ...], fits: bool
) -> None:
    """A GPT-2 (HF's GELU module and a functional gelu) is not offered relu: its activations
    do not saturate; a tanh among them keeps it. Layers with no activation do not count."""
    from gradwatch.diagnosis.ranking import layer_table_applicability

    infos = [
        LayerInfo(f"fc{i}", "Linear", i, 16 * 16, {"weight": [16, 16]}, activation=a)
        for i, a in enumerate(acts)
    ]
    t = Trace.from_arrays(infos, [0], {"grad_rms": np.ones((1, len(infos)))})
    ok, why = layer_table_applicability(t, "relu")
    assert ok == fits
    if not fits:
        assert why is not None and "do not saturate: a ReLU would pass no more gradient" in why


def test_a_residual_net_without_square_layers_is_told_it_has_residual_connections() -> None:
    """nn.TransformerEncoder records no square Linear (linear1 is 64 -> 256, attention is a
    MultiheadAttention layer): residual is ruled out because the model has skip connections,
    the reason that holds, not for want of a square layer."""
    from gradwatch.diagnosis.ranking import layer_table_applicability

    infos = [
        LayerInfo(f"blocks.{i}.linear1", "Linear", i, 64 * 256, {"weight": [256, 64]},
                  branch=f"blocks.{i}")
        for i in range(3)
    ]  # fmt: skip
    t = Trace.from_arrays(infos, [0], {"grad_rms": np.ones((1, 3))})
    assert layer_table_applicability(t, "residual") == (
        False,
        "the recorded model has residual connections already: 3 of its 3 weight layers sit in "
        "a residual branch",
    )
    ok, why = layer_table_applicability(t, "reduce_depth")
    assert not ok and why is not None and "Linear(d, d)" in why
