"""The gradient's trend through depth over the hidden layers, as the verdict quotes it.

The verdict on gradient flow is a fitted trend, not a comparison of two layers: the output
layer's gradient is often odd (it sees the loss directly), and one noisy layer can make two
ends look alike while every layer between rises or falls by orders of magnitude.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..trace import Trace
from ._common import core_layers, depth_span, metric_rows, quiet_nan, safe_log10

__all__ = ["DepthTrend", "depth_trend"]


@dataclass(frozen=True)
class DepthTrend:
    """How ``grad_rms`` changes along the hidden layers, from a least-squares fit of log10.

    Attributes:
        decades: Fitted rise, in orders of magnitude, from the first hidden layer to the last
            (positive: the gradient falls on the way back to the input, i.e. vanishes;
            negative: it grows toward the input). The median over steps of the per-step fit.
        first: Label (``L<depth> <name>``) of the first layer of the fit.
        last: Label of the last layer of the fit.
        n_layers: Layers in the fit.
        hidden: Whether the output layer was left out (False when fewer than three weight
            layers leave no hidden layers to fit without it).
        steps: First and last step of the window the median covers.
    """

    decades: float
    first: str
    last: str
    n_layers: int
    hidden: bool
    steps: tuple[int, int]

    @property
    def factor(self) -> float:
        """``10**decades``: the last fitted layer's gradient RMS over the first's."""
        return 10.0**self.decades if self.decades < 300 else math.inf

    @property
    def label(self) -> str:
        """Where the value comes from: ``"median over steps 0-299"`` (or ``"at step 5"``)."""
        a, b = self.steps
        return f"at step {a}" if a == b else f"median over steps {a}-{b}"


def depth_trend(trace: Trace) -> DepthTrend | None:
    """The depth trend of ``grad_rms`` over the hidden weight layers, or None if unmeasured.

    Weight layers are the rules' depth axis (normalisation and embedding layers are left
    out); the hidden ones are all of them but the last (the output layer). With fewer than
    three weight layers the fit covers all of them. Per step, log10 ``grad_rms`` is fitted
    against depth (steps with fewer than two finite values give none); the median of those
    fits is the trend.

    Example:
        >>> g = {"grad_rms": [[1e-3, 1e-2, 1e-1, 1]]}
        >>> t = Trace.from_arrays(["a", "b", "c", "out"], [0], g)
        >>> tr = depth_trend(t); (round(tr.decades, 6), tr.first, tr.last, tr.label)
        (2.0, 'L0 a', 'L2 c', 'at step 0')
    """
    cols = core_layers(trace)
    hidden = len(cols) >= 3
    if hidden:
        cols = cols[:-1]
    if len(cols) < 2:
        return None
    steps, grad = metric_rows(trace, "grad_rms")
    if len(steps) == 0:
        return None
    fits = depth_span(safe_log10(grad[:, cols]))
    ok = np.flatnonzero(np.isfinite(fits))
    if len(ok) == 0:
        return None
    with quiet_nan():
        decades = float(np.median(fits[ok]))
    return DepthTrend(
        decades=decades,
        first=trace.layer_label(int(cols[0])),
        last=trace.layer_label(int(cols[-1])),
        n_layers=len(cols),
        hidden=hidden,
        steps=(int(steps[ok[0]]), int(steps[ok[-1]])),
    )
