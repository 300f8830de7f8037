"""The learning rate as a trace records it: the optimizer's own (``optimizer_lr``, from the
watch) or the one a framework or user logs, read at any step; its peak; and whether the run
warmed up to it.
"""

from __future__ import annotations

import numpy as np

from ..trace import Trace
from ..trace.schema import OPTIMIZER_LR
from ._common import scalar_rows

#: Scalars read as the learning rate, the first one present: the recorder's own, then the
#: names frameworks and users log it under (the HF Trainer's ``learning_rate``).
LR_SCALARS = (OPTIMIZER_LR, "learning_rate", "lr")


def _rate_records(trace: Trace) -> tuple[np.ndarray, np.ndarray] | None:
    """(steps, rates) of the first of :data:`LR_SCALARS` the trace has with a positive
    value; None when it has none (no optimizer watched, nothing logged)."""
    for name in LR_SCALARS:
        at, lr = scalar_rows(trace, name)
        keep = lr >= 0
        if keep.any() and (lr[keep] > 0).any():
            return at[keep], lr[keep]
    return None


def learning_rate_at(trace: Trace, steps: np.ndarray) -> np.ndarray | None:
    """The learning rate at each of ``steps``, interpolated between the steps it was recorded
    at (held flat beyond them); None when the trace has none (no optimizer watched, nothing
    logged) or it is never positive."""
    records = _rate_records(trace)
    if records is None:
        return None
    return np.interp(np.asarray(steps, dtype=np.float64), *records)


def peak_learning_rate(trace: Trace) -> float | None:
    """The run's largest recorded learning rate; None when the trace has none."""
    records = _rate_records(trace)
    return None if records is None else float(np.max(records[1]))


#: A first learning rate below this share of the run's peak means the run warmed up (the rate
#: rose over the first steps); at or above it the first steps ran at the peak ("cold").
WARM_START_SHARE = 0.95
#: The first known rate must be this close to the run's first step to tell whether it warmed
#: up: the watch's ``optimizer_lr`` is recorded from the first step, but a trainer's own log
#: starts at its logging interval (HF's ``learning_rate`` at step ``logging_steps``, 500 by
#: default, after most warm-ups).
WARM_START_KNOWN_WITHIN = 10


def warm_up_length(trace: Trace) -> int | None:
    """Steps from the run's first step until its learning rate first reached
    :data:`WARM_START_SHARE` of its peak (0: no warm-up); None when the trace has no learning
    rate, or none known within :data:`WARM_START_KNOWN_WITHIN` steps of its first step."""
    records = _rate_records(trace)
    if records is None or not len(trace.steps):
        return None
    at, lr = records
    if at[0] > trace.steps[0] + WARM_START_KNOWN_WITHIN:
        return None
    reached = int(np.argmax(lr >= WARM_START_SHARE * float(np.max(lr))))
    return 0 if reached == 0 else int(at[reached] - trace.steps[0])


def started_cold(trace: Trace) -> bool | None:
    """Whether the run's first step already used its peak learning rate (no warm-up);
    None when that is not known (:func:`warm_up_length`)."""
    length = warm_up_length(trace)
    return None if length is None else length == 0
