"""Whether the loss improved: what tells a drift or a poor start the model recovered from
(``info``) from one that cost it (a warning).

Improved means the loss's last window ends at least ``min_progress`` of its start below the
start, no window gave back more than ``max_relapse`` of the progress made before it, and
neither the loss nor a gradient went non-finite (:func:`_loss.loss_response`).
"""

from __future__ import annotations

import sys

from ..trace import Trace
from ._common import fl
from ._loss import loss_response


def loss_outcome(
    trace: Trace,
    window: int,
    min_progress: float,
    max_relapse: float,
    last_step: int = sys.maxsize,
) -> dict[str, object]:
    """The evidence of how the loss fared up to ``last_step``; ``loss_improving`` says
    whether it improved. Empty when no loss can serve (none logged, or a start <= 0)."""
    resp = loss_response(trace, last_step, window, min_progress, 1)
    if resp is None:
        return {}
    improving = not resp.nonfinite and resp.progress >= min_progress and resp.relapse <= max_relapse
    return {
        "loss_start": fl(resp.start),
        "loss_end": fl(resp.end),
        "loss_progress": fl(resp.progress),
        "min_progress": min_progress,
        "max_relapse_seen": fl(resp.relapse),
        "max_relapse": max_relapse,
        "loss_improving": improving,
    }
