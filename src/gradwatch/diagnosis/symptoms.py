"""A symptom no cause explains: a loss plateau that no other rule accounts for.

``loss_plateau`` reads only the loss; its message leaves "where the gradient is lost" to the
other findings. When the model learned first (the plateau does not start at the first loss
window, so some later window improved on an earlier one by the rule's 5%) and no other rule
found anything at warning level or above, the gradients reach every layer and move the
weights as healthy training does: the loss flattened because the model has learned what
this data allows at its size and rate (a fine-tune of a model already near its task, a
small model at its capacity), not because a gradient is lost. Such a plateau is ``info``.

Measured (CPU, one thread): a LoRA fine-tune (peft, r=8 on ``c_attn``) of a pretrained
4-layer HF GPT-2 continuing its own byte-LM task falls 2.53 -> 2.36 by step 90 of 200 and
stays there, with no other finding. A plateau from the first window (the loss never
improved by 5%: a frozen output layer, labels the model cannot read) stays a warning
whatever else was found; so does one beside a gradient finding (every broken corpus case).

Two plateaus from the first window have no cause among the rules and are told so, as
warnings without the structural remedies. One has steps too small to train: the weights move
a median update ratio under ``loss_plateau.tiny_update_ratio`` (1e-4) over the plateau, and
gets ``raise_lr`` (with a factor ``gw.prescribe`` reads off the steps). HF
GPT-2 at AdamW 1e-6 moved a median 6e-5 of its norm per step and its loss went 5.38 -> 5.32
in 200 steps; an HF ResNet at SGD 1e-5 moved 2.5e-6 and stayed at 2.40. Where the user's
gradient clipping scaled the median gradient over the plateau by under :data:`TIGHT_CLIP`,
the clip is named instead of the rate (``tight_clip``). The other has normal
steps: the gradient reaches the layers and moves them, so what is asked of the model is the
suspect, unless the loss still falls steadily (it learns, slowly) or started far below an
untrained model's (``trained_start.py``: a model pretrained or resumed, an info). After
learning, small steps are not told apart from a model near its optimum: an HF ResNet
fine-tuned under SGD 1e-3 (loss 2.7 -> 0.05) moved a median 1e-4 per step over the run and
2.8e-5 over its second half. A plateau after learning whose loss still falls steadily
(``still_falling``: HF GPT-2 at AdamW 1e-5, 5.27 -> 5.04 over its last 130 steps) is told it
is still learning, slowly, not that stopping there loses little. One whose loss rises
steadily instead (``rising``) stays a warning that names steps too large or unshuffled data,
with ``lower_lr`` as its one remedy: HF GPT-2 at AdamW 0.1 after a 60-step warm-up went 2.86
-> 3.07 from step 80 to 200, ending at the unigram level with no other finding. One whose
head reads a collapsed representation (``collapsed``: under ``collapsed_share`` of its
variance differs between inputs, so the prediction barely depends on the input) stays a
warning too, after learning or from the start, with ``lower_lr`` (a tenth of the rate trains
the run below, 3.20 -> 2.75): HF GPT-2 at AdamW 0.1 after a 20-step warm-up stays at the
unigram loss from step 20 with 3.5% at its final LayerNorm, where the update ratio (0.008)
could not tell it from a healthy ResNet on noisy labels (0.007, with 97% between inputs).

A plateau beside weights that a cause outside the model stopped (``unstable_updates``'
``stalled_by``: a schedule that took the rate to almost nothing, half-precision weights that
round the steps away) says so and drops the structural remedies: none would move them.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from ._loop import clip_scale
from .finding import Finding, alarms_besides, settled
from .loss_input import loss_input_sentence
from .probability_floor import FLOOR_MARGIN, at_probability_floor
from .rules.loss_plateau import LOWER_RATE, RAISE_RATE
from .trained_start import trained_start_clause

if TYPE_CHECKING:
    from ..trace import Trace

#: The symptom rule this pass settles.
SYMPTOM = "loss_plateau"
#: A clip that scales the gradient by less than this at the median step of a plateau with
#: tiny steps is what keeps them tiny (our choice: it removes 90% of the median gradient).
#: Measured on healthy real-corpus runs, clip factors (median, 10th percentile, least):
#: lstm_lm (PyTorch's LSTM LM recipe, clip 0.25) 1, 0.59, 0.14; gpt2_hf_recipe (clip 1.0)
#: 1, 0.43, 0.2; roberta_hf_recipe 1, 0.063, 0.019. A digits MLP clipped at 1e-3 (SGD 0.1):
#: ~1e-3, loss 2.31 -> 2.24 in 300 steps, told "the learning rate is likely too low".
TIGHT_CLIP = 0.1


def settle_symptoms(findings: list[Finding], trace: Trace | None = None) -> list[Finding]:
    """``findings`` with a loss plateau that no other rule explains told what it is.

    With no warning or critical finding beside it: a loss that rises steadily over the
    plateau stays a warning naming steps too large (or unshuffled data), and so does one
    whose head reads a representation that barely varies between inputs (both with
    ``lower_lr``); a plateau after learning becomes ``info``, unless its loss is stopped at
    the floor of a softmax applied twice (``probability_floor``: a warning) or the watch
    read a loss given outputs of the wrong kind in the loss's graph (``loss_input``: a
    warning); one from the start stays a warning that names the learning rate when the steps
    are too small to train (the median update ratio under ``tiny_update_ratio``), else
    points at what the model is asked to learn (or, where it started far below an untrained
    model's loss, becomes ``info``: ``trained_start``). (After learning, small steps may
    just be a model near its optimum under SGD, whose steps shrink with the gradient.) Only
    for a diagnosis that ran every rule: with a subset, a missing cause may just not have
    been looked for. With the diagnosed ``trace``, a collapse names the layer whose
    representation collapsed among the finding's layers, and the floor is read from its
    losses and its last layer.
    """
    alone = not alarms_besides(findings, SYMPTOM)
    stalled = _weights_stopped(findings)
    out = []
    for f in findings:
        if f.rule == SYMPTOM and f.severity == "warning" and stalled:  # (never alone)
            f = _stopped_by(f, stalled)
        elif f.rule == SYMPTOM and f.severity == "warning" and alone:
            if f.evidence.get("rising"):
                f = _rising(f)
            elif _collapsed(f):
                f = _collapsed_representation(f, trace)
            elif learned_first(f):
                f = _at_floor(f, trace) or _wrong_loss_input(f, trace) or _unexplained(f)
            elif _tiny_steps(f):
                f = _too_small(f, trace)
            else:
                f = _nothing_lost(f, trace)
        out.append(f)
    return out


#: What stopped the weights, as ``unstable_updates`` names it (``stalled_by``), in words:
#: causes outside the model, which no structural remedy mends.
_STOPPED_BY = {
    "learning_rate": "a learning rate the schedule took to almost nothing",
    "precision": "half-precision weights that round the steps away",
    "no_gradient": "a graph that does not reach them: no gradient did",
}


def _weights_stopped(findings: list[Finding]) -> str | None:
    """The ``stalled_by`` of an ``unstable_updates`` alarm whose stalled weights a cause
    outside the model explains (:data:`_STOPPED_BY`), or None."""
    for f in findings:
        cause = f.evidence.get("stalled_by") if f.rule == "unstable_updates" else None
        if f.severity != "info" and isinstance(cause, str) and cause in _STOPPED_BY:
            return cause
    return None


def _stopped_by(f: Finding, cause: str) -> Finding:
    message = (
        f"{f.message} The weights stopped moving because of {_STOPPED_BY[cause]} "
        "(unstable_updates): no structural remedy mends that."
    )
    return settled(f, message, cause=f"stalled_by_{cause}")


def _rising(f: Finding) -> Finding:
    ev = f.evidence
    went = _went(ev)
    if went is None:
        return settled(f, f.message, cause="rising")
    message = (
        f"Loss rising: {went}, steadily (trend z-score "
        f"{ev.get('plateau_trend_z', 0.0):.1f}){_moved(ev)}, and no other rule found a "
        "gradient problem. A training loss that climbs back while the gradient reaches every "
        "layer usually means steps too large for this stage of training (lower the learning "
        "rate, or decay it), or later batches harder than earlier ones (data not shuffled)."
    )
    # Residual paths or an activation would not help; a lower rate takes smaller steps.
    return settled(f, message, cause="rising", remedies=LOWER_RATE)


def _below(f: Finding, measured: str, limit: str) -> bool:
    """Whether the evidence's ``measured`` value is under its ``limit`` (both recorded)."""
    value, bound = f.evidence.get(measured), f.evidence.get(limit)
    return isinstance(value, float) and isinstance(bound, float) and value < bound


