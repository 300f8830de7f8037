"""Gradient flow: a gradient metric along depth at a few moments of training."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from gradwatch.trace import Trace

from .._style import (
    attach,
    layer_ticks,
    mark_norm_layers,
    new_figure,
    norm_columns,
    plot_step_rows,
    set_title,
)
from ._common import METRIC_LABELS, positive, require_rows, select_steps

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["GradientFlowData", "gradient_flow_data", "plot_gradient_flow"]


@dataclass(frozen=True)
class GradientFlowData:
    """Per-layer values of a gradient metric at a few steps.

    Attributes:
        metric: The trace metric drawn (``grad_rms`` by default).
        layers: Layer names in depth order (x axis).
        steps: The steps drawn, shape ``(k,)``.
        values: ``(k, layers)`` raw values from the trace at those steps.
        norm_layers: Columns of the norm layers (``LayerInfo.role == "norm"``), shaded in
            the plot: layers, but not depth.
    """

    metric: str
    layers: list[str]
    steps: np.ndarray
    values: np.ndarray
    norm_layers: tuple[int, ...] = ()


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
    all_steps, rows = require_rows(trace, metric)
    sel_steps, sel_rows = select_steps(all_steps, rows, steps, moments, metric)
    return GradientFlowData(
        metric, trace.layer_names, sel_steps, sel_rows, norm_columns(trace.layers)
    )


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
    colours = plot_step_rows(ax, x, data.steps, [positive(row) for row in data.values])
    for i, row in enumerate(data.values):
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
    mark_norm_layers(ax, data.norm_layers)
    ax.legend(fontsize=8, title="training step", title_fontsize=8)
    set_title(
        ax,
        f"Gradient flow ({metric}) along depth",
        "Look for: lines falling by decades towards layer 0 (vanishing) or rising (exploding)",
    )
    return attach(fig, data)
