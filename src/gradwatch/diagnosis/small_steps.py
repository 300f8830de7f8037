"""Findings beside steps too small to train: the learning rate comes first.

A loss that plateaus from its start while even the layer that moves most moves less per step
than ``loss_plateau.tiny_update_ratio`` (1e-4) of its norm (healthy training sits near 1e-3)
is not training at all: no layer, including the ones the gradient reaches in full, takes a
step that changes the loss. Under a rate this low, what the other rules measure at the start
stays as it was: a gradient that vanishes through depth at initialisation, which training at
a working rate outgrows, is never outgrown. Their structural remedies would be retrained at
the same rate and meet the same tiny steps, and ``lr_warmup`` or ``lower_lr`` would make the
steps smaller still: every alarm gets ``raise_lr`` first, without those two.

Measured (CPU, one thread, 200 steps, seed 0, random init): HF DeBERTa-v2 (2 layers, width
64) classifying which of two stdlib files a window comes from, under AdamW. At 1e-3 the loss
goes 0.69 -> 0.03 and its vanishing gradient (720x through 14 layers at the start) is an info
"since resolved". At 1e-7 the loss stays at 0.695, the layer that moves most moves a median
4.1e-6 of its norm per step, and the verdict was "Vanishing gradient" with ``lr_warmup`` and
the residual remedies first. The layer that moves most is what tells the rate from a lost
gradient: HF EfficientNet with its BatchNorm gains at N(0, 0.02) (the real corpus'
``efficientnet_hf_init``, AdamW 1e-3) moves the median layer 1e-5 per step, its gradient
below Adam's epsilon, but its head 0.017, so it is left to the gradient rules, whose
``init_he`` trains it.

A plateau alone is told the same by ``symptoms`` (its "tiny steps", from the median layer);
here it has company. Not after steps too large (``unstable_updates``' ``high_update_ratio``:
those are the other end of the rate) or beside weights a schedule or the precision stopped
(its ``stalled_by``: ``symptoms`` names those), and not where the user's clipping is what keeps the
steps small (``symptoms``' ``tight_clip``, for a plateau alone; beside other alarms a clip
this tight is rare and the rate is still named).
"""

from __future__ import annotations

from .finding import Finding, is_alarm, settled
from .rules.loss_plateau import RAISE_RATE
from .symptoms import learned_first, stayed

#: The symptom whose evidence carries the step sizes over the plateau.
SYMPTOM = "loss_plateau"

#: Remedies that lower the rate further: dropped from the other alarms here.
LOWER_THE_RATE = frozenset({"lower_lr", "lr_warmup"})


def settle_small_steps(findings: list[Finding]) -> list[Finding]:
    """``findings`` with a loss plateau from the start whose every layer's steps were tiny
    told that the learning rate is too low, and every other alarm told so too, each with
    ``raise_lr`` first and without the remedies that lower the rate; unchanged otherwise (a
    plateau alone is ``symptoms``')."""
    plateau = next((f for f in findings if f.rule == SYMPTOM and is_alarm(f)), None)
    if plateau is None or not _every_step_tiny(plateau):
        return findings
    others = [f for f in findings if is_alarm(f) and f.rule != SYMPTOM]
    # Steps too large are the other end of the rate; weights a schedule or the precision
    # stopped (unstable_updates' stalled_by) have their own, more exact cause.
    if not others or any(
        f.evidence.get("high_update_ratio") or f.evidence.get("stalled_by") for f in others
    ):
        return findings
    ev = plateau.evidence
    moved = (
        f"even the layer that moves most, {ev.get('top_update_layer')}, moves a median "
        f"{ev.get('top_update_ratio'):.2g} of its norm per step over the plateau, where "
        "healthy training is near 1e-3"
    )
    rules = ", ".join(sorted({f.rule for f in others}))
    out = []
    for f in findings:
        if f is plateau:
            message = (
                f"Loss plateau with tiny steps in every layer: from step "
                f"{ev.get('plateau_from_step')} the loss{stayed(ev)}, and {moved}: no layer "
                "takes a step that changes the loss, so the learning rate is likely too low "
                f"for this model. The other findings ({rules}) describe the model at its "
                "start, which training at a working rate may outgrow: raise the rate first."
            )
            f = settled(f, message, cause="tiny_steps_everywhere", remedies=RAISE_RATE)
        elif is_alarm(f):
            message = (
                f"{f.message} Every layer's steps are tiny: {moved}. At this learning rate "
                "no layer trains, so raise the rate (raise_lr) before trying the others."
            )
            kept = tuple(h for h in f.remedies if h.id not in LOWER_THE_RATE | {"raise_lr"})
            f = settled(f, message, remedies=RAISE_RATE + kept, tiny_steps_everywhere=True)
        out.append(f)
    return out


def _every_step_tiny(f: Finding) -> bool:
    """Whether the plateau starts with the run and even its layer that moved most moved
    less per step than the rule's ``tiny_update_ratio``."""
    top, tiny = f.evidence.get("top_update_ratio"), f.evidence.get("tiny_update_ratio")
    tiny_everywhere = isinstance(top, float) and isinstance(tiny, float) and top < tiny
    return tiny_everywhere and not learned_first(f)
