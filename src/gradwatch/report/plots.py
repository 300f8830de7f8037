"""Plots of a trace: pure functions ``Trace -> matplotlib Figure``.

Each ``plot_*`` function has a ``*_data`` twin that computes exactly the arrays it draws
(as a small frozen dataclass); the figure keeps them on ``fig.gradwatch_data``, so what a
plot shows can be checked against the trace without looking at pixels. Figures are made
with :class:`matplotlib.figure.Figure` directly (no pyplot global state), so they are safe
in threads, servers and notebooks alike.

Example:
    >>> import numpy as np
    >>> from gradwatch.trace import Trace
    >>> from gradwatch.report import plots
    >>> t = Trace.from_arrays(["a", "b", "c"], steps=[0, 1],
    ...                       metrics={"grad_rms": [[1e-4, 1e-2, 1.0], [1e-3, 1e-2, 1.0]]})
    >>> fig = plots.plot_gradient_flow(t)
    >>> fig.gradwatch_data.values.shape
    (2, 3)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from gradwatch.trace import Trace

from ._style import (
    DASHES,
    MARKERS,
    OKABE_ITO,
    attach,
    layer_ticks,
    moment_colours,
    new_figure,
    set_title,
    text,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "ActivationHealthData",
    "ActivationStatsData",
    "BackwardGainData",
    "CompareFlowData",
    "CompareLossData",
    "GradientFlowData",
    "HeatmapData",
    "LossData",
    "RecurrentMemoryData",
    "TheoryOverlayData",
    "activation_health_data",
    "activation_stats_data",
    "backward_gain_data",
    "chi1_profile",
    "compare_flow_data",
    "compare_loss_data",
    "gradient_flow_data",
    "heatmap_data",
    "loss_data",
    "plot_activation_health",
    "plot_activation_stats",
    "plot_backward_gain",
    "plot_compare_flow",
    "plot_compare_loss",
    "plot_gradient_flow",
    "plot_heatmap",
    "plot_loss",
    "plot_recurrent_memory",
    "plot_theory_overlay",
    "recurrent_memory_data",
    "theory_overlay_data",
]

#: Axis labels with units, per metric (what a user reads on the axis).
METRIC_LABELS: dict[str, str] = {
    "grad_rms": "gradient RMS  ‖∂L/∂θ‖/√n\n(loss units per parameter unit)",
    "grad_norm": "gradient norm  ‖∂L/∂θ‖\n(loss units per parameter unit)",
    "grad_max": "largest |∂L/∂θ|\n(loss units per parameter unit)",
    "weight_norm": "weight norm  ‖θ‖  (parameter units)",
    "update_ratio": "update ratio  ‖Δθ‖/‖θ‖\n(dimensionless)",
    "out_grad_norm": "‖∂L/∂h‖ at the layer's output\n(loss units per activation unit)",
    "nonfinite": "non-finite gradient entries  (count)",
}


# ---------------------------------------------------------------------- helpers
def _rows_with_data(trace: Trace, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Steps and rows of ``metric`` where at least one layer has a finite value."""
    mat = trace.matrix(metric)
    keep = np.any(np.isfinite(mat), axis=1) if mat.size else np.zeros(len(mat), bool)
    return trace.steps[keep], mat[keep]


def _require_rows(trace: Trace, metric: str) -> tuple[np.ndarray, np.ndarray]:
    if not trace.has_metric(metric):
        raise ValueError(
            f"this trace has no metric {metric!r} (it has {trace.metrics}); record it, or pick "
            "a plot for a metric the trace holds."
        )
    steps, rows = _rows_with_data(trace, metric)
    if len(steps) == 0:
        raise ValueError(
            f"metric {metric!r} was never measured in this trace (all values missing). Sampled "
            "metrics exist only every `sample_every` steps: record more steps than that."
        )
    return steps, rows


def _pick(n_rows: int, n: int) -> np.ndarray:
    """Up to ``n`` row indices spread evenly from the first row to the last."""
    if n < 1:
        raise ValueError(f"Expected argument `moments` to be at least 1 but got {n}.")
    return np.unique(np.round(np.linspace(0, n_rows - 1, min(n, n_rows))).astype(np.int64))


def _select_steps(
    steps: np.ndarray, rows: np.ndarray, which: Sequence[int] | None, moments: int, metric: str
) -> tuple[np.ndarray, np.ndarray]:
    if which is None:
        idx = _pick(len(steps), moments)
    else:
        idx_list = []
        for s in which:
            hit = np.flatnonzero(steps == int(s))
            if len(hit) == 0:
                raise ValueError(
                    f"step {s} has no measured {metric!r}; {len(steps)} measured steps run from "
                    f"{steps[0]} to {steps[-1]}, e.g. {steps[: min(5, len(steps))].tolist()}."
                )
            idx_list.append(int(hit[0]))
        idx = np.asarray(idx_list, dtype=np.int64)
    return steps[idx], rows[idx]


def _positive(values: np.ndarray) -> np.ndarray:
    """Values for a log axis: non-positive and non-finite become NaN (not drawn)."""
    out = np.array(values, dtype=np.float64, copy=True)
    out[~(np.isfinite(out) & (out > 0))] = np.nan
    return out


def _geomean_rows(rows: np.ndarray) -> np.ndarray:
    """Geometric mean over steps per layer, of the positive finite values only."""
    import warnings

    logs = np.log(_positive(rows))
    with warnings.catch_warnings():
        # "Mean of empty slice": a layer never measured stays NaN, on purpose.
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.exp(np.nanmean(logs, axis=0))


