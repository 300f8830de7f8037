"""Findings of a model trained in eval mode: ``model.eval()`` left on is the cause.

A loop that validates with ``model.eval()`` and never calls ``model.train()`` again trains
on in eval mode: BatchNorm normalises with its running statistics, which it no longer
updates, instead of the batch's (a model that never trained in train mode normalises with
their initial mean 0 and variance 1: not at all). The watch counts the optimizer steps taken
in eval mode and the BatchNorm layers that track statistics (``meta["config"]
["train_mode"]``, recording/loop.py). Where at least :data:`EVAL_SHARE` of the steps ran in
eval mode and the model has such BatchNorm layers, every finding at warning or above is told
that the mode may be its cause and offers no remedy: none of the catalogue mends a missing
``model.train()``, and the others would be retrained in the same mode. With no such finding
to carry it, :func:`eval_mode_note` is a note of the diagnosis (``Diagnosis.notes``).

Measured: an HF ResNet (2 stages, BatchNorm) on digits under SGD 0.05 + momentum, trained
with ``model.eval()`` left on, goes 2.28 -> 0.97 in 200 steps (0.034 in train mode) and drew a
``dead_units`` warning (70% of a layer) with ``leaky_relu`` first. Dropout alone is not
enough to say so: without BatchNorm, eval mode only turns dropout off.

Example:
    >>> from gradwatch.diagnosis.finding import Finding, RemedyHint
    >>> from gradwatch.trace import Trace
    >>> t = Trace.from_arrays(["fc"], [0, 1], {"grad_rms": [[1.0], [1.0]]})
    >>> t.meta["config"] = {"train_mode": {"steps": 2, "eval_steps": 2, "first_eval_step": 0,
    ...                                    "batch_norms": 3, "dropouts": 0}}
    >>> dead = Finding("dead_units", "warning", ("bn",), (0, 1), {}, "Dead units: ...",
    ...                (RemedyHint("leaky_relu", "a slope"),))
    >>> settle_eval_mode([dead], t)[0].remedies
    ()
    >>> eval_mode_note([], t)[:57]
    'The model trained in eval mode at 2 of 2 optimizer steps '
"""

from __future__ import annotations

from ..trace import Trace
from ._loop import loop_record
from .finding import LoopMistake

#: At least this share of the optimizer steps in eval mode (our choice: most of the run; a
#: loop that forgets model.train() after its first validation trains the rest in eval mode).
EVAL_SHARE = 0.5


#: The fields of the watch's ``train_mode`` record this pass reads.
FIELDS = ("steps", "eval_steps", "first_eval_step", "batch_norms")


def eval_mode_seen(trace: Trace) -> dict[str, int] | None:
    """The watch's ``train_mode`` record (:data:`FIELDS`) when most steps ran in eval mode
    with BatchNorm layers that track statistics (:data:`EVAL_SHARE`); None otherwise."""
    record = loop_record(trace, "train_mode", *FIELDS)
    if record is None:
        return None
    seen = dict(zip(FIELDS, record, strict=True))
    steps, evals, norms = seen["steps"], seen["eval_steps"], seen["batch_norms"]
    return seen if steps > 0 and norms > 0 and evals >= EVAL_SHARE * steps else None


def _sentence(seen: dict[str, int]) -> str:
    return (
        f"The model trained in eval mode at {seen['eval_steps']} of {seen['steps']} optimizer "
        f"steps (from step {seen['first_eval_step']}): its {seen['batch_norms']} BatchNorm "
        "layer(s) normalise with running statistics they no longer update, not the batch's. "
        "Call model.train() before training (after each validation)"
    )


#: Read by the settling passes (``loop_mistakes.py``): ``settle_eval_mode`` tells every
#: alarm, ``eval_mode_note`` is the note where none carries it. Training in eval mode is a
#: mistake of the loop whether or not a rule saw its consequence: a HF ResNet sampled every
#: 100 steps over 200 shows no symptom yet, and the note says it.
EVAL_MODE = LoopMistake(eval_mode_seen, _sentence, "eval_mode")
settle_eval_mode, eval_mode_note = EVAL_MODE.settle, EVAL_MODE.note
