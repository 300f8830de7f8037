"""Plots of a trace: pure functions ``Trace -> matplotlib Figure``, all importable from here.

Each ``plot_*`` function has a ``*_data`` twin that computes exactly the arrays it draws
(as a small frozen dataclass); the figure keeps them on ``fig.gradwatch_data``, so what a
plot shows can be checked against the trace without looking at pixels. Figures are made
with :class:`matplotlib.figure.Figure` directly (no pyplot global state), so they are safe
in threads, servers and notebooks alike.

Each figure family lives in its own module of :mod:`gradwatch.report.figures`; this module
is the one import path for all of them.

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

from ._style import figure_to_png
from .figures._common import METRIC_LABELS
from .figures.activation_health import (
    ActivationHealthData,
    activation_health_data,
    plot_activation_health,
)
from .figures.activation_stats import (
    ActivationStatsData,
    activation_stats_data,
    plot_activation_stats,
)
from .figures.backward_gain import BackwardGainData, backward_gain_data, plot_backward_gain
from .figures.comparison import (
    CompareFlowData,
    CompareLossData,
    compare_flow_data,
    compare_loss_data,
    plot_compare_flow,
    plot_compare_loss,
)
from .figures.gradient_flow import GradientFlowData, gradient_flow_data, plot_gradient_flow
from .figures.heatmap import HeatmapData, heatmap_data, plot_heatmap
from .figures.loss import LossData, loss_data, plot_loss
from .figures.recurrent_memory import (
    RecurrentMemoryData,
    plot_recurrent_memory,
    recurrent_memory_data,
)
from .figures.theory_overlay import (
    TheoryOverlayData,
    chi1_profile,
    plot_theory_overlay,
    theory_overlay_data,
)

__all__ = [
    "METRIC_LABELS",
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
    "figure_to_png",
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
