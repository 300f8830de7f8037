"""Theory vs measurement: a predicted gradient depth profile over the measured one."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from gradwatch.theory import norm_profile
from gradwatch.trace import Trace

from .._style import (
    OKABE_ITO,
    attach,
    layer_ticks,
    mark_norm_layers,
    new_figure,
    norm_columns,
    set_title,
    text,
)
from ._common import positive, require_rows, select_steps

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["TheoryOverlayData", "chi1_profile", "plot_theory_overlay", "theory_overlay_data"]


def chi1_profile(chi1: float, n_layers: int) -> np.ndarray:
    """Predicted relative gradient RMS per layer from the mean-field gain ``chi_1``.

    ``chi_1`` is the mean squared singular value of one layer's Jacobian (Schoenholz et al.,
    2017), so the squared gradient norm is multiplied by ``chi_1`` per layer going back, and
    its RMS by ``sqrt(chi_1)``: layer ``l`` of ``L`` gets ``chi_1 ** ((L - 1 - l) / 2)``
    relative to the last layer. The numbers are theory's own
    (:func:`gradwatch.theory.norm_profile`); this function checks the report's arguments.

    Example:
        >>> chi1_profile(0.25, 3).tolist()
        [0.25, 0.5, 1.0]
    """
    if not (np.isfinite(chi1) and chi1 > 0):
        raise ValueError(f"Expected argument `chi1` to be a positive number but got {chi1}.")
    if n_layers < 1:
        raise ValueError(f"Expected argument `n_layers` to be at least 1 but got {n_layers}.")
    return norm_profile(float(chi1), n_layers)


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
        norm_layers: Columns of the norm layers (``LayerInfo.role == "norm"``), shaded in
            the plot: layers, but not depth.
    """

    metric: str
    layers: list[str]
    step: int
    measured: np.ndarray
    predicted: np.ndarray
    ref_layer: int
    norm_layers: tuple[int, ...] = ()


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
    all_steps, rows = require_rows(trace, metric)
    sel_steps, sel_rows = select_steps(all_steps, rows, None if step is None else [step], 1, metric)
    meas = sel_rows[0]
    ok = np.flatnonzero(np.isfinite(meas) & (meas > 0) & np.isfinite(pred) & (pred > 0))
    if len(ok) == 0:
        raise ValueError(
            f"no layer has both a positive measured {metric!r} at step {int(sel_steps[0])} and a "
            "positive prediction, so the profiles cannot be compared."
        )
    ref = int(ok[-1])
    return TheoryOverlayData(
        metric,
        trace.layer_names,
        int(sel_steps[0]),
        meas / meas[ref],
        pred / pred[ref],
        ref,
        norm_columns(trace.layers),
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
        positive(data.measured),
        color=OKABE_ITO[0],
        marker="o",
        markersize=4,
        label=f"measured {metric}, step {data.step}",
    )
    ax.plot(
        x,
        positive(data.predicted),
        color=OKABE_ITO[1],
        linestyle="--",
        linewidth=2,
        label=text(label),
    )
    ax.set_yscale("log")
    ax.set_xlabel("layer (forward order; 0 = input side)")
    ax.set_ylabel(f"{metric} relative to layer {data.ref_layer}  (ratio)")
    layer_ticks(ax, data.layers)
    mark_norm_layers(ax, data.norm_layers)
    ax.legend(fontsize=8)
    set_title(
        ax,
        "Theory vs measurement: gradient size along depth",
        "Look for: the same slope; a gap = the model is not where the theory assumes",
    )
    return attach(fig, data)
