"""``saturated_activation``: sigmoid/tanh units pinned near their bounds.

``act_saturated`` is the fraction of a layer's units whose activation sits where the
derivative is ~0. Per layer, its median over the last ``window`` sampled rows (persistent,
not one batch); fires above ``warn_fraction`` (SageMaker Debugger's 50% of a layer).
"""

from __future__ import annotations

import numpy as np

from ...trace import Trace
from .._common import by_layer, hints, tail_fraction
from ..finding import Finding
from ..thresholds import SaturatedActivationThresholds

RULE = "saturated_activation"


def check(trace: Trace, th: SaturatedActivationThresholds) -> Finding | None:
    """Return the saturated-activation finding of ``trace``, or None."""
    got = tail_fraction(trace, "act_saturated", th.window)
    if got is None:
        return None
    steps, frac = got
    hit = np.flatnonzero(np.isfinite(frac) & (frac > th.warn_fraction))
    if len(hit) == 0:
        return None
    hit = hit[np.argsort(-frac[hit], kind="stable")]
    names = [trace.layers[i].name for i in hit]
    worst = float(frac[hit[0]])
    act = trace.layers[int(hit[0])].activation or "sigmoid/tanh"
    return Finding(
        rule=RULE,
        severity="critical" if worst > th.critical_fraction else "warning",
        layers=tuple(names),
        steps=(int(steps[0]), int(steps[-1])),
        evidence={
            "metric": "act_saturated",
            "saturated_fraction": by_layer(names, frac[hit]),
            "layers_over_threshold": len(hit),
            "warn_fraction": th.warn_fraction,
            "critical_fraction": th.critical_fraction,
            "window_rows": th.window,
        },
        message=(
            f"Saturated activations: {worst:.0%} of the units of layer {names[0]!r} ({act}) sit "
            "at the flat ends of the curve, where the derivative is almost 0, so almost no "
            "gradient passes back through them."
        ),
        remedies=hints(
            ("relu", "ReLU does not saturate for positive inputs"),
            ("batchnorm", "re-centres the pre-activations where the curve is steep"),
            ("init_xavier", "weights scaled for sigmoid/tanh keep pre-activations near 0"),
            ("layernorm", "the same re-centring, per example"),
        ),
    )
