"""Run summaries and the plain-words verdict, against naive recomputation from the trace."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from gradwatch.diagnosis import Finding, RemedyHint
from gradwatch.remedies import prescribe
from gradwatch.report.summary import recording_cost, summarize, verdict
from gradwatch.trace import LayerInfo, Trace

from .conftest import make_trace


def _square_layers(n: int, width: int = 8, act: str = "Tanh") -> list[LayerInfo]:
    """``n`` Linear(width, width) layers: a layer table where a residual block fits."""
    return [
        LayerInfo(f"fc{i}", "Linear", i, width * width, {"weight": [width, width]}, act)
        for i in range(n)
    ]


def test_summary_numbers_match_the_trace() -> None:
    """Final and best loss, and the first/last-layer gradient ratio: its median over steps."""
    t = make_trace(n_layers=5, n_steps=40)
    s = summarize(t, None, "r")
    loss = t.scalar("loss").tolist()
    rms = t.matrix("grad_rms")
    assert s.final_loss == loss[-1] and s.best_loss == min(loss)
    assert s.grad_span == float(np.median(rms[:, 0] / rms[:, -1])) and s.span_step == 39
    assert s.span_label == "median over steps 0-39"
    assert (s.n_layers, s.n_steps, s.last_step, s.diagnosed) == (5, 40, 39, False)


def test_summary_skips_steps_where_first_or_last_layer_is_missing() -> None:
    """The span comes from the steps where both end layers were measured, labelled."""
    m = np.array([[1e-3, 1.0], [np.nan, 1.0]])
    s = summarize(Trace.from_arrays(["a", "b"], [0, 1], {"grad_rms": m}), [], "r")
    assert s.grad_span == 1e-3 and s.span_step == 0 and s.span_label == "at step 0"
    assert s.final_loss is None and s.counts == {} and s.diagnosed


def test_verdict_quantifies_the_fall_in_orders_of_magnitude() -> None:
    """A 1e-4 span over 4 hidden layers reads as a fall of 4.0 orders of magnitude, from the
    fitted trend; the worst finding comes first, then gw.prescribe's first remedy."""
    m = np.array([[1e-4, 10 ** (-8 / 3), 10 ** (-4 / 3), 1.0, 0.5]])
    t = Trace.from_arrays(_square_layers(5), [7], {"grad_rms": m})
    f_warn = Finding("dead_units", "warning", ("fc1",), None, {}, "Half the units are dead.")
    f_crit = Finding(
        "vanishing_gradient",
        "critical",
        ("fc0",),
        None,
        {},
        "Layer a gets no gradient.",
        (RemedyHint("residual", "skips carry the gradient"),),
    )
    lines = verdict(summarize(t, [f_warn, f_crit], "r"), [f_warn, f_crit])
    assert lines[0] == "Critical problem — Layer a gets no gradient. (1 more finding below.)"
    assert prescribe([f_warn, f_crit], trace=t)[0].remedy == "residual"
    assert lines[1] == "First thing to try: residual (skips carry the gradient)."
    assert lines[2].startswith("The gradient vanishes toward the input: over the 4 hidden ")
    assert "(L0 fc0 … L3 fc3)" in lines[2] and "(4.0 orders of magnitude)" in lines[2]
    assert "at step 7" in lines[2]
    assert lines[3] == "First/last layer gradient RMS ratio: 0.0002 (at step 7, 5 layers)."


def test_verdict_for_even_flow_says_so() -> None:
    """Within a factor of 10 the verdict says gradients flow evenly."""
    t = Trace.from_arrays(["a", "b"], [0], {"grad_rms": [[0.5, 1.0]]})
    lines = verdict(summarize(t, [], "r"), [])
    assert lines[0] == "No problem found: the diagnosis rules all stayed quiet."
    assert "flow evenly" in lines[1]


def test_a_rise_through_hidden_layers_is_not_even_flow() -> None:
    """Issue 12: a 14-layer tanh net whose gradient RMS rises 30x from the last hidden layer
    back to the first, while the first layer and the output layer are alike, is not reported
    as even flow: the verdict uses the fitted trend over the 13 hidden layers."""
    rng = np.random.default_rng(0)
    hidden = 30.0 ** np.linspace(1, 0, 13)  # first hidden layer 30x the last hidden one
    per_step = np.append(hidden, 30.0)[None, :] * np.exp(rng.normal(0, 0.05, (50, 14)))
    t = Trace.from_arrays(_square_layers(14), range(50), {"grad_rms": per_step})
    s = summarize(t, [], "r")
    assert s.grad_span is not None and abs(math.log10(s.grad_span)) < 0.2  # ends look alike
    lines = verdict(s, [])
    assert not any("evenly" in line for line in lines)
    flow = next(line for line in lines if line.startswith("The gradient grows toward the input"))
    # reference: np.polyfit of log10 RMS against depth over the hidden layers, per step
    fits = [np.polyfit(np.arange(13), np.log10(r[:13]), 1)[0] * 12 for r in per_step]
    factor = 10 ** -float(np.median(fits))
    assert 25 < factor < 36
    assert f"rises {factor:.2g}×" in flow and "over the 13 hidden weight layers" in flow
    assert "(L0 fc0 … L12 fc12)" in flow and "median over steps 0-49" in flow


