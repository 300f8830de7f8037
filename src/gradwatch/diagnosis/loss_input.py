"""Findings of a loss fed outputs of the wrong kind: a softmax before ``cross_entropy``, or
``nll_loss`` given logits or probabilities, is the cause.

``CrossEntropyLoss`` applies log-softmax to its input and ``BCEWithLogitsLoss`` the sigmoid;
fed outputs that already went through a softmax or a sigmoid (either, before either loss),
they squash them again: the loss has a floor above 0 and its gradient shrinks as the model
grows confident, whatever the depth or the initialisation. ``NLLLoss`` takes
log-probabilities and only negates the target's entry: fed probabilities, its loss is stuck
above -1 with a shrinking gradient; fed a layer's raw outputs, it has no floor, and training
pushes the target's output up without bound (the loss falls below 0 without end while the
weights and gradients grow: read as an exploding gradient); fed a log-softmax over the batch,
each class is normalised across the examples, a silent error; fed anything else the graph
does not know as a layer's output (HF Gemma 2's soft-capped logits), the logged loss falling
below 0 says it (:data:`BELOW_ZERO`). The watch reads the loss's
autograd graph (``meta["config"]["loss_graph"]``, recording/loss_graph.py), so this is known
from the first step (``probability_floor.py`` names the softmax's floor from the loss alone,
for runs whose graph was not read). Every finding at warning or above is told that the
loss's input may be its cause and offers no remedy: none of the catalogue mends the loss, and
the others would be retrained with the same one. A loss plateau after learning, which would
otherwise read as "what this data allows", names it as its cause (``symptoms.py``). With no
finding to carry it, :func:`loss_input_note` is a note of the diagnosis
(``Diagnosis.notes``).

Measured (digits, Adam 1e-2, batch 64): a 64-64-10 ReLU MLP ending in ``nn.Softmax`` levels
off at 1.4725 in 600 steps (the floor of 10 classes is 1.4612) where the same model without
it reaches 0.015. Before, the first 60 steps (loss 2.30 -> 1.68, 1.63 in the last window)
read "loss plateau after learning ... likely learned what this data allows" (info) and 30
steps "no problem found"; now the plateau names the squash (a warning) and the 30 steps have
it as their note. The same MLP under ``nll_loss`` without a log-softmax: loss 0.015 ->
-1.8e4 in 300 steps, read as "exploding gradient ... updates that are too large" (clipping,
a lower rate); with a softmax instead of the log-softmax: -0.10 -> -0.97, "unstable updates
... the learning rate is too high". Both are now told the loss's input from step 0. With
``nn.LogSoftmax(0)``: 4.17 -> 2.03, accuracy on all digits 0.896 (0.985 with ``dim=-1``),
"no problem found"; now the note.

Example:
    >>> from gradwatch.trace import Trace
    >>> t = Trace.from_arrays(["fc"], [0, 1], {"grad_rms": [[1.0], [1.0]]})
    >>> t.meta["config"] = {"loss_graph": {"checked": 3, "mismatched": 3,
    ...     "loss": "cross_entropy", "given": "softmax", "first_step": 0}}
    >>> loss_input_note([], t)[:60]
    'The loss applies cross-entropy to outputs that already went '
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..trace import Trace
from ._loop import loop_config, loop_record
from .finding import Finding, is_alarm, told_alarms

#: What a loss that squashes its input does to outputs already squashed, by the loss (the
#: floors: the loss at the best such output, one-hot for cross-entropy, 1 or 0 for BCE with
#: logits).
_SQUASHED_TWICE = {
    "cross_entropy": (
        "The loss applies cross-entropy to outputs that already went through a {given} "
        "(its autograd graph, read at step {step}: a log-softmax over a {given}). "
        "CrossEntropyLoss (F.cross_entropy) applies log-softmax itself, so the outputs are "
        "squashed twice: the loss cannot go below log(e + C - 1) - 1 for C classes (1.46 for "
        "10) and its gradient shrinks as the model grows confident. Pass it the logits (drop "
        "the final {given})"
    ),
    "bce_with_logits": (
        "The loss applies binary cross-entropy with logits to outputs that already went "
        "through a {given} (its autograd graph, read at step {step}: BCE-with-logits over a "
        "{given}). BCEWithLogitsLoss applies the sigmoid itself, so the outputs are squashed "
        "twice: the loss cannot go below log(1 + 1/e) = 0.313 on a positive target nor "
        "log 2 = 0.693 on a negative one, and its gradient shrinks as the model grows "
        "confident. Pass it the logits (drop the final {given})"
    ),
}
_NLL_OF_PROBABILITIES = (
    "The loss applies NLLLoss (F.nll_loss) to probabilities (its autograd graph, read at step "
    "{step}: nll_loss over a {given}, with no log). NLLLoss expects log-probabilities and only "
    "negates the target's entry, so the loss is minus the target's probability: it cannot go "
    "below -1 and its gradient shrinks as the {given} saturates, on wrong answers too. Take "
    "the log: log_softmax instead of the {given} (or pass the logits to cross_entropy)"
)
_NLL_OF_LOGITS = (
    "The loss applies NLLLoss (F.nll_loss) to a layer's raw outputs (its autograd graph, read "
    "at step {step}: nll_loss over a layer's output, with no log-softmax). NLLLoss expects "
    "log-probabilities and only negates the target's entry, so the loss is minus the target's "
    "output, with no floor: training pushes that output up without bound, so the loss falls "
    "below 0 without end while the weights and gradients grow. Apply log_softmax before it "
    "(or pass the logits to cross_entropy)"
)
_NLL_OVER_THE_BATCH = (
    "The loss applies NLLLoss (F.nll_loss) to a log-softmax taken over dimension 0 (its "
    "autograd graph, read at step {step}: nll_loss over log_softmax(dim=0)), the batch (or "
    "the time of a sequence-first layout), not the classes: each class's scores are "
    "normalised across the examples, so an example's loss depends on the others in its batch "
    "and the model learns to rank examples, not classes. Take it over the classes: "
    "log_softmax(x, dim=-1) for (N, C) or (B, T, V) logits (without dim, F.log_softmax picks "
    "dimension 0 for a 3-D input)"
)
_CE_OVER_THE_BATCH = (
    "The loss applies cross-entropy to a log-softmax taken over dimension 0 (its autograd "
    "graph, read at step {step}: a log-softmax over log_softmax(dim=0)), the batch (or the "
    "time of a sequence-first layout), not the classes. CrossEntropyLoss applies log-softmax "
    "itself, over the classes: given log-probabilities over the classes that changes "
    "nothing, but these normalise each class's scores across the examples, so an example's "
    "loss depends on the others in its batch. Pass it the logits (drop the log_softmax), or "
    "take it over the classes: log_softmax(x, dim=-1) (without dim, F.log_softmax picks "
    "dimension 0 for a 3-D input)"
)
_NLL_BELOW_ZERO = (
    "The loss applies NLLLoss (F.nll_loss) to something other than log-probabilities: it "
    "fell below 0 (first at step {step}; {lowest:.3g} at its lowest), which minus a "
    "log-probability never does (its autograd graph: nll_loss over no log-softmax). NLLLoss "
    "only negates the target's entry, so the loss is minus the target's input: training "
    "pushes that input up with no floor but what bounds it (a soft cap, a squash), and the "
    "loss says nothing of the predictions. Apply log_softmax before it (or pass the logits "
    "to cross_entropy)"
)
#: What ``nll_loss`` does with each wrong input, by what it was given.
_NLL = {
    "softmax": _NLL_OF_PROBABILITIES,
    "sigmoid": _NLL_OF_PROBABILITIES,
    "logits": _NLL_OF_LOGITS,
    "log_softmax_over_dim_0": _NLL_OVER_THE_BATCH,
    "below_zero": _NLL_BELOW_ZERO,
}
#: How far below 0 a logged ``nll_loss`` must fall to say its input is no log-probability
#: (minus one is never negative): a margin over rounding (our choice), far above the -0.27
#: to -20 that ``nll_loss`` of raw or soft-capped logits reads within 200 steps (HF Gemma 2,
#: whose capped logits hide them from the graph's check, -0.27 -> -13.9;
#: benchmarks/fault_sweep.py).
BELOW_ZERO = 0.01
#: What each loss can be given wrongly (recording/loss_graph.py).
_GIVEN = {
    "cross_entropy": ("softmax", "sigmoid", "log_softmax_over_dim_0"),
    "bce_with_logits": ("softmax", "sigmoid"),
    "nll_loss": tuple(_NLL),
}


def loss_input_seen(trace: Trace) -> dict[str, Any] | None:
    """The watch's ``loss_graph`` record where a loss it read was given outputs of the wrong
    kind; None otherwise (no graph read, or none such)."""
    graph = loop_config(trace, "loss_graph")
    counts = loop_record(trace, "loss_graph", "checked", "mismatched")
    if graph is None or counts is None:
        return None
    checked, mismatched = counts
    if mismatched == 0:
        return _below_zero(trace, graph, checked)
    loss, given, first = graph.get("loss"), graph.get("given"), graph.get("first_step")
    if not isinstance(first, int) or not isinstance(loss, str) or given not in _GIVEN.get(loss, ()):
        return None
    return {
        "loss": loss, "given": given, "checked": checked, "mismatched": mismatched,
        "first_step": first,
    }  # fmt: skip


def _below_zero(trace: Trace, graph: dict[str, Any], checked: int) -> dict[str, Any] | None:
    """The record of an ``nll_loss`` whose graph showed nothing wrong but whose logged value
    fell below -:data:`BELOW_ZERO` (``given``: ``"below_zero"``): only where the logged
    loss is a positive multiple of it alone (``loss_graph.multiple``), so that no other term
    and no sign change can take it there."""
    multiple = graph.get("multiple")
    if graph.get("kind") != "nll_loss" or not isinstance(multiple, (int, float)):
        return None
    if not multiple > 0 or not trace.has_scalar("loss"):
        return None
    loss = np.asarray(trace.scalar("loss"), dtype=float)
    below = np.flatnonzero(loss < -BELOW_ZERO)
    if not below.size:
        return None
    return {
        "loss": "nll_loss", "given": "below_zero", "checked": checked, "mismatched": 0,
        "first_step": int(trace.scalar_steps[below[0]]), "lowest": float(np.nanmin(loss)),
    }  # fmt: skip


def _sentence(seen: dict[str, Any]) -> str:
    loss, given = seen["loss"], seen["given"]
    if loss == "nll_loss":
        template = _NLL[given]
    elif given == "log_softmax_over_dim_0":
        template = _CE_OVER_THE_BATCH
    else:
        template = _SQUASHED_TWICE[loss]
    return template.format(given=given, step=seen["first_step"], lowest=seen.get("lowest"))


def loss_input_sentence(trace: Trace) -> str | None:
    """What the loss does to its input and how to mend it, without a full stop, where
    :func:`loss_input_seen`; None otherwise."""
    seen = loss_input_seen(trace)
    return None if seen is None else _sentence(seen)


#: The plateau causes that name the loss's input themselves (``symptoms.py``).
_SAID = ("probability_floor", "loss_input")


def _says_it(f: Finding) -> bool:
    """Whether ``f`` is a plateau whose cause is the loss's input (:data:`_SAID`)."""
    return f.evidence.get("cause") in _SAID


def settle_loss_input(findings: list[Finding], trace: Trace) -> list[Finding]:
    """``findings`` with every finding at warning or above told that the loss is given
    outputs of the wrong kind, without remedies; unchanged unless :func:`loss_input_seen`. A
    plateau after learning says so already (``symptoms.py``: at the floor of a softmax
    applied twice, or above it with the graph's finding as its cause)."""
    seen = loss_input_seen(trace)
    if seen is None:
        return findings
    return told_alarms(findings, _sentence(seen), skip=_says_it, loss_input=dict(seen))


def loss_input_note(findings: Sequence[Finding], trace: Trace) -> str | None:
    """The sentence that the loss is given outputs of the wrong kind, for the verdict, when no
    finding carries it (:func:`settle_loss_input`); None when one does
    (:func:`loss_input_seen`). A model whose loss still falls has no symptom yet: the graph
    says it anyway."""
    seen = loss_input_seen(trace)
    if seen is None or any(is_alarm(f) or _says_it(f) for f in findings):
        return None
    return f"{_sentence(seen)}."
