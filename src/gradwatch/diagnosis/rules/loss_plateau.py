"""``loss_plateau``: the loss stops improving early (needs the ``loss`` scalar).

Window medians of the logged loss. The plateau starts at the first window after which no
window improves on the best loss so far by ``min_relative_improvement``; the rule
fires when it starts within the first ``early_fraction`` of the run and lasts at least
``min_windows`` windows: the run stopped learning early, the symptom users see first of a
vanishing gradient, dead units or saturation. A run still improving at the end, or one that
converged late, is quiet.

"Of the run" is counted in learning rate where the trace has one (the optimizer's, recorded
by the watch, or a logged ``learning_rate``/``lr``): the share of the run's summed learning
rate spent before the plateau, which is the share of steps under a constant rate. A decaying
schedule spends most of its step size early, and the loss flattens as the rate falls: HF
GPT-2 under AdamW 1e-3 with cosine decay over 250 steps flattened from step 120 (48% of the
steps, 80% of the summed rate), where the same model at a constant rate is still improving.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ...trace import Trace
from .._common import core_layers, fl, hints, metric_rows, quiet_nan, scalar_rows, window_medians
from .._loss import LOSS_START_ROWS
from .._trend import mann_kendall_z
from ..finding import Finding
from ..rates import learning_rate_at
from ..thresholds import LossPlateauThresholds

RULE = "loss_plateau"

#: The remedy of a plateau whose steps are too large (a rising loss, a collapse).
LOWER_RATE = hints(
    ("lower_lr", "a lower learning rate takes smaller steps at this stage of training")
)
#: Steps too small to train: a higher rate (``symptoms`` and ``small_steps`` name it).
RAISE_RATE = hints(
    (
        "raise_lr",
        "steps this small barely change the loss, and they grow with the rate (gw.prescribe "
        "reads the factor off the steps: the power of ten that brings them to healthy sizes)",
    )
)


def check(trace: Trace, th: LossPlateauThresholds) -> Finding | None:
    """Return the loss-plateau finding of ``trace``, or None."""
    steps, loss = scalar_rows(trace, "loss")
    meds, starts = window_medians(loss, th.window)
    n = len(meds)
    if n < th.min_windows + 1:
        return None
    # Best loss of any later window, for each window (reverse running minimum: no loop).
    later_best = np.minimum.accumulate(meds[::-1])[::-1]
    later_best = np.append(later_best[1:], np.inf)
    # Measured against the best loss so far, not the window's own: a later window that only
    # recovers from a bump has not improved (GPT-2 at AdamW 0.1 after a 60-step warm-up: best
    # 2.86 at step 80, a bump to 3.05, back to 2.87; against its own loss the bump window
    # counted as improved on, and the plateau seemed to start at step 150, too late to count).
    best = np.fmin.accumulate(meds)
    scale = np.abs(best)
    with quiet_nan():
        gain = np.where(scale > 0, (best - later_best) / scale, 0.0)
    # The plateau starts at the first window after which no window improves enough; the
    # last window has no later one, so it never starts a plateau by itself.
    stuck = gain[:-1] < th.min_relative_improvement
    # A plateau from window e means every window from e on is stuck.
    tail_stuck = np.logical_and.accumulate(stuck[::-1])[::-1]
    if not tail_stuck.any():
        return None
    e = int(np.argmax(tail_stuck))
    spent = _lr_spent(trace, steps, starts)
    through = e / n if spent is None else float(spent[e])
    if through > th.early_fraction or n - e < th.min_windows:
        return None
    first_step = int(steps[starts[e]])
    # Said when the schedule makes it differ from the share of steps (a constant rate: not).
    lr_note = "" if abs(through - e / n) < 0.05 else f", {through:.0%} of the summed learning rate"
    level, best_after = float(meds[e]), float(later_best[e])
    moved = plateau_step_size(trace, first_step)
    step_size = (
        {}
        if moved is None
        else {
            "median_update_ratio": fl(moved.median),
            "tiny_update_ratio": th.tiny_update_ratio,
            # The layer that moved most (small_steps.py: tiny there, no layer trains).
            "top_update_ratio": fl(moved.most),
            "top_update_layer": trace.layer_label(moved.most_layer),
        }
    )
    collapse = plateau_between_inputs(trace, first_step)
    between = (
        {}
        if collapse is None
        else {
            "between_inputs_layer": trace.layer_label(collapse[0]),
            "plateau_between_inputs": fl(collapse[1]),
            "collapsed_share": th.collapsed_share,
        }
    )
    total = (float(meds[0]) - float(np.min(meds))) / abs(float(meds[0])) if meds[0] else 0.0
    trend = mann_kendall_z(meds[e:])
    start = float(np.median(loss[:LOSS_START_ROWS]))
    rising = bool(trend >= th.trend_z and level > th.finished_loss_fraction * start)
    # Where the loss went from the plateau's level: "stayed near" would hide a loss that
    # climbed far above it (an HF ResNet whose gradients were never zeroed: 2.28 -> 95).
    never = f"never improved by {th.min_relative_improvement:.0%} again"
    went = (
        f"rose from {level:.4g} to {float(meds[-1]):.4g} and {never}, so the steps no longer "
        "reduce it; the other findings say why."
        if rising
        else f"stayed near {level:.4g} and {never}, so the weights stopped receiving a "
        "gradient that reduces it; the other findings say where it is lost."
    )
    return Finding(
        rule=RULE,
        severity="warning",
        layers=(),
        steps=(first_step, int(steps[-1])),
        evidence={
            "plateau_from_step": first_step,
            "plateau_loss": fl(level),
            "best_later_loss": fl(best_after),
            "start_loss": fl(start),
            "first_window_loss": fl(meds[0]),
            "last_window_loss": fl(meds[-1]),
            "improvement_over_run": fl(total),
            "min_relative_improvement": th.min_relative_improvement,
            "early_fraction": th.early_fraction,
            "plateau_windows": n - e,
            "windows": n,
            "window_rows": th.window,
            **({} if spent is None else {"lr_spent_before": fl(through)}),
            "plateau_fall": fl((level - float(meds[-1])) / abs(level) if level else 0.0),
            "plateau_trend_z": fl(trend),
            "trend_z": th.trend_z,
            "still_falling": bool(trend <= -th.trend_z),
            "rising": rising,
            **step_size,
            **between,
        },
        message=(
            f"Loss plateau: from step {first_step} ({e}/{n} of the way through the logged "
            f"steps{lr_note}) the loss {went}"
        ),
        # A loss that climbs is not a gradient lost on the way: a lower rate takes smaller
        # steps (as symptoms.py says of a rising plateau with no other finding).
        remedies=LOWER_RATE
        if rising
        else hints(
            ("residual", "gives the gradient a path past layers that block it"),
            ("relu", "a non-saturating activation keeps the gradient flowing"),
            ("init_he", "a variance-preserving initialisation starts every layer learning"),
        ),
    )


#: Plateau rows count for the step size only at this share of the peak learning rate or
#: more: a decayed schedule's last steps are small by design.
_NEAR_PEAK = 0.5


class StepSize(NamedTuple):
    """How far the weight layers moved per step over a plateau (update ratios)."""

    median: float  # the median over rows of each row's median over the layers
    most: float  # the largest per-layer median over rows: the layer that moved most
    most_layer: str  # its name


def plateau_step_size(trace: Trace, start_step: int) -> StepSize | None:
    """The update ratios of the weight layers over the plateau's sampled rows from
    ``start_step`` (those at half the peak learning rate or more, where the rate is known).
    None with fewer than 3 rows."""
    steps, ratio = metric_rows(trace, "update_ratio")
    cols = core_layers(trace)
    keep = steps >= start_step
    lr = learning_rate_at(trace, steps) if len(steps) else None
    if lr is not None:
        keep &= lr >= _NEAR_PEAK * float(np.max(lr))
    if int(keep.sum()) < 3 or not len(cols):
        return None
    rows = ratio[keep][:, cols]
    with quiet_nan():
        value = float(np.nanmedian(np.nanmedian(rows, axis=1)))
        per_layer = np.nanmedian(rows, axis=0)
    if not np.isfinite(value) or not np.isfinite(per_layer).any():
        return None
    top = int(np.nanargmax(per_layer))
    return StepSize(value, float(per_layer[top]), trace.layers[int(cols[top])].name)


def read_out_layer(trace: Trace, measured: np.ndarray) -> int | None:
    """The column of the layer whose output the model's head reads, among the ``measured``
    columns (bool per layer): the last one in forward order, or the one before it when that
    is a weight layer (the head itself, whose logits carry the label prior every input
    shares). A head tied to the embedding (GPT-2's) is not a layer of its own, so the last
    layer is the final norm it reads. Layers never called as modules (``nn.MultiheadAttention``'s
    ``out_proj``) have no measurement and are passed over."""
    cols = np.flatnonzero(measured)
    if not len(cols):
        return None
    last = int(cols[-1])
    return int(cols[-2]) if trace.layers[last].role == "weight" and len(cols) > 1 else last


def plateau_between_inputs(trace: Trace, start_step: int) -> tuple[int, float] | None:
    """``(column, median act_between_inputs)`` of :func:`read_out_layer` over the sampled rows
    from ``start_step``: the share of that representation's variance that differs between
    inputs, low where every input gets nearly the same one. A layer counts as measured with 3
    rows or more there; None when none is."""
    steps, share = metric_rows(trace, "act_between_inputs")
    rows = share[steps >= start_step]
    col = read_out_layer(trace, np.isfinite(rows).sum(axis=0) >= 3)
    if col is None:
        return None
    values = rows[:, col]
    return col, float(np.median(values[np.isfinite(values)]))


def _lr_spent(trace: Trace, steps: np.ndarray, starts: np.ndarray) -> np.ndarray | None:
    """For each loss window, the share of the summed learning rate (over the logged loss
    rows) spent before it; None without a learning rate. Constant: ``window index / n``."""
    lr = learning_rate_at(trace, steps)
    if lr is None:
        return None
    per_window = np.add.reduceat(lr, starts)
    total = float(per_window.sum())
    if not total > 0:
        return None
    return np.concatenate(([0.0], np.cumsum(per_window)[:-1])) / total
