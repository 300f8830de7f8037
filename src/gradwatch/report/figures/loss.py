"""Loss: a logged scalar per step, its moving average, its non-finite steps and the
optimizer's learning rate beside it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from gradwatch.trace import Trace
from gradwatch.trace.schema import OPTIMIZER_LR

from .._style import OKABE_ITO, attach, new_figure, set_title, text

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["LossData", "finish_loss_axes", "loss_data", "plot_loss", "wants_log_scale"]


@dataclass(frozen=True)
class LossData:
    """A scalar curve with its moving average.

    Attributes:
        name: The scalar (``loss`` by default).
        steps: Scalar steps with a finite value.
        values: The finite values.
        smooth_steps: Steps of the moving average (its window's last step).
        smooth: Trailing mean over ``window`` finite values (empty when ``window`` is 1).
        window: Moving-average window (``len(values) // 50`` when over 100 values, else 1).
        nonfinite_steps: Steps where the value was inf, and the trailing NaN steps when the
            scalar was logged at every step before them (training blew up and stayed NaN).
        log_scale: Whether the y axis is logarithmic (all values > 0 and spanning > 10×).
        lr_steps: Steps where the optimizer's learning rate was recorded (``optimizer_lr``).
        lr: That learning rate, drawn on a right-hand axis (empty when not recorded): a
            loss that flattens as a schedule decays reads differently from a stalled one.
    """

    name: str
    steps: np.ndarray
    values: np.ndarray
    smooth_steps: np.ndarray
    smooth: np.ndarray
    window: int
    nonfinite_steps: np.ndarray
    log_scale: bool
    lr_steps: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    lr: np.ndarray = field(default_factory=lambda: np.zeros(0))


def finish_loss_axes(ax: Any, name: str, *, log_scale: bool) -> None:
    """The axes every loss curve shares: steps across, the scalar (log when it spans decades)
    up, and a legend."""
    if log_scale:
        ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel(f"{text(name)}  (loss units)")
    ax.legend(fontsize=8)


def wants_log_scale(values: np.ndarray) -> bool:
    """Whether a loss axis should be logarithmic: all values > 0 and spanning more than 10x.

    Example:
        >>> wants_log_scale(np.array([2.0, 0.1])), wants_log_scale(np.array([2.0, 0.5]))
        (True, False)
    """
    return bool(len(values) and values.min() > 0 and values.max() > 10 * values.min())


def loss_data(trace: Trace, name: str = "loss") -> LossData:
    """The data of :func:`plot_loss`.

    Raises:
        ValueError: When the trace has no such scalar (log it with ``w.log(loss=loss)``).
    """
    if not trace.has_scalar(name):
        raise ValueError(
            f"this trace has no scalar {name!r} (it has {trace.scalar_names}); log it with "
            f"`w.log({name}=...)` inside the training loop."
        )
    all_steps, vals = trace.scalar_steps, trace.scalar(name)
    finite = np.isfinite(vals)
    steps, values = all_steps[finite], vals[finite]
    # A NaN in a scalar column is either "not logged at this step" (scalars logged at
    # different cadences share one step axis) or a logged NaN. Count NaNs as a blow-up only
    # when they run to the end of the run after a stretch logged at every step (the usual
    # "loss became NaN and stayed NaN"); inf always counts.
    bad = np.isinf(vals)
    nan = np.isnan(vals)
    first_nan = int(np.argmax(nan)) if nan.any() else len(vals)
    if 0 < first_nan < len(vals) and nan[first_nan:].all():
        bad[first_nan:] = True
    nonfinite_steps = all_steps[bad]
    window = len(values) // 50 if len(values) > 100 else 1
    if window > 1:
        smooth = np.convolve(values, np.ones(window) / window, mode="valid")
        smooth_steps = steps[window - 1 :]
    else:
        smooth, smooth_steps = np.zeros(0), np.zeros(0, dtype=np.int64)
    lr_steps, lr = np.zeros(0, dtype=np.int64), np.zeros(0)
    if trace.has_scalar(OPTIMIZER_LR):
        rate = trace.scalar(OPTIMIZER_LR)
        known = np.isfinite(rate)
        lr_steps, lr = all_steps[known], rate[known]
    return LossData(
        name,
        steps,
        values,
        smooth_steps,
        smooth,
        window,
        nonfinite_steps,
        wants_log_scale(values),
        lr_steps,
        lr,
    )


def plot_loss(trace: Trace, name: str = "loss") -> Figure:
    """Loss curve (raw and moving average); steps with a non-finite loss marked on top.

    Example:
        >>> fig = plot_loss(trace)  # doctest: +SKIP
    """
    data = loss_data(trace, name)
    fig, ax = new_figure()
    raw_alpha = 0.35 if data.window > 1 else 1.0
    ax.plot(data.steps, data.values, color=OKABE_ITO[0], alpha=raw_alpha, linewidth=1, label=name)
    if data.window > 1:
        ax.plot(
            data.smooth_steps,
            data.smooth,
            color=OKABE_ITO[0],
            linewidth=2,
            label=f"moving average ({data.window} steps)",
        )
    if len(data.nonfinite_steps):
        ax.plot(
            data.nonfinite_steps,
            np.ones(len(data.nonfinite_steps)),
            linestyle="none",
            marker="x",
            color=OKABE_ITO[1],
            transform=ax.get_xaxis_transform(),
            clip_on=False,
            label="non-finite value",
        )
    finish_loss_axes(ax, name, log_scale=data.log_scale)
    if len(data.lr):
        right = ax.twinx()
        right.plot(data.lr_steps, data.lr, color=OKABE_ITO[2], linestyle="--", linewidth=1.2,
                   label="learning rate (right axis)")  # fmt: skip
        right.set_ylabel("learning rate")
        right.set_ylim(bottom=0)
        handles, labels = ax.get_legend_handles_labels()
        more, more_labels = right.get_legend_handles_labels()
        ax.legend(handles + more, labels + more_labels, fontsize=8)
    set_title(
        ax,
        f"Training curve: {text(name)}",
        "Look for: a long flat stretch (stalled learning) or spikes and ✕ marks (instability)",
    )
    return attach(fig, data)
