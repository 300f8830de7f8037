"""``saturated_activation``: sigmoid/tanh units pinned near their bounds.

``act_saturated`` is the fraction of a layer's units whose activation sits where the
derivative is ~0. Per layer, its median over the last ``window`` sampled rows (persistent,
not one batch); fires above ``warn_fraction`` (SageMaker Debugger's 50% of a layer).
"""

from __future__ import annotations

from ...trace import Trace
from .._common import by_layer, fractions_over, hints
from ..finding import Finding
from ..thresholds import SaturatedActivationThresholds

RULE = "saturated_activation"


def check(trace: Trace, th: SaturatedActivationThresholds) -> Finding | None:
    """Return the saturated-activation finding of ``trace``, or None."""
    hits = fractions_over(trace, "act_saturated", th.window, th.warn_fraction)
    if hits is None:
        return None
    steps, names = hits.steps, hits.names
    worst = float(hits.values[0])
    act = trace.layers[int(hits.layers[0])].activation or "sigmoid/tanh"
    return Finding(
        rule=RULE,
        severity="critical" if worst > th.critical_fraction else "warning",
        layers=tuple(names),
        steps=(int(steps[0]), int(steps[-1])),
        evidence={
            "metric": "act_saturated",
            "saturated_fraction": by_layer(names, hits.values),
            "layers_over_threshold": len(names),
            "warn_fraction": th.warn_fraction,
            "critical_fraction": th.critical_fraction,
            "window_rows": th.window,
        },
        message=(
            f"Saturated activations: {worst:.0%} of the units of layer "
            f"{trace.layer_label(names[0])!r} ({act}) sit "
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
