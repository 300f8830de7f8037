"""Run summaries and the plain-words verdict, against naive recomputation from the trace."""

from __future__ import annotations

import math

import numpy as np

from gradwatch.diagnosis import Finding, RemedyHint
from gradwatch.report.summary import summarize, verdict
from gradwatch.trace import Trace

from .conftest import make_trace


def test_summary_numbers_match_the_trace() -> None:
    """Final and best loss, and the first/last-layer gradient ratio at the last step."""
    t = make_trace(n_layers=5, n_steps=40)
    s = summarize(t, None, "r")
    loss = t.scalar("loss").tolist()
    last = t.matrix("grad_rms")[-1].tolist()
    assert s.final_loss == loss[-1] and s.best_loss == min(loss)
    assert s.grad_span == last[0] / last[-1] and s.span_step == 39
    assert (s.n_layers, s.n_steps, s.last_step, s.diagnosed) == (5, 40, 39, False)


def test_summary_skips_steps_where_first_or_last_layer_is_missing() -> None:
    """The span comes from the last step where both end layers were measured."""
    m = np.array([[1e-3, 1.0], [np.nan, 1.0]])
    s = summarize(Trace.from_arrays(["a", "b"], [0, 1], {"grad_rms": m}), [], "r")
    assert s.grad_span == 1e-3 and s.span_step == 0
    assert s.final_loss is None and s.counts == {} and s.diagnosed


def test_verdict_quantifies_the_fall_in_orders_of_magnitude() -> None:
    """A 1e-4 span reads as a fall of 4.0 orders of magnitude; worst finding comes first."""
    m = np.array([[1e-4, 1e-2, 1.0]])
    t = Trace.from_arrays(["a", "b", "c"], [7], {"grad_rms": m})
    f_warn = Finding("dead_units", "warning", ("b",), None, {}, "Half the units are dead.")
    f_crit = Finding(
        "vanishing_gradient",
        "critical",
        ("a",),
        None,
        {},
        "Layer a gets no gradient.",
        (RemedyHint("residual", "skips carry the gradient"),),
    )
    lines = verdict(summarize(t, [f_warn, f_crit], "r"), [f_warn, f_crit])
    assert lines[0] == "Critical problem — Layer a gets no gradient. (1 more finding below.)"
    assert lines[1] == "First thing to try: residual (skips carry the gradient)."
    decades = -math.log10(1e-4)
    assert f"a fall of {decades:.1f} orders of magnitude" in lines[2]
    assert "At step 7, the first layer's gradient RMS is 0.0001 × the last layer's" in lines[2]


def test_verdict_for_even_flow_says_so() -> None:
    """Within a factor of 10 the verdict says gradients flow evenly."""
    t = Trace.from_arrays(["a", "b"], [0], {"grad_rms": [[0.5, 1.0]]})
    lines = verdict(summarize(t, [], "r"), [])
    assert lines[0] == "No problem found: the diagnosis rules all stayed quiet."
    assert "flow evenly" in lines[1]


def test_summary_span_is_the_traces_one_first_last_ratio() -> None:
    """grad_span and span_step are Trace.grad_ratio("last"): its value and its step."""
    m = np.array([[1e-3, 5e-2, 1.0], [2e-4, np.nan, 0.5], [np.nan, 1e-2, 1.0]])
    t = Trace.from_arrays(["a", "b", "c"], [0, 10, 20], {"grad_rms": m})
    s, r = summarize(t, None, "r"), t.grad_ratio("last")
    assert (s.grad_span, s.span_step) == (r.value, r.steps[0] if r.steps else None)
    assert (s.grad_span, s.span_step) == (2e-4 / 0.5, 10)  # step 20 lacks the first layer


def test_summary_span_is_none_when_not_measurable() -> None:
    """One layer, or no step with both end layers measured: no span, no step."""
    one = Trace.from_arrays(["a"], [0], {"grad_rms": [[1.0]]})
    holes = Trace.from_arrays(["a", "b"], [0, 1], {"grad_rms": [[np.nan, 1.0], [1.0, 0.0]]})
    for t in (one, holes):
        s = summarize(t, None, "r")
        assert (s.grad_span, s.span_step) == (None, None)
