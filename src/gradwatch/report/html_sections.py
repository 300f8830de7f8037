"""The sections of the HTML report: each run's plots, findings and details as a view model.

:mod:`gradwatch.report.html` normalises the arguments and renders the page; this module
turns one run (a trace, its findings) into what the template shows: drawn plots as base64
PNGs with how to read them, finding views, tables of configuration and layers, and the
comparison plots of several runs.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from gradwatch.diagnosis import SEVERITY_RANK, Finding
from gradwatch.diagnosis.ranking import fitting_hints
from gradwatch.trace import Trace

from . import plots
from ._style import FIGSIZE, figure_to_png
from .figures._common import has_data
from .figures.activation_health import HEALTH_METRICS
from .summary import RemedyChoice, RunSummary, recording_cost, summarize, verdict

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "HOW_TO_READ",
    "IMAGE_SIZE",
    "MAX_RECURRENT_PLOTS",
    "Predicted",
    "RunView",
    "comparison",
    "run_view",
]

Predicted = float | Sequence[float] | np.ndarray

#: How to read each plot, shown under it in the report (and in docs/report.md).
HOW_TO_READ: dict[str, str] = {
    "loss": (
        "The training loss per step (thick line: moving average). A long flat stretch at the "
        "start often means the early layers receive too little gradient to learn; spikes and ✕ "
        "marks (non-finite values) mean unstable updates. The dashed line is the optimizer's "
        "learning rate (right axis), when the run recorded one: a loss that flattens as the "
        "rate decays has used up its schedule, not lost its gradient."
    ),
    "flow": (
        "Gradient RMS of each layer's parameters, input side on the left, at a few moments of "
        "training (dark = early, light = late). Flat lines are healthy. Lines that fall by "
        "orders of magnitude towards layer 0 are vanishing gradients; rising lines exploding."
    ),
    "heat_grad": (
        "The same gradient RMS for every layer (rows) and step (columns), log colour scale. "
        "Dark rows near the input side that stay dark mean those layers never get a usable "
        "gradient. Hatched cells were not measured, black cells are exactly zero, vermillion "
        "cells infinite."
    ),
    "heat_update": (
        "How much each optimizer step changes each layer relative to its size, ‖Δθ‖/‖θ‖, on the "
        "sampled steps. Around 1e-3 is a common healthy rate; far below means the layer is "
        "frozen in practice, above 1e-1 means the updates are unstable."
    ),
    "gain": (
        "The gradient norm reaching each layer's output, ‖∂L/∂h‖; the gradient flows right to "
        "left. A steady slope means every layer multiplies it by about the same gain below (or "
        "above) 1, as a saturating activation does; the shaded pair of layers is where it drops "
        "most, and when that drop stands out, the place to add a skip connection or "
        "normalisation."
    ),
    "health": (
        "Fraction of units that are saturated (sigmoid/tanh in their flat tails, derivative "
        "≈ 0) or dead (ReLU never active), per layer, at the first and last sampled step. "
        "Such units pass almost no gradient back."
    ),
    "stats": (
        "Mean and spread (± one standard deviation) of each layer's output. A spread shrinking "
        "to zero with depth means the forward signal dies; a growing one means it explodes. "
        "Both come with the same fate for the gradient."
    ),
    "memory": (
        "For a recurrent layer: the gradient reaching each input position, by its distance "
        "from the last input (log scale). A straight fall is exponential forgetting; the dotted "
        "line is the memory horizon, beyond which inputs get under 1/1000 of the gradient the "
        "last input gets and so barely influence learning."
    ),
    "theory": (
        "Gradient size along depth predicted by mean-field theory (dashed) against the measured "
        "one, both scaled to 1 at the deepest layer. The same slope means the theory explains "
        "what you see; then its remedies (initialisation, activation) apply directly."
    ),
    "compare_flow": (
        "Each run's gradient RMS along depth at its last measured step. The flattest line is "
        "the run whose first layers still receive a gradient comparable to its last ones."
    ),
    "compare_loss": (
        "The runs' training losses on one axis: which one leaves the plateau first and which "
        "ends lowest."
    ),
}


#: Recurrent layers drawn per run; the page says when a run has more.
MAX_RECURRENT_PLOTS = 4


@dataclass
class _Plot:
    key: str  # which plot (HOW_TO_READ key); data-plot attribute in the page
    title: str
    how: str
    png_b64: str = ""
    error: str = ""
    anchor: str = ""  # unique element id, set once the plot's place in the page is known


@dataclass
class RunView:
    """Everything the template shows of one run (strings escaped by the template)."""

    label: str
    anchor: str
    summary: RunSummary
    verdict: list[str]
    findings: list[dict[str, Any]] | None
    plots: list[_Plot]
    layers: list[dict[str, Any]]
    config: list[tuple[str, str]]
    versions: list[tuple[str, str]]
    model: list[tuple[str, str]]
    other_meta: list[tuple[str, str]]
    where: str
    severity: str
    notes: list[str] = field(default_factory=list)  # shown above the plots


# ---------------------------------------------------------------------- plots
#: Plots are drawn at 1.5x the figures' 100 dpi, so they stay sharp when the page scales
#: them to its width (up to 1125 px); the page's <img> sizes come from here.
REPORT_DPI = 150
IMAGE_SIZE: tuple[int, int] = (
    round(FIGSIZE[0] * REPORT_DPI),
    round(FIGSIZE[1] * REPORT_DPI),
)


def _png(fig: Figure) -> str:
    return base64.b64encode(figure_to_png(fig, dpi=REPORT_DPI)).decode("ascii")


def _has_loss(trace: Trace) -> bool:
    return trace.has_scalar("loss") and bool(np.any(np.isfinite(trace.scalar("loss"))))


def _draw(key: str, title: str, make: Callable[[], Figure]) -> _Plot:
    plot = _Plot(key, title, HOW_TO_READ[key])
    try:
        plot.png_b64 = _png(make())
    except ValueError as exc:
        # The plot functions raise ValueError exactly when the trace lacks what they draw.
        plot.error = str(exc)
    return plot


def _run_plots(trace: Trace, predicted: Predicted | None) -> list[_Plot]:
    out: list[_Plot] = []
    if _has_loss(trace):
        out.append(_draw("loss", "Training loss", lambda: plots.plot_loss(trace)))
    if has_data(trace, "grad_rms"):
        out.append(_draw("flow", "Gradient flow", lambda: plots.plot_gradient_flow(trace)))
        out.append(
            _draw("heat_grad", "Gradient RMS, layers × steps", lambda: plots.plot_heatmap(trace))
        )
    if has_data(trace, "update_ratio"):
        out.append(
            _draw(
                "heat_update",
                "Update ratio, layers × steps",
                lambda: plots.plot_heatmap(trace, "update_ratio"),
            )
        )
    if has_data(trace, "out_grad_norm"):
        out.append(_draw("gain", "Backward gain", lambda: plots.plot_backward_gain(trace)))
    if any(has_data(trace, m) for m in HEALTH_METRICS):
        out.append(
            _draw(
                "health",
                "Saturated and dead units, variation between inputs",
                lambda: plots.plot_activation_health(trace),
            )
        )
    if has_data(trace, "act_mean") and has_data(trace, "act_std"):
        out.append(
            _draw("stats", "Activation distribution", lambda: plots.plot_activation_stats(trace))
        )
    for name in trace.recurrent_layers[:MAX_RECURRENT_PLOTS]:
        out.append(
            _draw(
                "memory",
                f"Recurrent memory: {name}",
                lambda name=name: plots.plot_recurrent_memory(trace, name),  # type: ignore[misc]
            )
        )
    if predicted is not None and has_data(trace, "grad_rms"):
        out.append(
            _draw(
                "theory",
                "Theory vs measurement",
                lambda: plots.plot_theory_overlay(trace, predicted),
            )
        )
    return out


# ---------------------------------------------------------------------- view model
def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, default=str, sort_keys=True)
    return str(value)


def _meta_value(key: str, value: Any) -> Any:
    """Readable metadata: the ``created`` Unix time as an ISO date (not 1.796e+09)."""
    if key == "created" and isinstance(value, (int, float)):
        import datetime

        when = datetime.datetime.fromtimestamp(value, tz=datetime.timezone.utc)
        return when.strftime("%Y-%m-%d %H:%M:%S UTC")
    return value


def _pairs(d: Mapping[str, Any]) -> list[tuple[str, str]]:
    return [(str(k), _fmt(v)) for k, v in d.items()]


def _finding_view(f: Finding, trace: Trace) -> dict[str, Any]:
    return {
        "rule": f.rule,
        "severity": f.severity,
        "message": f.message,
        "layers": ", ".join(
            f.shown_layers if f.layer_labels else [trace.layer_label(s) for s in f.layers]
        ),
        "steps": f"{f.steps[0]} – {f.steps[1]}" if f.steps is not None else "whole run",
        "evidence": _pairs(f.evidence),
        "remedies": [(r.id, r.reason) for r in fitting_hints(f, trace)],
    }


def _activation_notes(trace: Trace) -> list[str]:
    """What the recorder could not recognise: the weight layers followed by no activation it
    knows (by class, probe or torch.fx), so their units get no saturation or dead-unit check."""
    info = trace.meta.get("activations")
    missing = info.get("unrecognised") if isinstance(info, dict) else None
    if not missing:
        return []
    known = set(trace.layer_names)
    shown = [trace.layer_label(n) for n in missing[:8] if n in known]
    more = f" and {len(missing) - len(shown)} more" if len(missing) > len(shown) else ""
    return [
        f"No activation was recognised after {len(missing)} weight layer(s): "
        f"{', '.join(shown)}{more}. Output heads, attention projections and layers added into "
        "a residual stream have none; any other layer's units get no saturation or dead-unit "
        "statistics (see docs/recording.md, activations)."
    ]


def run_view(
    i: int,
    trace: Trace,
    label: str,
    findings: list[Finding] | None,
    predicted: Predicted | None,
    *,
    advice: tuple[Sequence[RemedyChoice] | None, Mapping[str, str] | None] = (None, None),
) -> RunView:
    """The view of run number ``i`` (0-based; its anchor is ``run-<i+1>``): verdict,
    findings, drawn plots and details. ``advice`` is the caller's ranked remedies and the
    remedies it measured as failing (see ``write_report``)."""
    summary = summarize(trace, findings, label)
    ranked = (
        sorted(findings, key=lambda f: -SEVERITY_RANK.get(f.severity, 0))
        if findings is not None
        else None
    )
    meta = trace.meta
    skip = {"layers", "format_version", "config", "versions", "model"}
    anchor = f"run-{i + 1}"
    run_plots = _run_plots(trace, predicted)
    for k, p in enumerate(run_plots):
        p.anchor = f"{anchor}-{p.key}-{k}"
    notes = []
    if len(trace.recurrent_layers) > MAX_RECURRENT_PLOTS:
        notes.append(
            f"Memory plots are drawn for the first {MAX_RECURRENT_PLOTS} of "
            f"{len(trace.recurrent_layers)} recurrent layers; plot the others with "
            "gradwatch.report.plots.plot_recurrent_memory(trace, layer)."
        )
    notes.extend(_activation_notes(trace))
    if (cost := recording_cost(trace)) is not None:
        notes.append(cost[0].upper() + cost[1:] + ".")
    worst = ranked[0].severity if ranked else ("ok" if ranked is not None else "unknown")
    if worst == "ok" and summary.notes:
        worst = "info"  # no rule fired, but the loop needs a look: not the all-clear green
    return RunView(
        label=label,
        anchor=anchor,
        summary=summary,
        verdict=verdict(summary, ranked, remedies=advice[0], failed=advice[1]),
        findings=[_finding_view(f, trace) for f in ranked] if ranked is not None else None,
        plots=run_plots,
        layers=[
            {
                "label": layer.label,
                "type": layer.type,
                "params": f"{layer.num_params:,}",
                "activation": layer.activation or "",
                "recurrent": "yes" if layer.recurrent else "",
                "role": layer.role,
            }
            for layer in trace.layers
        ],
        config=_pairs(trace.config),
        versions=_pairs(meta.get("versions", {}) or {}),
        model=_pairs(meta.get("model", {}) or {}),
        other_meta=_pairs({k: _meta_value(k, v) for k, v in meta.items() if k not in skip}),
        where=str(trace.run_dir) if trace.run_dir is not None else "(in memory)",
        severity=worst,
        notes=notes,
    )


def comparison(traces: Sequence[Trace], labels: Sequence[str]) -> list[_Plot]:
    """The comparison plots of several runs (gradient flow, loss), anchored in the page."""
    out: list[_Plot] = []
    with_flow = [i for i, t in enumerate(traces) if has_data(t, "grad_rms")]
    if len(with_flow) >= 2:
        out.append(
            _draw(
                "compare_flow",
                "Gradient flow, all runs",
                lambda: plots.plot_compare_flow(
                    [traces[i] for i in with_flow], [labels[i] for i in with_flow]
                ),
            )
        )
    with_loss = [i for i, t in enumerate(traces) if _has_loss(t)]
    if len(with_loss) >= 2:
        out.append(
            _draw(
                "compare_loss",
                "Training loss, all runs",
                lambda: plots.plot_compare_loss(
                    [traces[i] for i in with_loss], [labels[i] for i in with_loss]
                ),
            )
        )
    return _anchored(out, "compare")


def _anchored(items: list[_Plot], prefix: str) -> list[_Plot]:
    for k, p in enumerate(items):
        p.anchor = f"{prefix}-{p.key}-{k}"
    return items
