"""Where the loss started against an untrained model's: far below (a model that started
trained), or far above (logits that start too large).

An untrained classifier's outputs are near uniform, so its cross-entropy starts near
``log C`` over its ``C`` classes, and binary cross-entropy with logits near ``log 2`` per
output. Measured on the real corpus (seed 0), every model built from its config starts at
0.76-1.06 of that level: HF BERT 0.69 (``log 2`` = 0.693), ResNet 2.31, wav2vec2 2.30
(``log 10`` = 2.303), SegFormer 1.94, the pre-LN residual MLP 1.76 (the lowest, 0.76), T5
4.49, LSTM LM 4.63, GPT-2 5.12-5.42 (``log 256`` = 5.545). A loss that never improved from a
start under :data:`TRAINED_SHARE` of that level comes from a model that started trained:
pretrained, or resumed from a checkpoint, with little left to learn from this data at this
rate. That is no gradient problem and no sign that the labels are wrong, which is what the
plateau's warning otherwise points at: such a plateau is ``info`` (``symptoms.py``). A start
over :data:`HOT_START` times that level is the opposite: an initialisation whose logits start
so large that the softmax is saturated on wrong classes from the first step
(``poor_initialization`` names it, :func:`hot_start`). HF Qwen2, DeiT and ELECTRA built with
``initializer_range=1.0`` (50 times their default) start at 23.2, 8.2 and 23.7 (4.2, 3.6 and
34 times their level), their logits at std 8, 5.7 and 28 where their defaults give 0.01-0.16;
in 200 steps they reach 5.13 (the byte LM's uniform level), 1.99 and 1.79 (worse than chance)
with no finding, and ``init_xavier`` trains them (2.33, and 0.057 for ELECTRA).

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
#: A start over this many times the untrained level is an initialisation whose logits start
#: too large: the softmax starts saturated on classes it has no reason to prefer (our
#: choice: twice, a margin above the corpus's 1.06; HF Qwen2, DeiT and ELECTRA built with
#: initializer_range 1.0 start at 4.2, 3.6 and 34 times it).
HOT_START = 2.0
#: A hot start is recovered from once the loss ends under this share of the untrained level:
#: falling from an inflated start proves little (those three ended at 0.85-2.6 of it, the
#: same models at their default init at 0.08-0.41; our choice: half, between them).
HOT_RECOVERED = 0.5


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


def logged_multiple(trace: Trace) -> float | None:
    """How many times its mean over the examples the logged loss is, as its graph showed
    (``loss_graph.multiple``: 0.125 for a mean divided by 8 accumulation steps, the
    batch's size for a sum), or None where that is unknown (a loss with other terms, a float)."""
    graph = loop_config(trace, "loss_graph")
    multiple = None if graph is None else graph.get("multiple")
    if not isinstance(multiple, (int, float)) or not math.isfinite(multiple) or multiple <= 0:
        return None
    return float(multiple)


def _level_as_logged(trace: Trace, known_only: bool) -> tuple[float, str] | None:
    """:func:`untrained_loss` in the logged loss's units (times :func:`logged_multiple`),
    and how it was found; where the multiple is unknown, the level as it is, or None if
    ``known_only``."""
    seen = untrained_loss(trace)
    multiple = logged_multiple(trace)
    if seen is None or (multiple is None and known_only):
        return None
    level, says = seen
    if multiple is not None and abs(multiple - 1) > 1e-3:
        level *= multiple
        says = f"{says}, times {multiple:.4g} (the logged loss is that multiple of its mean)"
    return level, says


def trained_start_clause(trace: Trace | None, start: object) -> str | None:
    """Where a loss that never improved started far below :func:`untrained_loss` (in the
    logged loss's units where its multiple of the mean is known, :func:`logged_multiple`):
    the clause that says so (for the plateau's message), else None."""
    seen = None if trace is None else _level_as_logged(trace, known_only=False)
    if seen is None or not isinstance(start, float) or not start > 0.0:
        return None
    level, says = seen
    if start >= TRAINED_SHARE * level:
        return None
    return f"it started at {start:.4g}, far below {says}"


def hot_start(trace: Trace | None, start: object) -> tuple[float, float, str] | None:
    """``(start over the untrained level, that level, how it was found)`` where the loss
    started over :data:`HOT_START` times :func:`untrained_loss`, else None; the level in the
    logged loss's units (times :func:`logged_multiple`: a sum over the batch or a static
    loss scale starts that many times higher at any initialisation), only where that
    multiple is known (a loss with other terms starts elsewhere).

    Example:
        >>> from gradwatch.trace import Trace
        >>> t = Trace.from_arrays(["fc"], [0, 1], {"grad_rms": [[1.0], [1.0]]})
        >>> t.meta["config"] = {"loss_graph": {"kind": "cross_entropy", "classes": 256,
        ...                                    "multiple": 1.0}}
        >>> round(hot_start(t, 23.2)[0], 2), hot_start(t, 5.6)
        (4.18, None)
        >>> t.meta["config"]["loss_graph"]["multiple"] = 64.0  # a sum over 64 examples
        >>> round(hot_start(t, 23.2 * 64)[0], 2), hot_start(t, 23.2)
        (4.18, None)
    """
    seen = None if trace is None else _level_as_logged(trace, known_only=True)
    if seen is None or not isinstance(start, float) or not math.isfinite(start):
        return None
    level, says = seen
    return (start / level, level, says) if start > HOT_START * level else None
