"""``loss_plateau``: the loss stops improving early (needs the ``loss`` scalar).

Window medians of the logged loss; the rule fires when the best later window improves on the
first window by less than ``min_relative_improvement`` of its size: the run is not learning,
the symptom users see first of a vanishing gradient, dead units or saturation.
"""

from __future__ import annotations

import numpy as np

from ...trace import Trace
from .._common import fl, hints, scalar_rows, window_medians
from ..finding import Finding
from ..thresholds import LossPlateauThresholds

RULE = "loss_plateau"


def check(trace: Trace, th: LossPlateauThresholds) -> Finding | None:
    """Return the loss-plateau finding of ``trace``, or None."""
    steps, loss = scalar_rows(trace, "loss")
    meds, _ = window_medians(loss, th.window)
    if len(meds) < th.min_windows:
        return None
    start, best = float(meds[0]), float(np.min(meds[1:]))
    scale = abs(start)
    if scale == 0.0:
        return None  # a loss of 0 at the start cannot improve: nothing to learn
    improvement = (start - best) / scale
    if improvement >= th.min_relative_improvement:
        return None
    return Finding(
        rule=RULE,
        severity="warning",
        layers=(),
        steps=(int(steps[0]), int(steps[-1])),
        evidence={
            "first_window_loss": fl(start),
            "best_window_loss": fl(best),
            "last_window_loss": fl(meds[-1]),
            "relative_improvement": fl(improvement),
            "min_relative_improvement": th.min_relative_improvement,
            "windows": len(meds),
            "window_rows": th.window,
        },
        message=(
            f"Loss plateau: over {len(loss)} logged steps the loss improved by only "
            f"{max(improvement, 0.0):.1%} (from {start:.4g} to at best {best:.4g}), so the "
            "weights are not receiving a gradient that reduces it; see the other findings "
            "for where the gradient is lost."
        ),
        remedies=hints(
            ("residual", "gives the gradient a path past layers that block it"),
            ("relu", "a non-saturating activation keeps the gradient flowing"),
            ("init_he", "a variance-preserving initialisation starts every layer learning"),
        ),
    )
