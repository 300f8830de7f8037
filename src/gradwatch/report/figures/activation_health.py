"""Activation health per layer, first vs last step: saturated and dead-unit fractions, and
the share of each output that differs between inputs."""

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
    """Saturated and dead-unit fractions and the share between inputs per layer at two steps.

    Attributes:
        layers: Layer names in depth order.
        steps: ``(first, last)`` measured steps (the same step twice when only one exists).
        saturated: ``(2, layers)`` ``act_saturated`` at those steps (NaN if not recorded).
        dead: ``(2, layers)`` ``act_dead`` at those steps (NaN if not recorded).
        between: ``(2, layers)`` ``act_between_inputs`` at those steps (NaN if not
            recorded): near 0 where every input gets the same output.
        norm_layers: Columns of the norm layers (``LayerInfo.role == "norm"``), shaded in
            the plot: layers, but not depth.
    """

    layers: list[str]
    steps: np.ndarray
    saturated: np.ndarray
    dead: np.ndarray
    between: np.ndarray
    norm_layers: tuple[int, ...] = ()


#: The metrics the figure draws, in the order of :class:`ActivationHealthData`'s rows.
HEALTH_METRICS = ("act_saturated", "act_dead", "act_between_inputs")


def activation_health_data(trace: Trace, *, step: int | None = None) -> ActivationHealthData:
    """The data of :func:`plot_activation_health` at the first measured step and ``step``."""
    steps = first_last(trace, HEALTH_METRICS, step)
    saturated, dead, between = (rows_at(trace, metric, steps) for metric in HEALTH_METRICS)
    return ActivationHealthData(
        trace.layer_names, steps, saturated, dead, between, norm_columns(trace.layers)
    )


def plot_activation_health(trace: Trace, *, step: int | None = None) -> Figure:
    """Fraction of saturated and of dead units, and the share of the output that differs
    between inputs, per layer, first measured step vs ``step``.

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
            ("between inputs", data.between, OKABE_ITO[2], "^"),
        )
    ):
        if np.all(np.isnan(vals)):
            continue
        for k, (alpha, dash) in enumerate(((0.55, ":"), (1.0, ("-", "--", "-.")[j]))):
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
    ax.set_ylabel("fraction  (0 to 1)")
    layer_ticks(ax, data.layers)
    mark_norm_layers(ax, data.norm_layers)
    ax.legend(fontsize=8)
    set_title(
        ax,
        "Activation health: saturated and dead units, variation between inputs",
        "Look for: most units saturated or dead; a share between inputs near 0 (collapsed)",
    )
    return attach(fig, data)