# ---------------------------------------------------------------------- gradient flow
@dataclass(frozen=True)
class GradientFlowData:
    """Per-layer values of a gradient metric at a few steps.

    Attributes:
        metric: The trace metric drawn (``grad_rms`` by default).
        layers: Layer names in depth order (x axis).
        steps: The steps drawn, shape ``(k,)``.
        values: ``(k, layers)`` raw values from the trace at those steps.
    """

    metric: str
    layers: list[str]
    steps: np.ndarray
    values: np.ndarray


def gradient_flow_data(
    trace: Trace,
    *,
    metric: str = "grad_rms",
    steps: Sequence[int] | None = None,
    moments: int = 4,
) -> GradientFlowData:
    """The data of :func:`plot_gradient_flow`: ``metric`` per layer at a few steps.

    Args:
        trace: The run.
        metric: A per-layer gradient metric (``grad_rms``, ``grad_norm``, ``out_grad_norm`` ...).
        steps: Steps to draw; by default ``moments`` steps spread evenly over the measured
            ones, first and last included.
        moments: How many steps to pick when ``steps`` is not given.

    Raises:
        ValueError: When the metric is absent or never measured, or a step was not measured.
    """
    all_steps, rows = _require_rows(trace, metric)
    sel_steps, sel_rows = _select_steps(all_steps, rows, steps, moments, metric)
    return GradientFlowData(metric, trace.layer_names, sel_steps, sel_rows)


def plot_gradient_flow(
    trace: Trace,
    *,
    metric: str = "grad_rms",
    steps: Sequence[int] | None = None,
    moments: int = 4,
) -> Figure:
    """Gradient flow: a gradient metric along depth (log scale) at several moments of training.

    A healthy network shows roughly flat lines; lines falling by orders of magnitude towards
    layer 0 mean vanishing gradients, rising lines mean exploding ones. Layers whose gradient
    is exactly zero are drawn as downward triangles on the bottom edge, infinite ones as
    upward triangles on the top edge.

    Example:
        >>> fig = plot_gradient_flow(trace)  # doctest: +SKIP
        >>> fig.savefig("flow.png")  # doctest: +SKIP
    """
    data = gradient_flow_data(trace, metric=metric, steps=steps, moments=moments)
    fig, ax = new_figure()
    x = np.arange(len(data.layers))
    colours = moment_colours(len(data.steps))
    for i, (step, row) in enumerate(zip(data.steps, data.values, strict=True)):
        ax.plot(
            x,
            _positive(row),
            color=colours[i],
            marker=MARKERS[i % len(MARKERS)],
            markersize=4,
            linestyle=DASHES[i % len(DASHES)],
            label=f"step {int(step)}",
        )
        # Values a log axis cannot show still matter most: mark them on the frame.
        for where, edge, marker in ((row == 0, 0.0, "v"), (np.isposinf(row), 1.0, "^")):
            hits = np.flatnonzero(where)
            if len(hits):
                ax.plot(
                    hits,
                    np.full(len(hits), edge),
                    linestyle="none",
                    marker=marker,
                    color=colours[i],
                    clip_on=False,
                    transform=ax.get_xaxis_transform(),
                )
    ax.set_yscale("log")
    ax.set_xlabel("layer (forward order; 0 = input side)")
    ax.set_ylabel(METRIC_LABELS.get(metric, metric))
    layer_ticks(ax, data.layers)
    ax.legend(fontsize=8, title="training step", title_fontsize=8)
    set_title(
        ax,
        f"Gradient flow ({metric}) along depth",
        "Look for: lines falling by decades towards layer 0 (vanishing) or rising (exploding)",
    )
    return attach(fig, data)


# ---------------------------------------------------------------------- heatmaps
@dataclass(frozen=True)
class HeatmapData:
    """A layers x steps matrix of one metric.

    Attributes:
        metric: The trace metric.
        layers: Layer names (rows, depth order).
        steps: Steps drawn (columns): the measured ones, thinned evenly to ``max_steps``.
        values: ``(layers, steps)`` raw values (NaN = not measured).
    """

    metric: str
    layers: list[str]
    steps: np.ndarray
    values: np.ndarray


def heatmap_data(trace: Trace, metric: str = "grad_rms", *, max_steps: int = 600) -> HeatmapData:
    """The data of :func:`plot_heatmap`: ``metric`` as a layers x steps matrix.

    Only steps where the metric was measured are kept (sampled metrics such as
    ``update_ratio`` exist every ``sample_every`` steps); beyond ``max_steps`` columns, every
    k-th measured step is kept, first and last included, so big runs stay quick to draw.
    """
    if max_steps < 2:
        raise ValueError(f"Expected argument `max_steps` to be at least 2 but got {max_steps}.")
    steps, rows = _require_rows(trace, metric)
    idx = _pick(len(steps), max_steps)
    return HeatmapData(metric, trace.layer_names, steps[idx], rows[idx].T.copy())


def _edges(centres: np.ndarray) -> np.ndarray:
    """Cell edges around sorted centres (midpoints; half a gap beyond each end)."""
    c = centres.astype(np.float64)
    if len(c) == 1:
        return np.array([c[0] - 0.5, c[0] + 0.5])
    mid = (c[1:] + c[:-1]) / 2
    return np.concatenate([[c[0] - (mid[0] - c[0])], mid, [c[-1] + (c[-1] - mid[-1])]])


