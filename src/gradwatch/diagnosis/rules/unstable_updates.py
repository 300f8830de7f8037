"""``unstable_updates``: update ratios far from the ~1e-3 of healthy training.

The update ratio ``||theta_after - theta_before|| / ||theta_before||`` is the real step the
optimizer took (Adam included). Per layer, its median over the last ``window`` sampled rows;
the rule fires when it exceeds ``warn_ratio`` (100x CS231n's ~1e-3 rule of thumb; critical
above SageMaker Debugger's large_threshold, 10) or falls below SageMaker's small_threshold
(1e-8: the layer does not move at all).
"""

from __future__ import annotations

import numpy as np

from ...trace import Trace
from .._common import fl, hints, metric_rows, nanmedian, quiet_nan
from ..finding import Finding, Severity
from ..thresholds import UnstableUpdatesThresholds

RULE = "unstable_updates"


def check(trace: Trace, th: UnstableUpdatesThresholds) -> Finding | None:
    """Return the unstable-updates finding of ``trace``, or None."""
    steps, ur = metric_rows(trace, "update_ratio")
    if len(steps) == 0 or ur.shape[1] == 0:
        return None
    tail = ur[-min(th.window, len(ur)) :]
    with quiet_nan():
        med = nanmedian(tail, axis=0)
        peak = np.nanmax(ur, axis=0)
    ok = np.isfinite(med)
    high = np.flatnonzero(ok & (med > th.warn_ratio))
    low = np.flatnonzero(ok & (med < th.small_ratio))
    if len(high) == 0 and len(low) == 0:
        return None
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
        evidence["high_update_ratio"] = {
            n: fl(med[i]) for n, i in zip(names_hi[:20], high[:20], strict=True)
        }
        evidence["peak_update_ratio"] = {
            n: fl(peak[i]) for n, i in zip(names_hi[:20], high[:20], strict=True)
        }
        worst = float(med[high[0]])
        severity = "critical" if worst > th.critical_ratio else "warning"
        message = (
            f"Unstable updates: each step changes the weights of {names_hi[0]} by "
            f"{worst:.2g} of their norm (healthy training is near 0.001), so the learning "
            "rate is far too high for this layer and every step overshoots."
        )
    else:
        evidence["low_update_ratio"] = {
            n: fl(med[i]) for n, i in zip(names_lo[:20], low[:20], strict=True)
        }
        severity = "warning"
        message = (
            f"Unstable updates: the weights of {names_lo[0]} change by less than "
            f"{th.small_ratio:g} of their norm per step, so that layer is not training."
        )
    span_steps = steps[-len(tail) :]
    return Finding(
        rule=RULE,
        severity=severity,
        layers=tuple(names_hi + names_lo),
        steps=(int(span_steps[0]), int(span_steps[-1])),
        evidence=evidence,
        message=message,
        remedies=hints(
            (
                "clip_norm",
                "bounds the step size whatever the gradient (and lower the learning rate)",
            ),
            ("clip_adaptive", "clips each update relative to its parameter's norm"),
            ("layernorm", "makes each layer less sensitive to the size of its weights' steps"),
        ),
    )
