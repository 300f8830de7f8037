"""A loop whose learning rate is 0 at every step: the optimizer steps by nothing.

A warm-up schedule starts its rate at 0 (``transformers.get_linear_schedule_with_warmup``,
a ``LambdaLR`` of ``step / warmup``) and raises it only as ``scheduler.step()`` is called; a
loop that forgets that call trains at 0 throughout. The watch records the rate each step
uses (``optimizer_lr``, the largest over the parameter groups), so such a run shows 0 at
every step, and what the rules measure then follows from it: a loss flat from the start and
"weights no longer move" with structural remedies. No remedy of the catalogue mends the
loop, so every alarm is told the cause and offers none; with no alarm, it is a note.

Measured (a 64-64-64-10 ReLU MLP on digits, AdamW 1e-3 under a 100-step linear warm-up, 300
steps): without ``scheduler.step()`` the rate stayed 0 and the loss at 2.31, told "Loss
plateau ... the other findings say where it is lost" and "Unstable updates: the weights of
layer 'L0 0' change by less than 1e-08 of their norm per step" with residual connections,
BatchNorm and He init as remedies; with it the loss went 2.31 -> 0.14.

Example:
    >>> import numpy as np
    >>> from gradwatch.trace import Trace
    >>> t = Trace.from_arrays(["fc"], [0, 1, 2], {"grad_rms": np.ones((3, 1))},
    ...                       scalars={"optimizer_lr": np.zeros(3)})
    >>> zero_rate_steps(t)
    {'steps': 3, 'scalar': 'optimizer_lr'}
"""

from __future__ import annotations

import numpy as np

from ..trace import Trace
from ._common import scalar_rows
from .finding import LoopMistake
from .rates import LR_SCALARS

#: Steps whose recorded rate must all be 0 (our choice: a few, since a warm-up's first step
#: is at 0 by design and the next is not).
MIN_STEPS = 3


def zero_rate_steps(trace: Trace) -> dict[str, int | str] | None:
    """``{"steps": n, "scalar": name}`` when the learning rate the trace records first (of
    :data:`~.rates.LR_SCALARS`) was exactly 0 at each of its ``n`` (>= :data:`MIN_STEPS`)
    recorded steps; else None."""
    for name in LR_SCALARS:
        _, lr = scalar_rows(trace, name)
        if len(lr):
            zero = len(lr) >= MIN_STEPS and not np.any(lr != 0.0)
            return {"steps": len(lr), "scalar": name} if zero else None
    return None


def _sentence(seen: dict[str, int | str]) -> str:
    return (
        f"The learning rate was 0 at each of the {seen['steps']} steps recorded "
        f"(`{seen['scalar']}`): every step moved the weights by nothing, so nothing trains. A "
        "warm-up schedule starts at 0 and rises only as `scheduler.step()` is called: call it "
        "after each `optimizer.step()`"
    )


#: Read by the settling passes (``loop_mistakes.py``): ``settle_zero_rate`` tells every
#: alarm, ``zero_rate_note`` is the note where none carries it.
ZERO_RATE = LoopMistake(zero_rate_steps, _sentence, "zero_learning_rate")
settle_zero_rate, zero_rate_note = ZERO_RATE.settle, ZERO_RATE.note