def plot_heatmap(trace: Trace, metric: str = "grad_rms", *, max_steps: int = 600) -> Figure:
    """Layers x steps heatmap of ``metric`` on a log colour scale.

    Hatched cells were not measured (missing values are never shown as 0); black cells are
    exactly zero, vermillion cells infinite.

    Example:
        >>> fig = plot_heatmap(trace, "update_ratio")  # doctest: +SKIP
    """
    from matplotlib import colormaps
    from matplotlib.colors import LogNorm
    from matplotlib.patches import Patch

    data = heatmap_data(trace, metric, max_steps=max_steps)
    vals = data.values
    pos = vals[np.isfinite(vals) & (vals > 0)]
    vmin, vmax = (float(pos.min()), float(pos.max())) if pos.size else (1e-12, 1.0)
    if vmax <= vmin:
        vmin, vmax = vmin / 10, vmax * 10
    shown = np.array(vals, copy=True)
    shown[shown == 0] = vmin / 10  # below vmin -> the "under" colour, black
    shown[np.isposinf(shown)] = vmax * 10  # above vmax -> the "over" colour, vermillion
    shown[np.isnan(shown) | (shown < 0)] = np.nan  # negatives cannot be on a log scale
    cmap = colormaps["viridis"].with_extremes(bad=(0, 0, 0, 0), under="black", over=OKABE_ITO[1])
    fig, ax = new_figure()
    ax.grid(False)
    ax.patch.set_facecolor("#f2f2f2")
    ax.patch.set_hatch("////")
    ax.patch.set_edgecolor("#b0b0b0")
    mesh = ax.pcolormesh(
        _edges(data.steps),
        _edges(np.arange(len(data.layers))),
        np.ma.masked_invalid(shown),
        cmap=cmap,
        norm=LogNorm(vmin=vmin, vmax=vmax),
        shading="flat",
    )
    has_zero, has_inf = bool(np.any(vals == 0)), bool(np.any(np.isposinf(vals)))
    extend = {(True, True): "both", (True, False): "min", (False, True): "max"}.get(
        (has_zero, has_inf), "neither"
    )
    cbar = fig.colorbar(mesh, ax=ax, extend=extend)
    cbar.set_label(METRIC_LABELS.get(metric, metric), fontsize=9)
    ax.set_xlabel("training step")
    ax.set_ylabel("layer (0 = input side)")
    layer_ticks(ax, data.layers, axis="y")
    handles = []
    if np.any(np.isnan(vals)):
        handles.append(
            Patch(facecolor="#f2f2f2", edgecolor="#b0b0b0", hatch="////", label="not measured")
        )
    if has_zero:
        handles.append(Patch(facecolor="black", label="exactly 0"))
    if has_inf:
        handles.append(Patch(facecolor=OKABE_ITO[1], label="infinite"))
    if handles:
        ax.legend(handles=handles, fontsize=7, loc="upper right", framealpha=0.9)
    look = {
        "update_ratio": "Look for: rows far below 1e-3 (not learning) or above 1e-1 (unstable)",
    }.get(metric, "Look for: dark bands at the bottom (vanishing) or bright bands (exploding)")
    set_title(ax, f"{metric} per layer over training (log colour scale)", look)
    return attach(fig, data)


# ---------------------------------------------------------------------- backward gain
@dataclass(frozen=True)
class BackwardGainData:
    """‖∂L/∂h‖ per layer output at a few steps, and where it drops most.

    Attributes:
        layers: Layer names in depth order.
        steps: Steps drawn, shape ``(k,)``.
        values: ``(k, layers)`` ``out_grad_norm`` at those steps.
        profile: Geometric mean over all measured steps, per layer (positive values only).
        drop_layer: Index ``l`` of the layer whose output gradient is smallest relative to
            layer ``l + 1`` (the gradient fell most passing back from ``l + 1`` to ``l``), or
            ``None`` when the gradient never falls between consecutive layers.
        drop_factor: ``profile[l] / profile[l + 1]`` at ``drop_layer`` (< 1), or ``None``.
        median_gain: Median of ``profile[l] / profile[l + 1]`` over consecutive pairs: the
            typical per-layer gain of the backward pass (NaN with fewer than 2 layers).
        stands_out: Whether the largest drop is at least 3x steeper than the median gain.
            When it is not, the gradient fades steadily (every layer shrinks it about
            equally) and no single layer is to blame.
    """

    layers: list[str]
    steps: np.ndarray
    values: np.ndarray
    profile: np.ndarray
    drop_layer: int | None
    drop_factor: float | None
    median_gain: float
    stands_out: bool


def backward_gain_data(
    trace: Trace, *, steps: Sequence[int] | None = None, moments: int = 3
) -> BackwardGainData:
    """The data of :func:`plot_backward_gain` (metric ``out_grad_norm``, sampled steps)."""
    all_steps, rows = _require_rows(trace, "out_grad_norm")
    sel_steps, sel_rows = _select_steps(all_steps, rows, steps, moments, "out_grad_norm")
    profile = _geomean_rows(rows)
    ratios = profile[:-1] / profile[1:]  # ratios[l] = profile[l] / profile[l+1]
    drop_layer: int | None = None
    drop_factor: float | None = None
    median_gain = float("nan")
    stands_out = False
    if np.any(np.isfinite(ratios)):
        median_gain = float(np.nanmedian(ratios))
        l_min = int(np.nanargmin(ratios))
        if ratios[l_min] < 1:
            drop_layer, drop_factor = l_min, float(ratios[l_min])
            # 3x = about half a decade steeper than a typical layer: visible on a log axis.
            stands_out = drop_factor * 3 <= median_gain
    return BackwardGainData(
        trace.layer_names,
        sel_steps,
        sel_rows,
        profile,
        drop_layer,
        drop_factor,
        median_gain,
        stands_out,
    )


