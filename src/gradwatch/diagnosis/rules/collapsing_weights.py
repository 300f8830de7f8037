"""``collapsing_weights``: weight norms drifting toward zero.

The run is split into ``windows`` equal spans; per layer, the median weight norm of each;
the rule fires when a layer's last span is below ``warn_fraction`` of its first span *and*
the spans fall steadily (at least ``min_falling_fraction`` of consecutive pairs decrease):
a drift, not a jump.
Strong weight decay or an L2 penalty that outweighs the loss does this; small weights pass a
small signal forward and a small gradient backward.
"""

from __future__ import annotations

import itertools

import numpy as np

from ...trace import Trace
from .._common import by_layer, hints, metric_rows, nanmedian, quiet_nan
from ..finding import Finding
from ..thresholds import CollapsingWeightsThresholds

RULE = "collapsing_weights"


def check(trace: Trace, th: CollapsingWeightsThresholds) -> Finding | None:
    """Return the collapsing-weights finding of ``trace``, or None."""
    steps, wn = metric_rows(trace, "weight_norm")
    n = len(steps)
    n_win = min(th.windows, n)
    if n_win < th.min_windows or wn.shape[1] == 0:
        return None
    # The run split into `windows` equal spans: a drift is judged over the whole run, so a
    # slow fall under step-to-step noise still shows as falling medians.
    bounds = np.linspace(0, n, n_win + 1).astype(np.int64)
    meds = np.stack([nanmedian(wn[a:b], axis=0) for a, b in itertools.pairwise(bounds)])
    with quiet_nan():
        first = meds[0]
        ratio = meds[-1] / first
        falling = np.mean(np.diff(meds, axis=0) < 0, axis=0)
    ok = np.isfinite(ratio) & (first > 0)
    hit = ok & (ratio < th.warn_fraction) & (falling >= th.min_falling_fraction)
    if not hit.any():
        return None
    idx = np.flatnonzero(hit)
    idx = idx[np.argsort(ratio[idx])]  # most collapsed first
    names = [trace.layers[i].name for i in idx]
    worst = float(ratio[idx[0]])
    return Finding(
        rule=RULE,
        severity="critical" if worst < th.critical_fraction else "warning",
        layers=tuple(names),
        steps=(int(steps[0]), int(steps[-1])),
        evidence={
            "metric": "weight_norm",
            "final_over_initial": by_layer(names, ratio[idx]),
            "falling_window_fraction": by_layer(names, falling[idx]),
            "warn_fraction": th.warn_fraction,
            "critical_fraction": th.critical_fraction,
            "min_falling_fraction": th.min_falling_fraction,
            "windows": n_win,
        },
        message=(
            "Collapsing weights: the weights of layer "
            f"{trace.layer_label(names[0])!r} shrank steadily to "
            f"{worst:.2g} of their initial norm; weight decay (or a penalty) pulls harder than "
            "the loss pushes, and shrinking weights shrink both the signal and its gradient."
        ),
        remedies=hints(
            ("layernorm", "makes the layer's output independent of its weight scale"),
            ("batchnorm", "also rescales the signal whatever the weight norm"),
            ("init_he", "restart from a variance-preserving scale (and lower weight decay)"),
        ),
    )
