"""What the optimizer's weight decay alone would have done to a layer's weights over a span.

The watch records each layer's decay per unit of learning rate (``meta["config"]
["weight_decay"]``, recording/weight_decay.py: AdamW's decoupled ``lr * wd`` a step, SGD's
L2 term carried by momentum) and the learning rate at its recorded steps; over steps ``a``
to ``b`` decay alone multiplies the weights by ``exp(-sum(lr) * rate)``. Weights that
shrank about as much were shrunk by the decay; weights that shrank far more were taken down
by the updates themselves (an L2 penalty written into the loss, steps that drive them
toward 0). Measured (benchmarks/fault_sweep.py and the real corpus): HF Mixtral under AdamW
1e-3 with weight decay 10, its RMSNorm gains to 0.18 where decay alone gives 0.18; HF GPT-2
at AdamW 0.1 with AdamW's default decay 0.01, its final LayerNorm's gain to 0.3 where decay
alone gives 0.84 (15% of the log-shrink); the toy corpus's SGD 0.1 with weight decay 0.3,
to 0.011 where decay alone gives 0.0063.

Example:
    >>> from gradwatch.trace import Trace
    >>> t = Trace.from_arrays(["fc"], [0, 100], {"grad_rms": [[1.0], [1.0]]},
    ...                       scalars={"optimizer_lr": [1e-3, 1e-3]})
    >>> t.meta["config"] = {"weight_decay": {"form": "decoupled", "per_lr": {"fc": 10.0}}}
    >>> round(decay_alone(t, ["fc"], 0, 100)["fc"], 3)
    0.368
"""

from __future__ import annotations

import math

import numpy as np

from ..trace import Trace
from ._loop import loop_config
from .rates import learning_rate_at

#: Decay explains a shrink when it accounts for at least this share of its logarithm (our
#: choice: half; the runs measured sit at 1.0 and over, and at 0.15).
EXPLAINS = 0.5


def decay_alone(trace: Trace, names: list[str], a: int, b: int) -> dict[str, float] | None:
    """By layer name, the factor decay alone would have multiplied each of ``names``'s
    weights by from step ``a`` to ``b`` (1.0 for a layer it does not decay); None where
    the optimizer's form of decay or the learning rate is unknown."""
    record = loop_config(trace, "weight_decay")
    per_lr = None if record is None else record.get("per_lr")
    if record is None or record.get("form") is None or not isinstance(per_lr, dict):
        return None
    lr = learning_rate_at(trace, np.arange(a, max(a, b)))
    if lr is None:
        return None
    spent = float(lr.sum())
    return {name: math.exp(-spent * float(per_lr.get(name, 0.0))) for name in names}


def explained(shrunk_to: float, alone: float) -> bool:
    """Whether decay alone (``alone``) accounts for at least :data:`EXPLAINS` of a shrink to
    ``shrunk_to`` (both factors of the initial norm), on a log scale."""
    if not 0 < shrunk_to < 1:
        return False
    return alone < 1 and math.log(alone) / math.log(shrunk_to) >= EXPLAINS