def plot_backward_gain(
    trace: Trace, *, steps: Sequence[int] | None = None, moments: int = 3
) -> Figure:
    """Backward gain profile: ‖∂L/∂h‖ at each layer's output, the layer where it dies marked.

    The shaded band marks the consecutive pair of layers across which the back-propagated
    signal shrinks most (averaged over the measured steps).

    Example:
        >>> fig = plot_backward_gain(trace)  # doctest: +SKIP
    """
    data = backward_gain_data(trace, steps=steps, moments=moments)
    fig, ax = new_figure()
    x = np.arange(len(data.layers))
    colours = moment_colours(len(data.steps))
    for i, (step, row) in enumerate(zip(data.steps, data.values, strict=True)):
        ax.plot(
            x,
            _positive(row),
            color=colours[i],
            marker=MARKERS[i % len(MARKERS)],
            markersize=4,
            linestyle=DASHES[i % len(DASHES)],
            label=f"step {int(step)}",
        )
    ax.plot(x, data.profile, color="#000000", linewidth=1.0, alpha=0.6, label="geometric mean")
    if data.drop_layer is not None and data.drop_factor is not None:
        lo = data.drop_layer
        ax.axvspan(lo, lo + 1, color=OKABE_ITO[1], alpha=0.18, linewidth=0)
        note = f"largest drop ×{data.drop_factor:.2g}\n(layer {lo + 1} → {lo})"
        if not data.stands_out:
            note = (
                f"steady fall, ×{data.median_gain:.2g} per layer\n(largest: layer {lo + 1} → {lo})"
            )
        ax.annotate(
            note,
            xy=(lo + 0.5, 0.04),
            xycoords=("data", "axes fraction"),
            ha="center",
            va="bottom",
            fontsize=8,
            color=OKABE_ITO[1],
            bbox={"boxstyle": "round", "facecolor": "white", "edgecolor": "none", "alpha": 0.8},
        )
    ax.set_yscale("log")
    ax.set_xlabel("layer (forward order; gradient flows right → left)")
    ax.set_ylabel(METRIC_LABELS["out_grad_norm"])
    layer_ticks(ax, data.layers)
    ax.legend(fontsize=8)
    set_title(
        ax,
        "Backward gain: gradient reaching each layer's output",
        "Look for: the shaded pair where the signal falls most; a steady slope = gain < 1",
    )
    return attach(fig, data)


# ---------------------------------------------------------------------- activations
@dataclass(frozen=True)
class ActivationHealthData:
    """Saturated and dead-unit fractions per layer at two steps.

    Attributes:
        layers: Layer names in depth order.
        steps: ``(first, last)`` measured steps (the same step twice when only one exists).
        saturated: ``(2, layers)`` ``act_saturated`` at those steps (NaN if not recorded).
        dead: ``(2, layers)`` ``act_dead`` at those steps (NaN if not recorded).
    """

    layers: list[str]
    steps: np.ndarray
    saturated: np.ndarray
    dead: np.ndarray


def _first_last(trace: Trace, metrics: Sequence[str], step: int | None) -> np.ndarray:
    """The first measured step and ``step`` (default: last) over the union of ``metrics``."""
    present = [m for m in metrics if trace.has_metric(m)]
    if not present:
        raise ValueError(
            f"this trace has none of the metrics {list(metrics)} (it has {trace.metrics}); they "
            "are recorded on sampled steps."
        )
    measured = np.unique(np.concatenate([_rows_with_data(trace, m)[0] for m in present]))
    if len(measured) == 0:
        raise ValueError(f"the metrics {present} were never measured in this trace.")
    last = measured[-1] if step is None else int(step)
    if last not in measured:
        raise ValueError(
            f"step {step} has no measured {present}; measured steps: "
            f"{measured[: min(8, len(measured))].tolist()}..."
        )
    return np.array([measured[0], last], dtype=np.int64)


def _rows_at(trace: Trace, metric: str, steps: np.ndarray) -> np.ndarray:
    out = np.full((len(steps), len(trace.layers)), np.nan)
    if trace.has_metric(metric):
        mat = trace.matrix(metric)
        for i, s in enumerate(steps):
            hit = np.flatnonzero(trace.steps == s)
            if len(hit):
                out[i] = mat[hit[0]]
    return out


def activation_health_data(trace: Trace, *, step: int | None = None) -> ActivationHealthData:
    """The data of :func:`plot_activation_health` at the first measured step and ``step``."""
    steps = _first_last(trace, ("act_saturated", "act_dead"), step)
    return ActivationHealthData(
        trace.layer_names,
        steps,
        _rows_at(trace, "act_saturated", steps),
        _rows_at(trace, "act_dead", steps),
    )


def plot_activation_health(trace: Trace, *, step: int | None = None) -> Figure:
    """Fraction of saturated and of dead units per layer, first measured step vs ``step``.

    Example:
        >>> fig = plot_activation_health(trace)  # doctest: +SKIP
    """
    data = activation_health_data(trace, step=step)
    fig, ax = new_figure()
    x = np.arange(len(data.layers))
    for j, (name, vals, colour, marker) in enumerate(
        (
            ("saturated", data.saturated, OKABE_ITO[1], "o"),
            ("dead", data.dead, OKABE_ITO[0], "s"),
        )
    ):
        if np.all(np.isnan(vals)):
            continue
        for k, (alpha, dash) in enumerate(((0.55, ":"), (1.0, "-" if j == 0 else "--"))):
            if k == 0 and data.steps[0] == data.steps[1]:
                continue
            ax.plot(
                x,
                vals[k],
                color=colour,
                alpha=alpha,
                linestyle=dash,
                marker=marker,
                markersize=4,
                label=f"{name}, step {int(data.steps[k])}",
            )
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("layer (forward order; 0 = input side)")
    ax.set_ylabel("fraction of units  (0 to 1)")
    layer_ticks(ax, data.layers)
    ax.legend(fontsize=8)
    set_title(
        ax,
        "Activation health: saturated and dead units per layer",
        "Look for: layers where most units saturate (flat sigmoid/tanh) or never fire (ReLU)",
    )
    return attach(fig, data)


