"""``unstable_updates``: update ratios far from the ~1e-3 of healthy training.

The update ratio ``||theta_after - theta_before|| / ||theta_before||`` is the real step the
optimizer took (Adam included). Per layer, its median over consecutive blocks of ``window``
sampled rows (so one odd step is not enough); the rule fires when a block's median exceeds
``warn_ratio`` (100x CS231n's ~1e-3 rule of thumb; critical above SageMaker Debugger's
large_threshold, 10), or when the last block's median falls below SageMaker's
small_threshold (1e-8: the layer no longer moves at all).
"""

from __future__ import annotations

import numpy as np

from ...trace import Trace
from .._common import block_medians, by_layer, hints, metric_rows, quiet_nan
from ..finding import Finding, Severity
from ..thresholds import UnstableUpdatesThresholds

RULE = "unstable_updates"


def check(trace: Trace, th: UnstableUpdatesThresholds) -> Finding | None:
    """Return the unstable-updates finding of ``trace``, or None."""
    steps, ur = metric_rows(trace, "update_ratio")
    if len(steps) == 0 or ur.shape[1] == 0:
        return None
    blocks, starts = block_medians(ur, th.window)  # (B, L)
    with quiet_nan():
        med = np.nanmax(blocks, axis=0)  # worst sustained ratio of each layer
    last = blocks[-1]
    high = np.flatnonzero(np.isfinite(med) & (med > th.warn_ratio))
    low = np.flatnonzero(np.isfinite(last) & (last < th.small_ratio))
    if len(high) == 0 and len(low) == 0:
        return None
    hot_blocks = np.flatnonzero((blocks[:, high] > th.warn_ratio).any(axis=1))
    high = high[np.argsort(-med[high])]
    names_hi = [trace.layers[i].name for i in high]
    names_lo = [trace.layers[i].name for i in low]
    severity: Severity
    evidence: dict[str, object] = {
        "metric": "update_ratio",
        "warn_ratio": th.warn_ratio,
        "critical_ratio": th.critical_ratio,
        "small_ratio": th.small_ratio,
        "window_rows": th.window,
    }
    if len(high):
        evidence["high_update_ratio"] = by_layer(names_hi, med[high])
        worst = float(med[high[0]])
        severity = "critical" if worst > th.critical_ratio else "warning"
        message = (
            f"Unstable updates: each step changes the weights of layer {names_hi[0]!r} by "
            f"{worst:.2g} of their norm (healthy training is near 0.001), so the learning "
            "rate is far too high for this layer and every step overshoots."
        )
    else:
        evidence["low_update_ratio"] = by_layer(names_lo, last[low])
        severity = "warning"
        message = (
            f"Unstable updates: the weights of layer {names_lo[0]!r} change by less than "
            f"{th.small_ratio:g} of their norm per step, so that layer is no longer training."
        )
    if len(high):
        remedies = hints(
            (
                "clip_norm",
                "bounds the step size whatever the gradient (and lower the learning rate)",
            ),
            ("clip_adaptive", "clips each update relative to its parameter's norm"),
            ("layernorm", "makes each layer less sensitive to the size of its weights' steps"),
        )
    else:
        # Updates too small to train: clipping would shrink them further; the layer needs
        # a gradient (it usually sits below a vanishing one).
        remedies = hints(
            ("residual", "an identity path delivers the loss gradient to the stalled layer"),
            ("batchnorm", "re-scales each layer so its gradient is not lost on the way"),
            ("init_he", "a variance-preserving initialisation keeps the per-layer gain near 1"),
        )
    if len(hot_blocks):
        b0, b1 = int(hot_blocks[0]), int(hot_blocks[-1])
        end_row = int(starts[b1 + 1]) - 1 if b1 + 1 < len(starts) else len(steps) - 1
        span = (int(steps[starts[b0]]), int(steps[end_row]))
        evidence["blocks_over_warn_ratio"] = len(hot_blocks)
    else:
        span = (int(steps[starts[-1]]), int(steps[-1]))
    return Finding(
        rule=RULE,
        severity=severity,
        layers=tuple(names_hi + names_lo),
        steps=span,
        evidence=evidence,
        message=message,
        remedies=remedies,
    )