def _collapsed(f: Finding) -> bool:
    """Whether the representation the head reads varied between inputs less than the rule's
    ``collapsed_share`` over the plateau."""
    return _below(f, "plateau_between_inputs", "collapsed_share")


def stayed(ev: dict[str, object]) -> str:
    """The loss clause of a message: where the plateau's loss stayed."""
    level = ev.get("plateau_loss")
    return f" stayed near {level:.4g}" if isinstance(level, float) else " stayed flat"


def _collapsed_representation(f: Finding, trace: Trace | None) -> Finding:
    ev = f.evidence
    message = (
        f"Loss plateau with a collapsed representation: from step "
        f"{ev.get('plateau_from_step')} the loss{stayed(ev)} and no other rule found a "
        f"gradient problem, but the representation the output reads "
        f"('{ev.get('between_inputs_layer')}') is nearly the same for every input: only "
        f"{ev.get('plateau_between_inputs'):.1%} of its variance differs between inputs "
        "(healthy training keeps well over a third), so the prediction barely depends on the "
        "input (a language model predicts the token frequencies; a classifier, the class "
        "frequencies). Steps too large collapse a representation this way (lower the "
        "learning rate, or warm it up for longer), so does depth that pulls every input "
        "toward one point (rank collapse), and so do targets the input cannot predict "
        "(labels shuffled or misaligned: the model learns to ignore its input; look at what "
        "it is asked to learn)."
    )
    # Not lr_warmup: the warm-up length that suffices is not known from this run (GPT-2 at
    # AdamW 0.1 ended near its unigram loss after a 60-step warm-up too: 2.95-3.06, by CPU).
    # A tenth of the rate trains it (real corpus, gpt2_warmup_too_short: 3.20 -> 2.75).
    out = settled(f, message, cause="collapsed", remedies=LOWER_RATE)
    # The layer the finding is about (the rule itself names none: it reads only the loss).
    label = ev.get("between_inputs_layer")
    found = [] if trace is None else [la for la in trace.layers if la.label == label]
    if not found:
        return out
    return replace(out, layers=(found[0].name,), layer_labels=(found[0].label,))