@dataclass(frozen=True)
class ActivationStatsData:
    """Activation mean and standard deviation per layer at two steps.

    Attributes:
        layers: Layer names in depth order.
        steps: ``(first, last)`` measured steps.
        mean: ``(2, layers)`` ``act_mean``.
        std: ``(2, layers)`` ``act_std``.
    """

    layers: list[str]
    steps: np.ndarray
    mean: np.ndarray
    std: np.ndarray


def activation_stats_data(trace: Trace, *, step: int | None = None) -> ActivationStatsData:
    """The data of :func:`plot_activation_stats` at the first measured step and ``step``."""
    steps = _first_last(trace, ("act_mean", "act_std"), step)
    return ActivationStatsData(
        trace.layer_names,
        steps,
        _rows_at(trace, "act_mean", steps),
        _rows_at(trace, "act_std", steps),
    )


def plot_activation_stats(trace: Trace, *, step: int | None = None) -> Figure:
    """Activation distribution per layer: mean (line) and mean ± std (band), two steps.

    Example:
        >>> fig = plot_activation_stats(trace)  # doctest: +SKIP
    """
    data = activation_stats_data(trace, step=step)
    fig, ax = new_figure()
    x = np.arange(len(data.layers))
    picks = [0, 1] if data.steps[0] != data.steps[1] else [1]
    for k in picks:
        colour = OKABE_ITO[2] if k == 0 else OKABE_ITO[0]
        ax.plot(
            x,
            data.mean[k],
            color=colour,
            marker=MARKERS[k],
            markersize=4,
            linestyle=DASHES[k],
            label=f"mean, step {int(data.steps[k])}",
        )
        ax.fill_between(
            x,
            data.mean[k] - data.std[k],
            data.mean[k] + data.std[k],
            color=colour,
            alpha=0.18,
            linewidth=0,
            label=f"mean ± std, step {int(data.steps[k])}",
        )
    ax.set_xlabel("layer (forward order; 0 = input side)")
    ax.set_ylabel("activation value  (layer output units)")
    layer_ticks(ax, data.layers)
    ax.legend(fontsize=8)
    set_title(
        ax,
        "Activation distribution per layer (mean ± std of the layer's output)",
        "Look for: the band shrinking to 0 with depth (signal dies) or widening (signal explodes)",
    )
    return attach(fig, data)


# ---------------------------------------------------------------------- recurrent memory
@dataclass(frozen=True)
class RecurrentMemoryData:
    """Gradient reaching each input position of a recurrent layer, by distance to the loss.

    Attributes:
        layer: The recurrent layer.
        distance: ``0 .. T-1``; distance 0 is the last input (closest to the loss).
        steps: Training steps drawn, shape ``(k,)``.
        values: ``(k, T)`` ``‖∂L/∂x_t‖`` ordered by distance (``values[:, d]`` is input
            ``T - 1 - d``).
        threshold: Relative level that defines the horizon.
        horizons: Per drawn step, the first distance where the gradient is below
            ``threshold`` times the gradient at distance 0, or ``None`` when it never is
            within the sequence.
    """

    layer: str
    distance: np.ndarray
    steps: np.ndarray
    values: np.ndarray
    threshold: float
    horizons: list[int | None]


def _horizon(row: np.ndarray, threshold: float) -> int | None:
    g0 = row[0]
    if not (np.isfinite(g0) and g0 > 0):
        return None
    below = np.flatnonzero(np.isfinite(row) & (row < threshold * g0))
    return int(below[0]) if len(below) else None


def recurrent_memory_data(
    trace: Trace,
    layer: str | None = None,
    *,
    threshold: float = 1e-3,
    steps: Sequence[int] | None = None,
    moments: int = 3,
) -> RecurrentMemoryData:
    """The data of :func:`plot_recurrent_memory`.

    Args:
        trace: The run.
        layer: A recurrent layer name; the first one recorded by default.
        threshold: The memory horizon is the first distance where the gradient falls below
            ``threshold`` times the gradient reaching the last input (1e-3 by default: three
            orders of magnitude, beyond which an input's influence on learning is negligible).
        steps: Training steps to draw; by default ``moments`` spread over the measured ones.
        moments: How many steps to pick when ``steps`` is not given.
    """
    if not 0 < threshold < 1:
        raise ValueError(f"Expected argument `threshold` in (0, 1) but got {threshold}.")
    if layer is None:
        if not trace.recurrent_layers:
            raise ValueError(
                "this trace has no recurrent input-gradient profile; it is recorded for "
                "nn.RNN/LSTM/GRU layers on sampled steps."
            )
        layer = trace.recurrent_layers[0]
    prof = trace.input_grad_profile(layer)
    keep = np.any(np.isfinite(prof.values), axis=1)
    if not np.any(keep):
        raise ValueError(f"the input-gradient profile of {layer!r} holds no measured value.")
    all_steps, rows = prof.steps[keep], prof.values[keep][:, ::-1]
    sel_steps, sel_rows = _select_steps(all_steps, rows, steps, moments, f"profile of {layer}")
    horizons = [_horizon(r, threshold) for r in sel_rows]
    return RecurrentMemoryData(
        layer,
        np.arange(rows.shape[1]),
        sel_steps,
        np.ascontiguousarray(sel_rows),
        threshold,
        horizons,
    )


