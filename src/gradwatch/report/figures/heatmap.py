"""Heatmap: one metric as a layers x steps matrix on a log colour scale."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from gradwatch.trace import Trace

from .._style import OKABE_ITO, attach, layer_ticks, new_figure, norm_columns, set_title
from ._common import METRIC_LABELS, pick, require_rows

#: The heatmap marks norm rows with a dark grey ◀ just outside its right edge.
NORM_MARK = "#555555"
NORM_ROW_LABEL = "norm layer (◀ at the right edge)"

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["HeatmapData", "heatmap_data", "plot_heatmap"]


@dataclass(frozen=True)
class HeatmapData:
    """A layers x steps matrix of one metric.

    Attributes:
        metric: The trace metric.
        layers: Layer names (rows, depth order).
        steps: Steps drawn (columns): the measured ones, thinned evenly to ``max_steps``.
        values: ``(layers, steps)`` raw values (NaN = not measured).
        norm_layers: Rows of the norm layers (``LayerInfo.role == "norm"``), marked with a
            ◀ on the right edge: layers, but not depth.
    """

    metric: str
    layers: list[str]
    steps: np.ndarray
    values: np.ndarray
    norm_layers: tuple[int, ...] = ()


def heatmap_data(trace: Trace, metric: str = "grad_rms", *, max_steps: int = 600) -> HeatmapData:
    """The data of :func:`plot_heatmap`: ``metric`` as a layers x steps matrix.

    Only steps where the metric was measured are kept (sampled metrics such as
    ``update_ratio`` exist every ``sample_every`` steps); beyond ``max_steps`` columns, every
    k-th measured step is kept, first and last included, so big runs stay quick to draw.
    """
    if max_steps < 2:
        raise ValueError(f"Expected argument `max_steps` to be at least 2 but got {max_steps}.")
    steps, rows = require_rows(trace, metric)
    idx = pick(len(steps), max_steps)
    return HeatmapData(
        metric, trace.layer_names, steps[idx], rows[idx].T.copy(), norm_columns(trace.layers)
    )


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
    if data.norm_layers:
        # A colour band would hide the cells: a marker just outside the right edge instead.
        (marks,) = ax.plot(
            np.full(len(data.norm_layers), 1.015),  # axes fraction: just outside
            list(data.norm_layers),
            linestyle="none",
            marker="<",
            markersize=6,
            color=NORM_MARK,
            clip_on=False,
            transform=ax.get_yaxis_transform(),
            label=NORM_ROW_LABEL,
        )
        handles.append(marks)
    if handles:
        ax.legend(handles=handles, fontsize=7, loc="upper right", framealpha=0.9)
    look = {
        "update_ratio": "Look for: rows far below 1e-3 (not learning) or above 1e-1 (unstable)",
    }.get(metric, "Look for: dark bands at the bottom (vanishing) or bright bands (exploding)")
    set_title(ax, f"{metric} per layer over training (log colour scale)", look)
    return attach(fig, data)
