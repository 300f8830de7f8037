"""The training loop's own mistakes, after the rules: what each finding is told of them, and
the notes of the ones no finding carries.

Seven mistakes of the loop rather than of the model, each from the watch's record of the
loop (``meta["config"]``, or the gradients and the learning rate at the optimizer's steps):
a watched optimizer that never steps, or stops (``stepless.py``: ``optimizer.step()``
forgotten, a new optimizer built each step), a model trained in eval mode
(``eval_mode.py``), a loss fed outputs of the wrong kind (``loss_input.py``: a softmax before
``cross_entropy``, ``nll_loss`` of logits), layers the optimizer never steps
(``unstepped.py``), an optimizer that steps without the gradients (``gradless.py``:
``zero_grad()`` between ``backward()`` and ``step()``), a learning rate of 0 at every step
(``zero_rate.py``: a warm-up schedule never stepped) and gradients never zeroed
(``unzeroed.py``, last: what it tells overrides the others' remedies and says it first).
``diagnose`` settles its findings here; the report, which holds findings as a plain list,
asks for the same notes.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..trace import Trace
from .eval_mode import eval_mode_note, settle_eval_mode
from .finding import Finding
from .gradless import gradless_note, settle_gradless
from .loss_input import loss_input_note, settle_loss_input
from .stepless import settle_stepless, stepless_note
from .unstepped import settle_unstepped, unstepped_note
from .unzeroed import settle_unzeroed
from .zero_rate import settle_zero_rate, zero_rate_note


def settle_loop(findings: list[Finding], trace: Trace) -> list[Finding]:
    """``findings`` told of each mistake of the loop the trace records."""
    findings = settle_unstepped(settle_loss_input(settle_eval_mode(findings, trace), trace), trace)
    findings = settle_stepless(settle_gradless(findings, trace), trace)
    return settle_unzeroed(settle_zero_rate(findings, trace))


def loop_notes(findings: Sequence[Finding], trace: Trace) -> tuple[str, ...]:
    """The sentences of the loop's mistakes that no finding of ``findings`` carries, in the
    order above (no rule has an id for them)."""
    notes = (
        stepless_note(findings, trace),
        eval_mode_note(findings, trace),
        loss_input_note(findings, trace),
        unstepped_note(findings, trace),
        gradless_note(findings, trace),
        zero_rate_note(findings, trace),
    )
    return tuple(note for note in notes if note is not None)
