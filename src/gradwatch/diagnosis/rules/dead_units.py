"""``dead_units``: ReLU-like units that never activate.

``act_dead`` is the fraction of a layer's units that output 0 for the whole batch; a dead
unit passes no gradient, so its weights never change and it stays dead. Per layer, its median
over the last ``window`` sampled rows; fires above ``warn_fraction`` (SageMaker Debugger's
DeadRelu threshold_layer, 50% of a layer).
"""

from __future__ import annotations

from ...trace import Trace
from .._common import by_layer, fractions_over, hints
from ..finding import Finding
from ..thresholds import DeadUnitsThresholds

RULE = "dead_units"


def check(trace: Trace, th: DeadUnitsThresholds) -> Finding | None:
    """Return the dead-units finding of ``trace``, or None."""
    hits = fractions_over(trace, "act_dead", th.window, th.warn_fraction)
    if hits is None:
        return None
    steps, names = hits.steps, hits.names
    worst = float(hits.values[0])
    return Finding(
        rule=RULE,
        severity="critical" if worst > th.critical_fraction else "warning",
        layers=tuple(names),
        steps=(int(steps[0]), int(steps[-1])),
        evidence={
            "metric": "act_dead",
            "dead_fraction": by_layer(names, hits.values),
            "layers_over_threshold": len(names),
            "warn_fraction": th.warn_fraction,
            "critical_fraction": th.critical_fraction,
            "window_rows": th.window,
        },
        message=(
            f"Dead units: {worst:.0%} of the units of layer {names[0]!r} output 0 for every "
            "input; ReLU's derivative is 0 there, so no gradient reaches their weights and "
            "they cannot recover."
        ),
        remedies=hints(
            ("leaky_relu", "a small slope for negative inputs keeps a gradient flowing"),
            ("init_he", "restarts weights and biases at a scale where about half the units fire"),
            ("batchnorm", "re-centres pre-activations so units fire on part of the batch"),
            ("elu", "a smooth negative part that never has a zero derivative"),
        ),
    )