def _tiny_steps(f: Finding) -> bool:
    """Whether the weights moved less per step over the plateau than the rule's threshold."""
    return _below(f, "median_update_ratio", "tiny_update_ratio")


def _too_small(f: Finding, trace: Trace | None) -> Finding:
    ev = f.evidence
    head = (
        f"Loss plateau with tiny steps: from step {ev.get('plateau_from_step')} the loss"
        f"{stayed(ev)}, and no rule found a gradient problem, but each step moves the "
        f"weights by a median {ev.get('median_update_ratio'):.2g} of their norm (healthy "
        "training is near 1e-3): steps this small barely change the loss"
    )
    clip = _tight_clip(f, trace)
    if clip is None:
        message = f"{head}, so the learning rate is likely too low for this model."
        # A higher rate, not residual paths or an activation.
        return settled(f, message, cause="tiny_steps", remedies=RAISE_RATE)
    coef, norm = clip
    usual = f" (its median here: {norm:.2g})" if np.isfinite(norm) else ""
    message = (
        f"{head}, and the gradient clipping scaled every gradient by a median {coef:.2g} "
        "before the step, so the clip, not the learning rate, keeps the steps this small. "
        f"Raise the clipping's max_norm to near the gradient's usual norm{usual}, so that it "
        "cuts only the outliers."
    )
    return settled(f, message, cause="tight_clip", clip_coef_median=round(coef, 6))