def test_first_remedy_is_the_prescribe_ranking_without_what_failed() -> None:
    """The default first remedy is gw.prescribe's first (layer table checks); a caller's
    ranking replaces it; a remedy measured as failing is never first, and is named."""
    t = Trace.from_arrays(_square_layers(4), range(3), {"grad_rms": np.ones((3, 4))})
    f = Finding(
        "vanishing_gradient",
        "critical",
        ("fc0",),
        None,
        {},
        "m",
        (RemedyHint("relu", "no tails"), RemedyHint("residual", "skips"), RemedyHint("lstm", "x")),
    )
    s = summarize(t, [f], "r")
    ranked = [p.remedy for p in prescribe([f], trace=t)]
    assert ranked == ["relu", "residual"]  # lstm: no RNN in the layer table
    assert [r.remedy for r in s.remedies if r.applicable] == ranked
    assert verdict(s, [f])[1] == "First thing to try: relu (no tails)."
    lines = verdict(s, [f], failed={"relu": "vanishing_gradient still critical"})
    assert lines[1] == "First thing to try: residual (skips)."
    assert lines[2] == (
        "Not first, as measured in the compared runs: relu: vanishing_gradient still critical."
    )
    given = prescribe([f], trace=t)[1:]
    assert verdict(s, [f], remedies=given)[1] == "First thing to try: residual (skips)."


def test_summary_span_is_the_traces_one_first_last_ratio() -> None:
    """grad_span is Trace.grad_ratio("median"): its value, its last step and its label."""
    m = np.array([[1e-3, 5e-2, 1.0], [2e-4, np.nan, 0.5], [np.nan, 1e-2, 1.0]])
    t = Trace.from_arrays(["a", "b", "c"], [0, 10, 20], {"grad_rms": m})
    s, r = summarize(t, None, "r"), t.grad_ratio("median")
    assert r.steps is not None and (s.grad_span, s.span_label) == (r.value, r.label)
    assert s.grad_span == np.median([1e-3, 2e-4 / 0.5]) and s.span_step == 10
    assert s.span_label == "median over steps 0-10"  # step 20 lacks the first layer


def test_summary_span_is_none_when_not_measurable() -> None:
    """One layer, or no step with both end layers measured: no span, no step."""
    one = Trace.from_arrays(["a"], [0], {"grad_rms": [[1.0]]})
    holes = Trace.from_arrays(["a", "b"], [0, 1], {"grad_rms": [[np.nan, 1.0], [1.0, 0.0]]})
    for t in (one, holes):
        s = summarize(t, None, "r")
        assert (s.grad_span, s.span_step, s.span_label) == (None, None, None)


def _with_config(config: dict[str, object]) -> Trace:
    return Trace.from_arrays(["a"], [0], {"grad_rms": [[1.0]]}, meta={"config": config})


def test_recording_cost_line_quotes_the_measured_share_budget_and_spacing() -> None:
    """The report's cost line: measured share, budget, sampled and (if thinned) plain spacing."""
    schedule = {"sample_spacing": 40, "record_spacing": 1, "measured_share": 0.0213}
    line = recording_cost(_with_config({"overhead": 0.03, "schedule": schedule}))
    assert line == "recording cost 2.1% of step time (budget 3%), sampled every 40 steps"
    thinned = {**schedule, "record_spacing": 4, "measured_share": 0.2}
    line = recording_cost(_with_config({"overhead": 0.03, "schedule": thinned}))
    assert line is not None and line.endswith(
        "sampled every 40 steps, gradient statistics every 4 steps"
    )
    assert "20%" in line
    costed = {**schedule, "cost_ms": {"sampled": 9.55, "user_step": 34.91, "plain": 1.4}}
    line = recording_cost(_with_config({"overhead": 0.03, "schedule": costed}))
    assert line is not None and line.endswith("; a sampled step adds 9.55 ms to a 34.9 ms step")
    # What a sampled step made the model's own forward and backward take longer is part of it.
    costed["cost_ms"] = {**costed["cost_ms"], "sampled_indirect": 2.034}
    line = recording_cost(_with_config({"overhead": 0.03, "schedule": costed}))
    assert line is not None and line.endswith(
        "adds 9.55 ms to a 34.9 ms step (2 ms of it in the model's own forward and backward)"
    )


def test_recording_cost_is_silent_for_fixed_spacing_and_says_when_not_measured() -> None:
    """overhead=None (or an old run): no line; a run inside its dense start: not measured."""
    assert recording_cost(_with_config({"overhead": None})) is None
    assert recording_cost(_with_config({})) is None
    early = {"sample_spacing": 10, "record_spacing": 1, "measured_share": None}
    line = recording_cost(_with_config({"overhead": 0.05, "dense_steps": 20, "schedule": early}))
    assert line is not None and "not measured" in line and "budget 5%" in line


def test_recording_cost_of_a_recorded_run_matches_its_config(tmp_path: Path) -> None:
    """A real run under the default budget: the line quotes its own config's numbers, and the
    HTML report shows it."""
    import torch
    from torch import nn

    import gradwatch as gw

    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with gw.watch(model, opt) as w:
        for _ in range(30):
            opt.zero_grad()
            model(torch.randn(8, 4)).pow(2).mean().backward()
            opt.step()
    trace = w.trace
    share = trace.config["schedule"]["measured_share"]
    line = recording_cost(trace)
    assert line is not None and f"{100 * share:.2g}% of step time (budget 3%)" in line
    assert f"sampled every {trace.config['schedule']['sample_spacing']} steps" in line
    from gradwatch.report import write_report

    out = write_report(trace, tmp_path / "r.html", findings=[])
    assert "Recording cost " in out.read_text()
