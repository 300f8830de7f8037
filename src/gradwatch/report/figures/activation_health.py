"""Activation health: saturated and dead-unit fractions per layer, first vs last step."""

from __future__ import annotations

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
    set_title,
)
from ._common import first_last, rows_at

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["ActivationHealthData", "activation_health_data", "plot_activation_health"]


@dataclass(frozen=True)
class ActivationHealthData:
    """Saturated and dead-unit fractions per layer at two steps.

    Attributes:
        layers: Layer names in depth order.
        steps: ``(first, last)`` measured steps (the same step twice when only one exists).
        saturated: ``(2, layers)`` ``act_saturated`` at those steps (NaN if not recorded).
        dead: ``(2, layers)`` ``act_dead`` at those steps (NaN if not recorded).
        norm_layers: Columns of the norm layers (``LayerInfo.role == "norm"``), shaded in
            the plot: layers, but not depth.
    """

    layers: list[str]
    steps: np.ndarray
    saturated: np.ndarray
    dead: np.ndarray
    norm_layers: tuple[int, ...] = ()


def activation_health_data(trace: Trace, *, step: int | None = None) -> ActivationHealthData:
    """The data of :func:`plot_activation_health` at the first measured step and ``step``."""
    steps = first_last(trace, ("act_saturated", "act_dead"), step)
    return ActivationHealthData(
        trace.layer_names,
        steps,
        rows_at(trace, "act_saturated", steps),
        rows_at(trace, "act_dead", steps),
        norm_columns(trace.layers),
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
    mark_norm_layers(ax, data.norm_layers)
    ax.legend(fontsize=8)
    set_title(
        ax,
        "Activation health: saturated and dead units per layer",
        "Look for: layers where most units saturate (flat sigmoid/tanh) or never fire (ReLU)",
    )
    return attach(fig, data)