def _tight_clip(f: Finding, trace: Trace | None) -> tuple[float, float] | None:
    """(median clip factor, median pre-clip gradient norm) over the plateau where the user's
    clipping scaled the gradient by under :data:`TIGHT_CLIP` there; else None."""
    start = f.evidence.get("plateau_from_step")
    if trace is None or not isinstance(start, int) or not len(trace.steps):
        return None
    clip = clip_scale(trace, start, int(trace.steps[-1]))
    return clip if clip is not None and clip[0] < TIGHT_CLIP else None


def _nothing_lost(f: Finding, trace: Trace | None) -> Finding:
    ev = f.evidence
    level, by = ev.get("plateau_loss"), ev.get("min_relative_improvement")
    if not (isinstance(level, float) and isinstance(by, float)):
        return settled(f, f.message, cause="none_found")
    went = _went(ev)
    if ev.get("still_falling") and went:
        # Never 5% better, yet steadily lower: it learns, slowly; the task is not the suspect.
        message = (
            f"Loss falling slowly: {went}, never {by:.0%} better than its best but "
            f"steadily{_moved(ev)}, and no rule found a gradient problem: the model learns, "
            "slowly. More steps go further; a higher learning rate (or a larger model) likely "
            "goes faster."
        )
        return settled(f, message, cause="slow")
    trained = trained_start_clause(trace, ev.get("start_loss"))
    if trained is not None:
        # Not the labels or the output layer: a model that started trained (trained_start.py).
        message = (
            f"Loss plateau from a trained start: from step {ev.get('plateau_from_step')} the "
            f"loss stayed near {level:.4g} and never improved by {by:.0%}, and no rule found a "
            f"gradient problem: {trained}, so the model started trained (pretrained, or "
            "resumed from a checkpoint) and this data has little left to teach it at this "
            "rate. A fine-tune meant to improve it needs data it has not learned yet, or a "
            "higher learning rate."
        )
        return settled(f, message, "info", cause="trained_start")
    message = (
        f"Loss plateau: from step {ev.get('plateau_from_step')} the loss stayed near "
        f"{level:.4g} and never improved by {by:.0%}, and no rule found a gradient problem: "
        "the gradient reaches the layers and moves them, so look at what the model is asked "
        "to learn (labels it cannot predict from its inputs, a frozen or mis-wired output "
        "layer, a loss that does not match its outputs)."
    )
    return settled(f, message, cause="none_found")


def _went(ev: dict[str, object]) -> str | None:
    """The loss clause of a message, where the plateau's level and last window were measured:
    "from step S the loss went A -> B (-x%)", the change signed (a rise is "+x%")."""
    level, last = ev.get("plateau_loss"), ev.get("last_window_loss")
    if not (isinstance(level, float) and isinstance(last, float) and level):
        return None
    return (
        f"from step {ev.get('plateau_from_step')} the loss went {level:.4g} -> {last:.4g} "
        f"({(last - level) / abs(level):+.1%})"
    )


def _moved(ev: dict[str, object]) -> str:
    """The step-size clause of a message, where the plateau's step size was measured."""
    moved = ev.get("median_update_ratio")
    return (
        f", each step moving the weights a median {moved:.2g} of their norm"
        if isinstance(moved, float)
        else ""
    )


