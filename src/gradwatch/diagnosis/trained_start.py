"""A loss plateau from the first step of a model that started trained.

An untrained classifier's outputs are near uniform, so its cross-entropy starts near
``log C`` over its ``C`` classes, and binary cross-entropy with logits near ``log 2`` per
output. Measured on the real corpus (seed 0), every model built from its config starts at
0.76-1.06 of that level: HF BERT 0.69 (``log 2`` = 0.693), ResNet 2.31, wav2vec2 2.30
(``log 10`` = 2.303), SegFormer 1.94, the pre-LN residual MLP 1.76 (the lowest, 0.76), T5
4.49, LSTM LM 4.63, GPT-2 5.12-5.42 (``log 256`` = 5.545). A loss that never improved from a
start under :data:`TRAINED_SHARE` of that level comes from a model that started trained:
pretrained, or resumed from a checkpoint, with little left to learn from this data at this
rate. That is no gradient problem and no sign that the labels are wrong, which is what the
plateau's warning otherwise points at: such a plateau is ``info`` (``symptoms.py``).

Measured: a LoRA fine-tune (peft, r=8 on ``q_proj`` and ``v_proj``, AdamW 1e-3) of a 2-layer
HF Llama pretrained for 300 steps on the byte-LM task, continuing it on other windows: its
loss stayed near 1.9 for 200 steps, ``log 256`` = 5.55, and was told "Loss plateau ... look
at what the model is asked to learn (labels it cannot predict from its inputs, a frozen or
mis-wired output layer ...)", a warning.

The classification loss and its ``C`` are what the watch read in the loss's graph
(``meta["config"]["loss_graph"]``: ``kind``, and ``classes``, the width its log-softmax
normalises over; recording/loss_graph.py), not the model's last recorded layer, which a
fine-tune with a frozen head does not record (a LoRA run's last is an adapter's). With
either unknown (a loss logged as a float, a regression loss) nothing is said.

Example:
    >>> from gradwatch.trace import Trace
    >>> t = Trace.from_arrays(["fc"], [0, 1], {"grad_rms": [[1.0], [1.0]]})
    >>> t.meta["config"] = {"loss_graph": {"kind": "cross_entropy", "classes": 256}}
    >>> trained_start_clause(t, 1.9)[:45]
    'it started at 1.9, far below log(256) = 5.545'

    >>> trained_start_clause(t, 5.3) is None
    True
"""

from __future__ import annotations

import math

from ..trace import Trace
from ._loop import loop_config

#: A start under this share of the untrained level is no random initialisation's (the real
#: corpus's models start at 0.76-1.06 of it; our choice: half, a margin below the lowest).
TRAINED_SHARE = 0.5


def untrained_loss(trace: Trace) -> tuple[float, str] | None:
    """The loss an untrained model starts near, and how it was found (for a message); None
    where the loss's kind or the number of classes is unknown."""
    graph = loop_config(trace, "loss_graph")
    kind = None if graph is None else graph.get("kind")
    if kind == "bce_with_logits":
        return math.log(2), "log 2 = 0.693, binary cross-entropy of an untrained output"
    classes = graph.get("classes") if graph is not None and kind == "cross_entropy" else None
    if not isinstance(classes, int) or classes < 2:
        return None
    level = math.log(classes)
    return level, (
        f"log({classes}) = {level:.4g}, the cross-entropy of an untrained model over "
        f"{classes} classes"
    )


def trained_start_clause(trace: Trace | None, start: object) -> str | None:
    """Where a loss that never improved started far below :func:`untrained_loss`: the clause
    that says so (for the plateau's message), else None."""
    seen = None if trace is None else untrained_loss(trace)
    if seen is None or not isinstance(start, float) or not start > 0.0:
        return None
    level, says = seen
    if start >= TRAINED_SHARE * level:
        return None
    return f"it started at {start:.4g}, far below {says}"
