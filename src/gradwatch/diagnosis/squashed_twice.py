"""Findings of a loss fed outputs squashed twice: a softmax before ``cross_entropy`` is the cause.

``CrossEntropyLoss`` applies log-softmax to its input and ``BCEWithLogitsLoss`` the sigmoid;
fed outputs that already went through a softmax or a sigmoid (either, before either loss),
they squash them again: the loss has a floor above 0 and its gradient shrinks as the model
grows confident, whatever the depth or the initialisation. The watch reads the loss's
autograd graph (``meta["config"]["loss_graph"]``, recording/loss_graph.py), so this is known
from the first step, long before the loss reaches its floor (``probability_floor.py`` names
the floor from the loss alone, for runs whose graph was not read). Every finding at warning
or above is told that the squash may be its cause and offers no remedy: none of the
catalogue mends the loss, and the others would be retrained with the same one. A loss
plateau after learning, which would otherwise read as "what this data allows", names it as
its cause (``symptoms.py``). With no finding to carry it, :func:`squashed_note` is a note of
the diagnosis (``Diagnosis.notes``).

Measured (digits, Adam 1e-2, batch 64): a 64-64-10 ReLU MLP ending in ``nn.Softmax`` levels
off at 1.4725 in 600 steps (the floor of 10 classes is 1.4612) where the same model without
it reaches 0.015. Before, the first 60 steps (loss 2.30 -> 1.68, 1.63 in the last window)
read "loss plateau after learning ... likely learned what this data allows" (info) and 30
steps "no problem found"; now the plateau names the squash (a warning) and the 30 steps have
it as their note.

Example:
    >>> from gradwatch.trace import Trace
    >>> t = Trace.from_arrays(["fc"], [0, 1], {"grad_rms": [[1.0], [1.0]]})
    >>> t.meta["config"] = {"loss_graph": {"checked": 3, "squashed": 3,
    ...     "loss": "cross_entropy", "squash": "softmax", "first_step": 0}}
    >>> squashed_note([], t)[:60]
    'The loss applies cross-entropy to outputs that already went '
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..trace import Trace
from ._loop import loop_record
from .finding import Finding, is_alarm, told_alarms

#: What each loss does to outputs already squashed (in [0, 1]), by the loss (the floors: the
#: loss at the best such output, one-hot for cross-entropy, 1 or 0 for BCE with logits).
_SENTENCES = {
    "cross_entropy": (
        "The loss applies cross-entropy to outputs that already went through a {squash} "
        "(its autograd graph, read at step {step}: a log-softmax over a {squash}). "
        "CrossEntropyLoss (F.cross_entropy) applies log-softmax itself, so the outputs are "
        "squashed twice: the loss cannot go below log(e + C - 1) - 1 for C classes (1.46 for "
        "10) and its gradient shrinks as the model grows confident. Pass it the logits (drop "
        "the final {squash})"
    ),
    "bce_with_logits": (
        "The loss applies binary cross-entropy with logits to outputs that already went "
        "through a {squash} (its autograd graph, read at step {step}: BCE-with-logits over a "
        "{squash}). BCEWithLogitsLoss applies the sigmoid itself, so the outputs are squashed "
        "twice: the loss cannot go below log(1 + 1/e) = 0.313 on a positive target nor "
        "log 2 = 0.693 on a negative one, and its gradient shrinks as the model grows "
        "confident. Pass it the logits (drop the final {squash})"
    ),
}
#: The squashes the watch names (recording/loss_graph.py).
_SQUASHES = ("softmax", "sigmoid")


def squashed_seen(trace: Trace) -> dict[str, Any] | None:
    """The watch's ``loss_graph`` record where a loss it read squashed its input twice;
    None otherwise (no graph read, or none squashed)."""
    record = loop_record(trace, "loss_graph", "checked", "squashed", "first_step")
    if record is None or record[1] == 0:
        return None
    graph = trace.meta["config"]["loss_graph"]
    loss, squash = graph.get("loss"), graph.get("squash")
    if loss not in _SENTENCES or squash not in _SQUASHES:
        return None
    checked, squashed, first = record
    return {
        "loss": loss, "squash": squash, "checked": checked, "squashed": squashed,
        "first_step": first,
    }  # fmt: skip


def _sentence(seen: dict[str, Any]) -> str:
    return _SENTENCES[seen["loss"]].format(squash=seen["squash"], step=seen["first_step"])


def squash_sentence(trace: Trace) -> str | None:
    """What the squash does and how to mend it, without a full stop, where
    :func:`squashed_seen`; None otherwise."""
    seen = squashed_seen(trace)
    return None if seen is None else _sentence(seen)


#: The plateau causes that name the squash themselves (``symptoms.py``).
_SAID = ("probability_floor", "squashed_twice")


def _says_it(f: Finding) -> bool:
    """Whether ``f`` is a plateau whose cause is the squash (:data:`_SAID`)."""
    return f.evidence.get("cause") in _SAID


def settle_squashed(findings: list[Finding], trace: Trace) -> list[Finding]:
    """``findings`` with every finding at warning or above told that the loss squashes its
    input twice, without remedies; unchanged unless :func:`squashed_seen`. A plateau after
    learning says so already (``symptoms.py``: at the floor of a softmax applied twice, or
    above it with the graph's squash as its cause)."""
    seen = squashed_seen(trace)
    if seen is None:
        return findings
    return told_alarms(findings, _sentence(seen), skip=_says_it, squashed_twice=dict(seen))


def squashed_note(findings: Sequence[Finding], trace: Trace) -> str | None:
    """The sentence that the loss squashes its input twice, for the verdict, when no finding
    carries it (:func:`settle_squashed`); None when it does not (:func:`squashed_seen`). A
    model whose loss still falls has no symptom yet: the graph says it anyway."""
    seen = squashed_seen(trace)
    if seen is None or any(is_alarm(f) or _says_it(f) for f in findings):
        return None
    return f"{_sentence(seen)}."
