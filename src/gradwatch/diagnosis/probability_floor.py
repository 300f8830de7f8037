"""A loss stopped at the floor of cross-entropy over probabilities: a softmax applied twice.

``CrossEntropyLoss`` (``F.cross_entropy``) takes logits and applies log-softmax itself. Fed
outputs that already went through a softmax (an ``nn.Softmax`` at the end of the model, or
``softmax`` before the loss: a common mistake), it squashes values in [0, 1] again, and its
lowest value, reached when the model puts all its probability on the right class, is
``log(e + C - 1) - 1`` for ``C`` classes (1.4612 for 10), far above 0; its gradient shrinks
as the model grows confident. No batch's loss can go below that floor, where a model whose
loss merely levels off near it has batches on both sides; nor above ``log(e + C - 1)`` (all
the probability on a wrong class), which keeps a wrong ``C`` out: a language model whose
last weight layer is a block's projection, its output head tied to the embedding, starts
above it.

Measured (digits, Adam 1e-2, batch 64, 600 steps): a 64-64-10 ReLU MLP ending in
``nn.Softmax`` levels off at 1.4725 (the floor + 0.8%), its lowest batch 1.4619, and was told
"still falling, slowly ... more steps go further"; without the softmax it reaches 0.015. An
HF ResNet with ``softmax`` before the loss levelled off at 1.465 in 600 steps (named).

Example:
    >>> import math
    >>> round(cross_entropy_floor(10), 4), round(math.log(10), 4)
    (1.4612, 2.3026)
"""

from __future__ import annotations

import math

import numpy as np

from ..trace import Trace
from ._common import scalar_rows

#: The plateau's last loss window at most this far above the floor (our choice: the MLP and
#: the ResNet above ended 0.8% and 1.0% above it, still creeping down).
FLOOR_MARGIN = 0.015
#: No logged loss below the floor by more than float rounding.
_ROUNDING = 1e-4


def cross_entropy_floor(classes: int) -> float:
    """The lowest cross-entropy of probabilities over ``classes`` classes passed as logits:
    ``-log softmax(p)_y`` at ``p`` = the one-hot of ``y``."""
    return math.log(math.e + classes - 1) - 1.0


def output_classes(trace: Trace) -> int | None:
    """The output width of the model's last weight layer (a Linear's or a convolution's
    first weight dimension), or None."""
    weights = [layer for layer in trace.layers if layer.role == "weight"]
    if not weights:
        return None
    last = max(weights, key=lambda layer: layer.depth)
    shape = last.shapes.get("weight")
    return int(shape[0]) if shape and len(shape) >= 2 and shape[0] >= 2 else None


def at_probability_floor(trace: Trace, last_window_loss: float) -> tuple[float, int] | None:
    """``(floor, classes)`` where the loss looks stopped at :func:`cross_entropy_floor`: the
    plateau's last window within :data:`FLOOR_MARGIN` above it and every logged loss between
    it and ``floor + 1``, the range of cross-entropy over probabilities; None otherwise."""
    classes = output_classes(trace)
    if classes is None:
        return None
    floor = cross_entropy_floor(classes)
    _, loss = scalar_rows(trace, "loss")
    loss = loss[np.isfinite(loss)]
    if len(loss) == 0 or not floor <= last_window_loss <= floor * (1 + FLOOR_MARGIN):
        return None
    inside = loss.min() >= floor * (1 - _ROUNDING) and loss.max() <= (floor + 1) * (1 + _ROUNDING)
    return (floor, classes) if inside else None