def plot_recurrent_memory(
    trace: Trace,
    layer: str | None = None,
    *,
    threshold: float = 1e-3,
    steps: Sequence[int] | None = None,
    moments: int = 3,
) -> Figure:
    """Gradient reaching each input step vs its distance to the loss (log scale).

    The dotted vertical line is the memory horizon at the last drawn step: inputs further
    back than it receive less than ``threshold`` of the gradient the last input gets.

    Example:
        >>> fig = plot_recurrent_memory(trace, "rnn")  # doctest: +SKIP
    """
    data = recurrent_memory_data(trace, layer, threshold=threshold, steps=steps, moments=moments)
    fig, ax = new_figure()
    colours = moment_colours(len(data.steps))
    for i, (step, row) in enumerate(zip(data.steps, data.values, strict=True)):
        ax.plot(
            data.distance,
            _positive(row),
            color=colours[i],
            marker=MARKERS[i % len(MARKERS)],
            markersize=3,
            linestyle=DASHES[i % len(DASHES)],
            label=f"step {int(step)}",
        )
    last_row, horizon = data.values[-1], data.horizons[-1]
    if np.isfinite(last_row[0]) and last_row[0] > 0:
        ax.axhline(
            data.threshold * last_row[0],
            color="#777777",
            linewidth=0.8,
            linestyle="--",
            label=f"{data.threshold:g} × gradient at distance 0",
        )
    if horizon is not None:
        ax.axvline(
            horizon,
            color=OKABE_ITO[1],
            linestyle=":",
            linewidth=1.5,
            label=f"memory horizon: {horizon} steps",
        )
    ax.set_yscale("log")
    ax.set_xlabel("distance to the loss  (input time steps back from the last)")
    ax.set_ylabel("‖∂L/∂x_t‖  (loss units per input unit)", fontsize=9)
    ax.legend(fontsize=8)
    set_title(
        ax,
        f"Recurrent memory of {text(data.layer) or '(root)'}: gradient reaching each input",
        "Look for: a straight fall here = exponential forgetting; the horizon = usable memory",
    )
    return attach(fig, data)


# ---------------------------------------------------------------------- loss
@dataclass(frozen=True)
class LossData:
    """A scalar curve with its moving average.

    Attributes:
        name: The scalar (``loss`` by default).
        steps: Scalar steps with a finite value.
        values: The finite values.
        smooth_steps: Steps of the moving average (its window's last step).
        smooth: Trailing mean over ``window`` finite values (empty when ``window`` is 1).
        window: Moving-average window (``len(values) // 50`` when over 100 values, else 1).
        nonfinite_steps: Steps where the value was inf, and the trailing NaN steps when the
            scalar was logged at every step before them (training blew up and stayed NaN).
        log_scale: Whether the y axis is logarithmic (all values > 0 and spanning > 10×).
    """

    name: str
    steps: np.ndarray
    values: np.ndarray
    smooth_steps: np.ndarray
    smooth: np.ndarray
    window: int
    nonfinite_steps: np.ndarray
    log_scale: bool


def loss_data(trace: Trace, name: str = "loss") -> LossData:
    """The data of :func:`plot_loss`.

    Raises:
        ValueError: When the trace has no such scalar (log it with ``w.log(loss=loss)``).
    """
    if not trace.has_scalar(name):
        raise ValueError(
            f"this trace has no scalar {name!r} (it has {trace.scalar_names}); log it with "
            f"`w.log({name}=...)` inside the training loop."
        )
    all_steps, vals = trace.scalar_steps, trace.scalar(name)
    finite = np.isfinite(vals)
    steps, values = all_steps[finite], vals[finite]
    # A NaN in a scalar column is either "not logged at this step" (scalars logged at
    # different cadences share one step axis) or a logged NaN. Count NaNs as a blow-up only
    # when they run to the end of the run after a stretch logged at every step (the usual
    # "loss became NaN and stayed NaN"); inf always counts.
    bad = np.isinf(vals)
    nan = np.isnan(vals)
    first_nan = int(np.argmax(nan)) if nan.any() else len(vals)
    if 0 < first_nan < len(vals) and nan[first_nan:].all():
        bad[first_nan:] = True
    nonfinite_steps = all_steps[bad]
    window = len(values) // 50 if len(values) > 100 else 1
    if window > 1:
        smooth = np.convolve(values, np.ones(window) / window, mode="valid")
        smooth_steps = steps[window - 1 :]
    else:
        smooth, smooth_steps = np.zeros(0), np.zeros(0, dtype=np.int64)
    log_scale = bool(len(values) and values.min() > 0 and values.max() > 10 * values.min())
    return LossData(name, steps, values, smooth_steps, smooth, window, nonfinite_steps, log_scale)


def plot_loss(trace: Trace, name: str = "loss") -> Figure:
    """Loss curve (raw and moving average); steps with a non-finite loss marked on top.

    Example:
        >>> fig = plot_loss(trace)  # doctest: +SKIP
    """
    data = loss_data(trace, name)
    fig, ax = new_figure()
    raw_alpha = 0.35 if data.window > 1 else 1.0
    ax.plot(data.steps, data.values, color=OKABE_ITO[0], alpha=raw_alpha, linewidth=1, label=name)
    if data.window > 1:
        ax.plot(
            data.smooth_steps,
            data.smooth,
            color=OKABE_ITO[0],
            linewidth=2,
            label=f"moving average ({data.window} steps)",
        )
    if len(data.nonfinite_steps):
        ax.plot(
            data.nonfinite_steps,
            np.ones(len(data.nonfinite_steps)),
            linestyle="none",
            marker="x",
            color=OKABE_ITO[1],
            transform=ax.get_xaxis_transform(),
            clip_on=False,
            label="non-finite value",
        )
    if data.log_scale:
        ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel(f"{text(name)}  (loss units)")
    ax.legend(fontsize=8)
    set_title(
        ax,
        f"Training curve: {text(name)}",
        "Look for: a long flat stretch (stalled learning) or spikes and ✕ marks (instability)",
    )
    return attach(fig, data)


