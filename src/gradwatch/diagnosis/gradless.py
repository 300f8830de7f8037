"""Findings of a loop whose optimizer steps without the gradients: nothing trains.

``optimizer.zero_grad()`` between ``loss.backward()`` and ``optimizer.step()`` clears the
gradients before the step can use them: with ``set_to_none=True`` (torch's default) every
``.grad`` is None and the optimizer skips every parameter; with ``False`` every gradient is
zeros, and the step moves the weights by weight decay alone. ``step()`` before ``backward()``,
or no ``backward()`` at all, steps before any gradient exists. The watch records the gradient
each layer holds at the optimizer's step, so such a run shows none on any layer at any step
(its gradient statistics missing, or exactly 0), and what the rules measure then follows
from it: a loss flat from the start, "weights no longer move" with structural remedies, or
"tiny steps, so the learning rate is likely too low". No remedy of the catalogue mends the
loop, so every alarm is told the cause and offers none; with no alarm, it is a note.

Measured (a 64-64-64-10 ReLU MLP on digits, 200 steps, loss 2.30 throughout): with
``zero_grad()`` between ``backward()`` and ``step()``, or ``step()`` before ``backward()``,
or no ``backward()``, under Adam: "Loss plateau ... the other findings say where it is lost"
and "Unstable updates: ... no longer training"; with ``zero_grad(set_to_none=False)`` between
them under AdamW: "Loss plateau with tiny steps ... the learning rate is likely too low".

A loop whose optimizer reads the gradients elsewhere (DeepSpeed's ZeRO keeps them in its own
buffers, an optimizer run in backward hooks sets ``.grad`` to None) also shows none at the
step, but its weights move: missing gradients count only with weights that never changed.
A model whose signal dies (a layer's output constant: dead ReLUs with no bias after them)
gets exactly zero gradients from a right loop: zeros count only while every layer's output
varies.

Example:
    >>> import numpy as np
    >>> from gradwatch.trace import Trace
    >>> t = Trace.from_arrays(["fc", "head"], [0, 1, 2], {
    ...     "grad_norm": np.zeros((3, 2)), "weight_norm": np.ones((3, 2))})
    >>> gradless_steps(t)
    {'steps': 3, 'gradients': 'zero'}
"""

from __future__ import annotations

import numpy as np

from ..trace import Trace
from ._common import metric_rows
from .finding import LoopMistake
from .unstepped import MIN_SAMPLES, UNCHANGED

#: Optimizer steps that must all be without a gradient (our choice: a few, so that one
#: step taken before the first backward, as a warm-start may do, is not a loop's habit).
MIN_STEPS = 3


def gradless_steps(trace: Trace) -> dict[str, int | str] | None:
    """``{"steps": n, "gradients": "none" | "zero"}`` when at each of the trace's ``n``
    (>= :data:`MIN_STEPS`) optimizer steps no layer held a nonzero gradient (``"none"``: no
    layer held one at all, and no weight ever changed; ``"zero"``: they held zeros); else
    None. A step GradScaler skipped (its gradients were not finite) rules it out."""
    if not trace.has_metric("grad_norm") or len(trace.steps) < MIN_STEPS:
        return None
    if trace.has_scalar("skipped"):
        skipped = trace.scalar("skipped")
        if np.any((skipped != 0) & ~np.isnan(skipped)):
            return None
    grads = trace.matrix("grad_norm")  # (all rows: a step without gradients has none)
    finite = np.isfinite(grads)
    if grads.size == 0 or np.any(grads[finite] != 0.0) or np.isinf(grads).any():
        return None
    held = int(finite.any(axis=1).sum())  # steps whose gradients were all zeros
    if held:
        enough = held >= MIN_STEPS and not _signal_dies(trace)
        return {"steps": held, "gradients": "zero"} if enough else None
    return {"steps": len(trace.steps), "gradients": "none"} if _weights_unchanged(trace) else None


def _signal_dies(trace: Trace) -> bool:
    """Whether some layer's output is constant (its ``act_std`` exactly 0 wherever measured):
    every weight after it then gets an exactly zero gradient (dead ReLUs with no bias), a
    model's failure, not the loop's."""
    _, std = metric_rows(trace, "act_std")
    for column in std.T:
        measured = column[np.isfinite(column)]
        if len(measured) and not np.any(measured != 0.0):
            return True
    return False


def _weights_unchanged(trace: Trace) -> bool:
    """Whether every layer's weight norm was measured twice or more and never changed."""
    _, norms = metric_rows(trace, "weight_norm")
    if norms.size == 0:
        return False
    for column in norms.T:
        w = column[np.isfinite(column)]
        if len(w) < MIN_SAMPLES or w.max() - w.min() > UNCHANGED * abs(w.max()):
            return False
    return True


def _sentence(seen: dict[str, int | str]) -> str:
    held = (
        "every gradient was zeros (zeroed in place, as `zero_grad(set_to_none=False)` does)"
        if seen["gradients"] == "zero"
        else "no parameter had a gradient (`.grad` was None) and no weight ever changed"
    )
    return (
        f"At each of the optimizer's {seen['steps']} steps {held}: the loop steps without the "
        "gradients of `backward()`, so nothing trains. `zero_grad()` between `backward()` "
        "and `step()` clears them before the step; `step()` before `backward()`, or no "
        "`backward()`, steps before they exist. Call `zero_grad()`, then `backward()`, then "
        "`step()`"
    )


#: Read by the settling passes (``loop_mistakes.py``): ``settle_gradless`` tells every
#: alarm, ``gradless_note`` is the note where none carries it.
GRADLESS = LoopMistake(gradless_steps, _sentence, "gradless_steps")
settle_gradless, gradless_note = GRADLESS.settle, GRADLESS.note
