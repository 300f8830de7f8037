"""``loss_plateau``: the loss stops improving early (needs the ``loss`` scalar).

Window medians of the logged loss. The plateau starts at the first window that no later
window improves on by ``min_relative_improvement`` (relative to its own loss); the rule
fires when it starts within the first ``early_fraction`` of the run and lasts at least
``min_windows`` windows: the run stopped learning early, the symptom users see first of a
vanishing gradient, dead units or saturation. A run still improving at the end, or one that
converged late, is quiet.
"""

from __future__ import annotations

import numpy as np

from ...trace import Trace
from .._common import fl, hints, quiet_nan, scalar_rows, window_medians
from ..finding import Finding
from ..thresholds import LossPlateauThresholds

RULE = "loss_plateau"


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
    scale = np.abs(meds)
    with quiet_nan():
        gain = np.where(scale > 0, (meds - later_best) / scale, 0.0)
    # The plateau starts at the first window after which no window improves enough; the
    # last window has no later one, so it never starts a plateau by itself.
    stuck = gain[:-1] < th.min_relative_improvement
    # A plateau from window e means every window from e on is stuck.
    tail_stuck = np.logical_and.accumulate(stuck[::-1])[::-1]
    if not tail_stuck.any():
        return None
    e = int(np.argmax(tail_stuck))
    if e > th.early_fraction * n or n - e < th.min_windows:
        return None
    first_step = int(steps[starts[e]])
    start_loss, best_after = float(meds[e]), float(later_best[e])
    total = (float(meds[0]) - float(np.min(meds))) / abs(float(meds[0])) if meds[0] else 0.0
    return Finding(
        rule=RULE,
        severity="warning",
        layers=(),
        steps=(first_step, int(steps[-1])),
        evidence={
            "plateau_from_step": first_step,
            "plateau_loss": fl(start_loss),
            "best_later_loss": fl(best_after),
            "first_window_loss": fl(meds[0]),
            "last_window_loss": fl(meds[-1]),
            "improvement_over_run": fl(total),
            "min_relative_improvement": th.min_relative_improvement,
            "early_fraction": th.early_fraction,
            "plateau_windows": n - e,
            "windows": n,
            "window_rows": th.window,
        },
        message=(
            f"Loss plateau: from step {first_step} ({e}/{n} of the way through the logged "
            f"steps) the loss stayed near {start_loss:.4g} and never improved by "
            f"{th.min_relative_improvement:.0%} again, so the weights stopped receiving a "
            "gradient that reduces it; the other findings say where it is lost."
        ),
        remedies=hints(
            ("residual", "gives the gradient a path past layers that block it"),
            ("relu", "a non-saturating activation keeps the gradient flowing"),
            ("init_he", "a variance-preserving initialisation starts every layer learning"),
        ),
    )