# ---------------------------------------------------------------------- several runs
@dataclass(frozen=True)
class CompareFlowData:
    """One gradient-flow profile per run.

    Attributes:
        metric: The metric compared.
        labels: Run labels.
        steps: The step each profile was taken at (the run's last measured step by default).
        profiles: One array per run, over its own layers (runs may differ in depth).
    """

    metric: str
    labels: list[str]
    steps: list[int]
    profiles: list[np.ndarray]


def _labels(traces: Sequence[Trace], labels: Sequence[str] | None) -> list[str]:
    if len(traces) == 0:
        raise ValueError("Expected argument `traces` to hold at least one Trace but it is empty.")
    if labels is None:
        return [
            t.run_dir.name if t.run_dir is not None else f"run {i + 1}"
            for i, t in enumerate(traces)
        ]
    if len(labels) != len(traces):
        raise ValueError(
            f"Expected one label per trace but got {len(labels)} labels for {len(traces)} traces."
        )
    return [str(s) for s in labels]


def compare_flow_data(
    traces: Sequence[Trace],
    labels: Sequence[str] | None = None,
    *,
    metric: str = "grad_rms",
    at: str = "last",
) -> CompareFlowData:
    """The data of :func:`plot_compare_flow`.

    Args:
        traces: The runs to compare.
        labels: One label per run; the run directories' names by default.
        metric: The per-layer gradient metric.
        at: ``"last"`` (each run's last measured step) or ``"first"``.
    """
    if at not in ("first", "last"):
        raise ValueError(f"Expected argument `at` to be 'first' or 'last' but got {at!r}.")
    names = _labels(traces, labels)
    steps, profiles = [], []
    for t in traces:
        s, rows = _require_rows(t, metric)
        i = 0 if at == "first" else -1
        steps.append(int(s[i]))
        profiles.append(rows[i].copy())
    return CompareFlowData(metric, names, steps, profiles)


def plot_compare_flow(
    traces: Sequence[Trace],
    labels: Sequence[str] | None = None,
    *,
    metric: str = "grad_rms",
    at: str = "last",
) -> Figure:
    """Gradient flow of several runs overlaid (e.g. a model and its remedies).

    Example:
        >>> fig = plot_compare_flow([base, residual], ["baseline", "residual"])  # doctest: +SKIP
    """
    data = compare_flow_data(traces, labels, metric=metric, at=at)
    fig, ax = new_figure()
    for i, (label, step, prof) in enumerate(
        zip(data.labels, data.steps, data.profiles, strict=True)
    ):
        ax.plot(
            np.arange(len(prof)),
            _positive(prof),
            color=OKABE_ITO[i % len(OKABE_ITO)],
            marker=MARKERS[i % len(MARKERS)],
            markersize=4,
            linestyle=DASHES[i % len(DASHES)],
            label=f"{text(label)} (step {step})",
        )
    ax.set_yscale("log")
    ax.set_xlabel("layer (forward order; 0 = input side)")
    ax.set_ylabel(METRIC_LABELS.get(metric, metric))
    ax.legend(fontsize=8)
    set_title(
        ax,
        f"Gradient flow compared across runs ({metric}, {at} measured step)",
        "Look for: the flattest line: that run passes the gradient back to its first layers best",
    )
    return attach(fig, data)


@dataclass(frozen=True)
class CompareLossData:
    """One loss curve per run (finite values only)."""

    name: str
    labels: list[str]
    steps: list[np.ndarray]
    values: list[np.ndarray]
    log_scale: bool


def compare_loss_data(
    traces: Sequence[Trace], labels: Sequence[str] | None = None, *, name: str = "loss"
) -> CompareLossData:
    """The data of :func:`plot_compare_loss`."""
    names = _labels(traces, labels)
    curves = [loss_data(t, name) for t in traces]
    allv = np.concatenate([c.values for c in curves]) if curves else np.zeros(0)
    log_scale = bool(len(allv) and allv.min() > 0 and allv.max() > 10 * allv.min())
    return CompareLossData(
        name, names, [c.steps for c in curves], [c.values for c in curves], log_scale
    )


def plot_compare_loss(
    traces: Sequence[Trace], labels: Sequence[str] | None = None, *, name: str = "loss"
) -> Figure:
    """Loss curves of several runs on one axis.

    Example:
        >>> fig = plot_compare_loss([base, residual], ["baseline", "residual"])  # doctest: +SKIP
    """
    data = compare_loss_data(traces, labels, name=name)
    fig, ax = new_figure()
    for i, (label, s, v) in enumerate(zip(data.labels, data.steps, data.values, strict=True)):
        ax.plot(
            s,
            v,
            color=OKABE_ITO[i % len(OKABE_ITO)],
            linestyle=DASHES[i % len(DASHES)],
            linewidth=1.4,
            label=text(label),
        )
    if data.log_scale:
        ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel(f"{text(name)}  (loss units)")
    ax.legend(fontsize=8)
    set_title(
        ax,
        f"Training curves compared: {text(name)}",
        "Look for: which run leaves its plateau first and ends lowest",
    )
    return attach(fig, data)


