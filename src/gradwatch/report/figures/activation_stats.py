"""Activation distribution: mean and mean ± std of each layer's output, first vs last step."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from gradwatch.trace import Trace

from .._style import (
    DASHES,
    MARKERS,
    OKABE_ITO,
    attach,
    layer_ticks,
    mark_norm_layers,
    new_figure,
    norm_columns,
    set_title,
)
from ._common import first_last, rows_at

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["ActivationStatsData", "activation_stats_data", "plot_activation_stats"]


@dataclass(frozen=True)
class ActivationStatsData:
    """Activation mean and standard deviation per layer at two steps.

    Attributes:
        layers: Layer names in depth order.
        steps: ``(first, last)`` measured steps.
        mean: ``(2, layers)`` ``act_mean``.
        std: ``(2, layers)`` ``act_std``.
        norm_layers: Columns of the norm layers (``LayerInfo.role == "norm"``), shaded in
            the plot: layers, but not depth.
    """

    layers: list[str]
    steps: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    norm_layers: tuple[int, ...] = ()


def activation_stats_data(trace: Trace, *, step: int | None = None) -> ActivationStatsData:
    """The data of :func:`plot_activation_stats` at the first measured step and ``step``."""
    steps = first_last(trace, ("act_mean", "act_std"), step)
    return ActivationStatsData(
        trace.layer_names,
        steps,
        rows_at(trace, "act_mean", steps),
        rows_at(trace, "act_std", steps),
        norm_columns(trace.layers),
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
    mark_norm_layers(ax, data.norm_layers)
    ax.legend(fontsize=8)
    set_title(
        ax,
        "Activation distribution per layer (mean ± std of the layer's output)",
        "Look for: the band shrinking to 0 with depth (signal dies) or widening (signal explodes)",
    )
    return attach(fig, data)
