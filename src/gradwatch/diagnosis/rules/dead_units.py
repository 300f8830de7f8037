"""``dead_units``: ReLU units that never activate, so no gradient ever reaches them.

``act_dead`` is the fraction of a layer's units that output 0 for the whole batch. Only where
the activation's derivative is exactly 0 for every input that gives that output is such a
unit dead: ReLU and ReLU6 (``max(0, x)``, clamped at 6), whose weights then get no gradient,
so the unit cannot recover. LeakyReLU, PReLU, RReLU, ELU, CELU, SELU, GELU, SiLU, Mish and
Hardswish have a non-zero derivative for negative inputs (at least somewhere), so a unit
whose output sits at or below 0 still learns: they are not judged here. Hardtanh is bounded,
not dead (``saturated_activation``). A layer with no recognised activation is not judged
either: the rule cannot claim a derivative it does not know.

Values at steps where a layer's output or gradient was non-finite are left out (a NaN is not
positive, so it reads as a dead unit): those steps are ``nonfinite_gradient``'s. Per layer,
the median over the last ``window`` sampled rows; fires above ``warn_fraction`` (SageMaker
Debugger's DeadRelu threshold_layer, 50% of a layer).
"""

from __future__ import annotations

import numpy as np

from ..._activations import ZERO_GRADIENT
from ...trace import Trace
from .._common import by_layer, fractions_over, hints
from ..finding import Finding
from ..thresholds import DeadUnitsThresholds

RULE = "dead_units"


def dead_capable(trace: Trace) -> np.ndarray:
    """Column indices of layers followed by an activation whose derivative is 0 wherever its
    output is off (``_activations.ZERO_GRADIENT``: ReLU, ReLU6, and classes that compute
    them, by ``LayerInfo.activation_like``)."""
    return np.asarray(
        [i for i, la in enumerate(trace.layers) if la.activation_like in ZERO_GRADIENT],
        dtype=np.int64,
    )


def check(trace: Trace, th: DeadUnitsThresholds) -> Finding | None:
    """Return the dead-units finding of ``trace``, or None."""
    cols = dead_capable(trace)
    if len(cols) == 0:
        return None
    hits = fractions_over(trace, "act_dead", th.window, th.warn_fraction, cols)
    if hits is None:
        return None
    steps, names = hits.steps, hits.names
    worst = float(hits.values[0])
    act = trace.layers[int(hits.layers[0])].activation
    return Finding(
        rule=RULE,
        severity="critical" if worst > th.critical_fraction else "warning",
        layers=tuple(names),
        steps=(int(steps[0]), int(steps[-1])),
        evidence={
            "metric": "act_dead",
            "dead_fraction": by_layer(names, hits.values),
            "layers_over_threshold": len(names),
            "activation": act,
            "warn_fraction": th.warn_fraction,
            "critical_fraction": th.critical_fraction,
            "window_rows": th.window,
        },
        message=(
            f"Dead units: {worst:.0%} of the units of layer "
            f"{trace.layer_label(names[0])!r} output 0 for every "
            f"input; {act}'s derivative is 0 there, so no gradient reaches their weights and "
            "they cannot recover."
        ),
        remedies=hints(
            ("leaky_relu", "a small slope for negative inputs keeps a gradient flowing"),
            ("init_he", "restarts weights and biases at a scale where about half the units fire"),
            ("batchnorm", "re-centres pre-activations so units fire on part of the batch"),
            ("elu", "a smooth negative part that never has a zero derivative"),
        ),
    )