def learned_plateau(f: Finding, trace: Trace | None) -> bool:
    """Whether ``f`` is a loss plateau warning that :func:`settle_symptoms` makes ``info``
    when no other alarm is beside it (a plateau after learning, neither rising nor collapsed,
    not at a softmax's floor nor given outputs of the wrong kind): asked of the pass itself,
    so the two cannot drift. Such a plateau is no reason to keep another finding an alarm
    (``recovered.py``): it is the end of learning."""
    return (
        f.rule == SYMPTOM
        and f.severity == "warning"
        and settle_symptoms([f], trace)[0].severity == "info"
    )


def learned_first(f: Finding) -> bool:
    """Whether the plateau starts after the first loss window (the loss improved first)."""
    ev = f.evidence
    windows, plateau = ev.get("windows"), ev.get("plateau_windows")
    return isinstance(windows, int) and isinstance(plateau, int) and plateau < windows


def _at_floor(f: Finding, trace: Trace | None) -> Finding | None:
    """The plateau told that its loss is stopped at the floor of a softmax applied twice
    (``probability_floor``), a warning without remedies; None where it is not."""
    last = f.evidence.get("last_window_loss")
    seen = (
        None if trace is None or not isinstance(last, float) else at_probability_floor(trace, last)
    )
    if seen is None:
        return None
    floor, classes = seen
    message = (
        f"Loss stopped at the floor of a softmax applied twice: it levelled off at {last:.4g} "
        f"and no step's loss went below {floor:.4g} = log(e + {classes - 1}) - 1, the lowest "
        f"cross-entropy of outputs that are already probabilities over the last layer's "
        f"{classes} outputs. CrossEntropyLoss (F.cross_entropy) applies log-softmax itself: "
        "outputs passed through a softmax first (an nn.Softmax at the end of the model, or "
        "softmax before the loss) are squashed again, so the loss cannot go lower and its "
        "gradient shrinks as the model grows confident. Pass it the logits."
    )
    evidence = {"floor": floor, "classes": classes, "margin": FLOOR_MARGIN}
    return settled(f, message, "warning", cause="probability_floor", probability_floor=evidence)


def _wrong_loss_input(f: Finding, trace: Trace | None) -> Finding | None:
    """The plateau told that its loss is given outputs of the wrong kind, as the watch read
    in the loss's graph (``loss_input``), a warning without remedies; None where it did
    not."""
    sentence = None if trace is None else loss_input_sentence(trace)
    went = _went(f.evidence)
    if sentence is None or went is None:
        return None
    message = f"Loss plateau after learning: {went}. {sentence}; this is likely its cause."
    return settled(f, message, "warning", cause="loss_input")


def _unexplained(f: Finding) -> Finding:
    ev = f.evidence
    start, level = ev.get("start_loss"), ev.get("plateau_loss")
    fell = f" (from {start:.4g} at the start)" if isinstance(start, float) else ""
    went = _went(ev)
    if ev.get("still_falling") and went:
        # Falling steadily, only slower than the rule's 5%: a slow run, not a finished one.
        message = (
            f"Loss still falling, slowly, after learning: {went}, under the "
            f"{ev.get('min_relative_improvement', 0.05):.0%} the rule counts as progress but "
            f"steadily{_moved(ev)}, and no other rule found a gradient problem: the model is "
            "still learning, slowly. More steps go further; if the loss is far above what the "
            "task allows, the learning rate is likely too low."
        )
        return settled(f, message, "info", unexplained=True)
    message = (
        f"Loss plateau after learning: from step {ev.get('plateau_from_step')} the loss "
        f"stayed near {level:.4g}{fell}, and no other rule found a gradient problem: the "
        "gradient reaches the layers and moves them as in healthy training, so the model "
        "has likely learned what this data allows at its size and learning rate (a higher "
        "rate, a larger model or more data go further; stopping here loses little)."
        if isinstance(level, float)
        else f.message
    )
    # No remedy: nothing is broken that residual paths or an activation would mend.
    return settled(f, message, "info", unexplained=True)
