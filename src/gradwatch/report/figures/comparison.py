"""Several runs on one axis: gradient flow along depth and loss curves."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from gradwatch.trace import Trace

from .._style import DASHES, MARKERS, OKABE_ITO, attach, new_figure, set_title, text
from ._common import METRIC_LABELS, positive, require_rows
from .loss import finish_loss_axes, loss_data, wants_log_scale

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "CompareFlowData",
    "CompareLossData",
    "compare_flow_data",
    "compare_loss_data",
    "plot_compare_flow",
    "plot_compare_loss",
]


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
        s, rows = require_rows(t, metric)
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
            positive(prof),
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
    return CompareLossData(
        name, names, [c.steps for c in curves], [c.values for c in curves], wants_log_scale(allv)
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
    finish_loss_axes(ax, name, log_scale=data.log_scale)
    set_title(
        ax,
        f"Training curves compared: {text(name)}",
        "Look for: which run leaves its plateau first and ends lowest",
    )
    return attach(fig, data)
