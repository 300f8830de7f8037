"""Property tests: no rule crashes on any trace shape or content, and findings stay well-formed."""

from __future__ import annotations

import json
import warnings

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from gradwatch.diagnosis import REMEDY_IDS, RULE_IDS, SEVERITY_RANK, diagnose
from gradwatch.trace import LAYER_METRICS, LayerInfo, Trace

# Values a recorder could write, and some it should not: NaN (missing), +-inf, 0, huge, tiny.
_values = st.one_of(
    st.just(np.nan),
    st.just(np.inf),
    st.just(-np.inf),
    st.just(0.0),
    st.floats(min_value=-1e30, max_value=1e30, allow_nan=False),
    st.floats(min_value=1e-30, max_value=1e-5),
)
_activations = st.sampled_from([None, "ReLU", "Sigmoid", "Tanh", "LeakyReLU", "GELU", "SELU"])
_types = st.sampled_from(["Linear", "Conv2d", "LayerNorm", "Embedding", "RNN", "LSTM"])


@st.composite
def traces(draw: st.DrawFn) -> Trace:
    n_layers = draw(st.integers(0, 5))
    n_steps = draw(st.integers(0, 25))
    infos = []
    for i in range(n_layers):
        typ = draw(_types)
        shapes = draw(
            st.sampled_from([{}, {"weight": [4, 3]}, {"weight": [4, 3, 3, 3]}, {"weight": [0, 3]}])
        )
        infos.append(
            LayerInfo(
                f"l{i}",
                typ,
                i,
                12,
                shapes=shapes,
                activation=draw(_activations),
                recurrent=typ in ("RNN", "LSTM"),
            )
        )
    metrics = {}
    for name in draw(st.lists(st.sampled_from(LAYER_METRICS), unique=True)):
        metrics[name] = draw(arrays(np.float64, (n_steps, n_layers), elements=_values))
    scalars = {}
    for name in draw(
        st.lists(st.sampled_from(["loss", "global_grad_norm", "skipped", "clip_coef"]), unique=True)
    ):
        scalars[name] = draw(arrays(np.float64, (n_steps,), elements=_values))
    recurrent: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    last_position: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if n_layers and draw(st.booleans()):
        r_steps = draw(st.integers(0, 6))
        length = draw(st.integers(0, 12))
        # The whole-loss profile, and sometimes a late-position one (short_memory reads both).
        for profiles in (recurrent, last_position) if draw(st.booleans()) else (recurrent,):
            profiles[infos[0].name] = (
                np.arange(r_steps),
                draw(arrays(np.float64, (r_steps, length), elements=_values)),
            )
    return Trace.from_arrays(
        infos,
        np.arange(n_steps),
        metrics,
        scalars=scalars,
        recurrent=recurrent,
        last_position=last_position,
    )


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(traces())
def test_diagnose_never_crashes_and_findings_are_well_formed(trace: Trace) -> None:
    """Any trace (0-5 layers, 0-25 steps, NaN/inf anywhere, metrics missing) diagnoses cleanly."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy warnings leaking out of a rule are bugs too
        findings = diagnose(trace)
    ranks = [(-SEVERITY_RANK[f.severity], RULE_IDS.index(f.rule)) for f in findings]
    assert ranks == sorted(ranks)
    assert len({f.rule for f in findings}) == len(findings)
    for f in findings:
        assert f.rule in RULE_IDS
        assert f.message and f.message.endswith(".")
        assert all(r.id in REMEDY_IDS for r in f.remedies)
        assert set(f.layers) <= set(trace.layer_names)
        # Plain JSON: no NaN/inf, no numpy scalars.
        json.dumps(f.to_json(), allow_nan=False)


def test_all_missing_trace_is_quiet() -> None:
    """A trace whose every metric is NaN (nothing measured) has no finding."""
    n_steps, n_layers = 30, 4
    metrics = {m: np.full((n_steps, n_layers), np.nan) for m in LAYER_METRICS}
    scalars = {s: np.full(n_steps, np.nan) for s in ("loss", "global_grad_norm", "skipped")}
    trace = Trace.from_arrays(
        [f"l{i}" for i in range(n_layers)], range(n_steps), metrics, scalars=scalars
    )
    assert diagnose(trace) == []


def test_zero_step_and_zero_layer_traces_are_quiet() -> None:
    """Empty traces (no steps, or no layers) give no finding rather than an error."""
    assert diagnose(Trace.from_arrays([], [], {})) == []
    assert diagnose(Trace.from_arrays(["a", "b"], [], {"grad_rms": np.zeros((0, 2))})) == []
    assert diagnose(Trace.from_arrays([], range(5), {"grad_rms": np.zeros((5, 0))})) == []