# ---------------------------------------------------------------------- theory overlay
def chi1_profile(chi1: float, n_layers: int) -> np.ndarray:
    """Predicted relative gradient RMS per layer from the mean-field gain ``chi_1``.

    ``chi_1`` is the mean squared singular value of one layer's Jacobian (Schoenholz et al.,
    2017), so the squared gradient norm is multiplied by ``chi_1`` per layer going back, and
    its RMS by ``sqrt(chi_1)``: layer ``l`` of ``L`` gets ``chi_1 ** ((L - 1 - l) / 2)``
    relative to the last layer.

    Example:
        >>> chi1_profile(0.25, 3).tolist()
        [0.25, 0.5, 1.0]
    """
    if not (np.isfinite(chi1) and chi1 > 0):
        raise ValueError(f"Expected argument `chi1` to be a positive number but got {chi1}.")
    if n_layers < 1:
        raise ValueError(f"Expected argument `n_layers` to be at least 1 but got {n_layers}.")
    return np.sqrt(float(chi1)) ** (n_layers - 1 - np.arange(n_layers, dtype=np.float64))


@dataclass(frozen=True)
class TheoryOverlayData:
    """Predicted and measured relative depth profiles, both 1 at the reference layer.

    Attributes:
        metric: The measured metric.
        layers: Layer names.
        step: The measured step (the first measured one by default: theory describes
            initialisation).
        measured: ``metric`` at ``step`` divided by its value at ``ref_layer``.
        predicted: The prediction divided by its value at ``ref_layer``.
        ref_layer: The deepest layer where both are finite and positive.
    """

    metric: str
    layers: list[str]
    step: int
    measured: np.ndarray
    predicted: np.ndarray
    ref_layer: int


def theory_overlay_data(
    trace: Trace,
    predicted: float | Sequence[float] | np.ndarray,
    *,
    metric: str = "grad_rms",
    step: int | None = None,
) -> TheoryOverlayData:
    """The data of :func:`plot_theory_overlay`.

    Args:
        trace: The run.
        predicted: Predicted relative gradient size per layer (one value per layer, e.g. from
            ``gradwatch.theory.mean_field``), or a single ``chi_1`` turned into a profile by
            :func:`chi1_profile`. Only ratios matter: both curves are scaled to 1 at the
            deepest layer.
        metric: Measured per-layer metric to compare with.
        step: Measured step; the first measured one by default.
    """
    n = len(trace.layers)
    if np.ndim(predicted) == 0:
        pred = chi1_profile(float(predicted), n)  # type: ignore[arg-type]
    else:
        pred = np.asarray(predicted, dtype=np.float64).reshape(-1)
        if pred.shape != (n,):
            raise ValueError(
                f"Expected argument `predicted` to hold one value per layer ({n}) but it has "
                f"{pred.shape[0]}; pass a depth profile or a single chi_1."
            )
    all_steps, rows = _require_rows(trace, metric)
    sel_steps, sel_rows = _select_steps(
        all_steps, rows, None if step is None else [step], 1, metric
    )
    meas = sel_rows[0]
    ok = np.flatnonzero(np.isfinite(meas) & (meas > 0) & np.isfinite(pred) & (pred > 0))
    if len(ok) == 0:
        raise ValueError(
            f"no layer has both a positive measured {metric!r} at step {int(sel_steps[0])} and a "
            "positive prediction, so the profiles cannot be compared."
        )
    ref = int(ok[-1])
    return TheoryOverlayData(
        metric, trace.layer_names, int(sel_steps[0]), meas / meas[ref], pred / pred[ref], ref
    )


def plot_theory_overlay(
    trace: Trace,
    predicted: float | Sequence[float] | np.ndarray,
    *,
    metric: str = "grad_rms",
    step: int | None = None,
    label: str | None = None,
) -> Figure:
    """Predicted vs measured gradient depth profile (log scale), both 1 at the deepest layer.

    Example:
        >>> fig = plot_theory_overlay(trace, predicted=0.5)  # chi_1 = 0.5  # doctest: +SKIP
    """
    data = theory_overlay_data(trace, predicted, metric=metric, step=step)
    if label is None:
        label = "mean-field prediction"
        if np.ndim(predicted) == 0:
            label += f" (χ₁ = {float(predicted):.3g} per layer)"  # type: ignore[arg-type]
    fig, ax = new_figure()
    x = np.arange(len(data.layers))
    ax.plot(
        x,
        _positive(data.measured),
        color=OKABE_ITO[0],
        marker="o",
        markersize=4,
        label=f"measured {metric}, step {data.step}",
    )
    ax.plot(
        x,
        _positive(data.predicted),
        color=OKABE_ITO[1],
        linestyle="--",
        linewidth=2,
        label=text(label),
    )
    ax.set_yscale("log")
    ax.set_xlabel("layer (forward order; 0 = input side)")
    ax.set_ylabel(f"{metric} relative to layer {data.ref_layer}  (ratio)")
    layer_ticks(ax, data.layers)
    ax.legend(fontsize=8)
    set_title(
        ax,
        "Theory vs measurement: gradient size along depth",
        "Look for: the same slope; a gap = the model is not where the theory assumes",
    )
    return attach(fig, data)


def figure_to_png(fig: Figure, dpi: int | None = None) -> bytes:
    """Render a figure to PNG bytes (Agg, no pyplot).

    Example:
        >>> png = figure_to_png(plot_loss(trace))  # doctest: +SKIP
    """
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return buf.getvalue()
