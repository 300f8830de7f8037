"""Backward gain: ‖∂L/∂h‖ at each layer's output, and the layer where it falls most."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from gradwatch.trace import Trace

from .._style import (
    OKABE_ITO,
    attach,
    layer_ticks,
    mark_norm_layers,
    new_figure,
    norm_columns,
    plot_step_rows,
    set_title,
)
from ._common import METRIC_LABELS, geomean_rows, positive, require_rows, select_steps

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["BackwardGainData", "backward_gain_data", "plot_backward_gain"]


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
        norm_layers: Columns of the norm layers (``LayerInfo.role == "norm"``), shaded in
            the plot: layers, but not depth.
    """

    layers: list[str]
    steps: np.ndarray
    values: np.ndarray
    profile: np.ndarray
    drop_layer: int | None
    drop_factor: float | None
    median_gain: float
    stands_out: bool
    norm_layers: tuple[int, ...] = ()


def backward_gain_data(
    trace: Trace, *, steps: Sequence[int] | None = None, moments: int = 3
) -> BackwardGainData:
    """The data of :func:`plot_backward_gain` (metric ``out_grad_norm``, sampled steps)."""
    all_steps, rows = require_rows(trace, "out_grad_norm")
    sel_steps, sel_rows = select_steps(all_steps, rows, steps, moments, "out_grad_norm")
    profile = geomean_rows(rows)
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
        norm_columns(trace.layers),
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
    plot_step_rows(ax, x, data.steps, [positive(row) for row in data.values])
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
    mark_norm_layers(ax, data.norm_layers)
    ax.legend(fontsize=8)
    set_title(
        ax,
        "Backward gain: gradient reaching each layer's output",
        "Look for: the shaded pair where the signal falls most; a steady slope = gain < 1",
    )
    return attach(fig, data)
