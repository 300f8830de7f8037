"""``stalled_early_layers``: the early layers' parameters change far less than the late ones'.

Reads the real update ratio ``||theta_after - theta_before|| / ||theta_before||`` (sampled
steps). Per layer, the median over the last ``window`` sampled rows; the rule fires when the
least-squares trend of its log10 along depth rises ``warn_decades`` from the first layer to
the last. This is what a
user sees of a vanishing gradient under SGD: the first layers barely learn.
"""

from __future__ import annotations

import numpy as np

from ...trace import Trace
from .._common import (
    core_layers,
    depth_span,
    end_groups,
    fl,
    hints,
    metric_rows,
    nanmedian,
    pow10,
    quiet_nan,
    safe_log10,
)
from ..finding import Finding
from ..thresholds import StalledEarlyLayersThresholds

RULE = "stalled_early_layers"


def check(trace: Trace, th: StalledEarlyLayersThresholds) -> Finding | None:
    """Return the stalled-early-layers finding of ``trace``, or None."""
    steps, ur = metric_rows(trace, "update_ratio")
    cols = core_layers(trace)
    if len(steps) == 0 or len(cols) < th.min_layers:
        return None
    tail = ur[-min(th.window, len(ur)) :, cols]
    with quiet_nan():
        prof = nanmedian(safe_log10(tail), axis=0)  # (L,) log10 median update ratio
    ok = np.flatnonzero(np.isfinite(prof))
    if len(ok) < th.min_layers:
        return None
    contrast = float(depth_span(prof[ok][None, :])[0])
    first, last = end_groups(len(ok))
    early = prof[ok[first]]
    if contrast < th.warn_decades:
        return None
    names = [trace.layers[int(cols[i])].name for i in ok]
    slowest = [names[int(i)] for i in first[np.argsort(early)]]
    span_steps = steps[-len(tail) :]
    return Finding(
        rule=RULE,
        severity="critical" if contrast >= th.critical_decades else "warning",
        layers=tuple(slowest),
        steps=(int(span_steps[0]), int(span_steps[-1])),
        evidence={
            "metric": "update_ratio",
            "late_over_early_decades": fl(contrast),
            "late_over_early_factor": fl(pow10(contrast)),
            "early_update_ratio": {names[int(i)]: fl(pow10(prof[ok[i]])) for i in first},
            "late_update_ratio": {names[int(i)]: fl(pow10(prof[ok[i]])) for i in last},
            "warn_decades": th.warn_decades,
            "critical_decades": th.critical_decades,
            "window_rows": th.window,
        },
        message=(
            f"Stalled early layers: the first layers' weights change {pow10(contrast):.2g}x "
            "less per step than the last layers', because the gradient reaching them is that "
            "much smaller, so they would need that many more steps to learn as much."
        ),
        remedies=hints(
            ("residual", "skip connections deliver the loss gradient straight to early layers"),
            ("batchnorm", "normalised inputs keep each layer's gradient on a common scale"),
            ("init_he", "a variance-preserving initialisation keeps the per-layer gain near 1"),
            ("layerwise_pretraining", "trains the early layers before fine-tuning the whole"),
        ),
    )
