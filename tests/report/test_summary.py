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
