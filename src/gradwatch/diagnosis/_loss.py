"""The logged loss as the rules read it: its start, its windows, where the model finished
learning, and how it responded to a span of steps.

One reading of the ``loss`` scalar for every rule that judges by it (``loss_plateau``,
``unstable_updates``, ``exploding_gradient``'s spikes, the settling passes), so that "the
start", "a window" and "finished" mean the same everywhere.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..trace import Trace
from ._common import metric_rows, quiet_nan, scalar_rows, window_medians

#: Logged loss values whose median is the starting loss: the loss before the updates took
#: effect (the first value alone could be one odd batch; by the third an lr far too high has
#: already changed the weights, so later ones would hide a blow-up in the first steps).
LOSS_START_ROWS = 3


class LossCurve(NamedTuple):
    """The logged loss reduced to what the rules compare: its start and window medians."""

    steps: np.ndarray  # (N,) steps of the finite logged values
    values: np.ndarray  # (N,) those values
    start: float  # median of the first LOSS_START_ROWS values (> 0)
    medians: np.ndarray  # (W,) medians of consecutive windows of logged values
    first_step: np.ndarray  # (W,) first step of each window
    last_step: np.ndarray  # (W,) last step of each window


def loss_curve(trace: Trace, window: int) -> LossCurve | None:
    """The ``loss`` scalar as a :class:`LossCurve`, or None when it cannot serve as a reference.

    None when the trace logged no loss, fewer than ``LOSS_START_ROWS`` finite values, or a
    start <= 0 (a loss that is not positive has no "fraction of its start").
    """
    steps, values = scalar_rows(trace, "loss")
    if len(values) < LOSS_START_ROWS:
        return None
    start = float(np.median(values[:LOSS_START_ROWS]))
    if not start > 0.0:
        return None
    meds, first = window_medians(values, window)
    last_row = np.append(first[1:], len(values)) - 1
    return LossCurve(steps, values, start, meds, steps[first], steps[last_row])


def no_loss_reference(trace: Trace) -> str:
    """Why :func:`loss_curve` gave None, as a clause of a message that could not judge
    something by the loss: none logged, too few values, or a start that is not positive (a
    loss that can go below 0: a log-likelihood, a loss given outputs of the wrong kind).

    Example:
        >>> grads = {"grad_rms": [[1.0]] * 3}
        >>> no_loss_reference(Trace.from_arrays(["fc"], [0, 1, 2], grads))
        'no loss was logged to judge it by'
        >>> losses = {"loss": [-0.1, -0.2, -0.3]}
        >>> no_loss_reference(Trace.from_arrays(["fc"], [0, 1, 2], grads, scalars=losses))
        'the logged loss starts at -0.2, not above 0, which leaves no progress to judge it by'
    """
    _, values = scalar_rows(trace, "loss")
    if len(values) == 0:
        return "no loss was logged to judge it by"
    if len(values) < LOSS_START_ROWS:
        return f"only {len(values)} finite loss value(s) were logged, too few to judge it by"
    start = float(np.median(values[:LOSS_START_ROWS]))
    return (
        f"the logged loss starts at {start:.3g}, not above 0, which leaves no progress to "
        "judge it by"
    )


def window_of(curve: LossCurve, steps: np.ndarray) -> np.ndarray:
    """Index of the loss window holding each of ``steps`` (clipped to the first/last window)."""
    idx = np.searchsorted(curve.first_step, np.asarray(steps), side="right") - 1
    return np.clip(idx, 0, len(curve.medians) - 1)


def learning_rows(
    trace: Trace, steps: np.ndarray, window: int, finished_fraction: float
) -> tuple[np.ndarray, int | None]:
    """Which of ``steps`` fall where the model is still learning, and where it first finished.

    A model has *finished* in a loss window whose median is at most ``finished_fraction`` of
    the starting loss: it is confident, so its errors, and with them every gradient, are
    small. Depth contrasts and absolute floors measured there describe a model that has
    learned, not a gradient that fails to arrive. Windows where the loss climbs back above
    the fraction count as learning again (a later divergence is judged). All rows learn when
    no loss was logged or ``finished_fraction`` is 0.

    Returns:
        ``(mask, first finished step or None)``.
    """
    steps = np.asarray(steps)
    curve = loss_curve(trace, window) if finished_fraction > 0 else None
    if curve is None or len(steps) == 0:
        return np.ones(len(steps), dtype=bool), None
    done = curve.medians <= finished_fraction * curve.start
    if not done.any():
        return np.ones(len(steps), dtype=bool), None
    first_done = int(curve.first_step[int(np.argmax(done))])
    return ~done[window_of(curve, steps)], first_done


class LossResponse(NamedTuple):
    """How the loss responded over a span of steps (see :func:`loss_response`)."""

    start: float  # starting loss
    end: float  # median of the last loss window of the span
    progress: float  # (start - end) / start: the fraction of the start the loss has lost
    relapse: float  # the largest share of the progress so far that a window gave back
    relapse_step: int | None  # first step of that window
    # Whether the progress before that window was under the floor it is divided by (a loss
    # that rose before it had moved): then the window's level says more than the ratio.
    relapse_unearned: bool
    relapse_level: float  # that window's median over the start
    relapse_until: int | None  # last step of that window
    spike: float  # largest single early loss over the start (1 = none)
    spike_step: int | None  # its step
    nonfinite: bool  # an infinite loss or a non-finite gradient within the span


def loss_response(
    trace: Trace, last_step: int, window: int, min_progress: float, early_rows: int
) -> LossResponse | None:
    """The loss's response up to ``last_step``: progress, relapses and early spikes.

    * ``progress``: how far the last window's median (of the windows up to ``last_step``) sits
      below the starting loss, as a fraction of the start.
    * ``relapse``: for each window, its rise over the lowest median before it, divided by the
      progress made until then (at least ``min_progress`` of the start, so the noise of a loss
      that has not moved yet is not divided by ~0). 1 means a window gave back all the
      progress: the updates overshoot. A steadily falling loss stays near 0.
    * ``spike``: the largest single value among the first ``early_rows`` logged losses, over
      the start: blow-ups in the first steps happen between sampled steps and recover within
      a window, so they are read value by value.

    None when the loss cannot serve as a reference (:func:`loss_curve`).
    """
    curve = loss_curve(trace, window)
    if curve is None:
        return None
    keep = curve.first_step <= last_step
    keep[0] = True
    meds, first, until = curve.medians[keep], curve.first_step[keep], curve.last_step[keep]
    # Lowest median before each window, the start included.
    before = np.minimum.accumulate(np.concatenate(([curve.start], meds[:-1])))
    gained = np.maximum(curve.start - before, min_progress * curve.start)
    with quiet_nan():
        relapse_w = (meds - before) / gained
    worst = int(np.nanargmax(relapse_w)) if np.isfinite(relapse_w).any() else 0
    early = curve.values[: max(1, early_rows)]
    k = int(np.argmax(early))
    # A NaN loss may just be a step where it was not logged; an infinite one, or a
    # non-finite gradient count, is a blow-up.
    raw = trace.scalar("loss")[trace.scalar_steps <= last_step]
    bad = bool(np.isinf(raw).any())
    nf_steps, nf = metric_rows(trace, "nonfinite")
    with quiet_nan():
        bad |= bool((nf[nf_steps <= last_step] > 0).any())
    end = float(meds[-1])
    with quiet_nan():  # a start near the smallest float overflows the ratios: inf
        progress, spike = (curve.start - end) / curve.start, float(early[k] / curve.start)
        level = float(meds[worst] / curve.start)
    return LossResponse(
        start=curve.start,
        end=end,
        progress=progress,
        relapse=float(relapse_w[worst]) if np.isfinite(relapse_w[worst]) else 0.0,
        relapse_step=int(first[worst]),
        relapse_unearned=bool(curve.start - before[worst] < min_progress * curve.start),
        relapse_level=level,
        relapse_until=int(until[worst]),
        spike=spike,
        spike_step=int(curve.steps[k]),
        nonfinite=bad,
    )
