"""Findings that followed steps too large: the learning rate comes first.

``unstable_updates`` fires on steps too large for the weights (``high_update_ratio`` in its
evidence: ratios over ``warn_ratio`` the loss did not thrive on), and records as
``erased_at_start`` the layers a step in the first steps moved by more than their own norm.
What the other rules measure *after* such steps began (units that died, a gradient that
vanished, a loss that stopped improving) is then most likely their consequence, not the
architecture's: the structural remedies those rules name would be retrained at the same
rate and meet the same steps.

Measured on HF models from their configs (CPU, 200 steps, seed 0, each remedy as it comes):

* ResNet (2 stages, BatchNorm) at SGD 5 + momentum: steps of 1.1-2.4x the weights at step 0,
  then dead units (100% of a layer) and a vanishing gradient from step ~100; loss 2.81 ->
  2.46. ``init_he`` (first before this pass) 2.58 -> 2.20, ``leaky_relu`` 2.68 -> 68,
  ``lr_warmup`` (20 steps) 2.12 -> 0.86, ``lower_lr`` (a tenth) 1.31 -> 0.031 with no finding.
  After the 20-step warm-up its steps stay under the weights but still overshoot, and dead
  units follow them (0.86 at the end; ``leaky_relu`` led there while only steps that
  outweighed the weights counted here).
* ViT (2 layers) at AdamW 0.1: steps of ~5x the weights, a plateau; ``init_he`` and 20- or
  100-step warm-ups stay at 2.30-2.33, ``lower_lr`` 2.37 -> 1.54.

So such a finding gets ``lower_lr`` as its first remedy and says why. Only findings that
began after the first large step count (a vanishing gradient measured from step 0 is the
architecture's), and not when the gradient itself blew up (an ``exploding_gradient`` or
``nonfinite_gradient`` alarm: a large initialisation without normalisation makes the same
huge steps, and clipping is the remedy those rules rank).

Example:
    >>> from gradwatch.diagnosis.finding import Finding
    >>> steps = Finding("unstable_updates", "warning", ("fc",), (0, 14),
    ...                 {"high_update_ratio": {"fc": 2.4}, "erased_at_start": {"fc": 2.4}},
    ...                 "Unstable updates: ...")
    >>> dead = Finding("dead_units", "critical", ("bn",), (100, 190), {}, "Dead units: ...")
    >>> [r.id for r in settle_large_steps([steps, dead])[1].remedies]
    ['lower_lr']
"""

from __future__ import annotations

from dataclasses import replace

from ._common import hints
from .finding import Finding, is_alarm

#: The rule whose evidence names the large steps.
CAUSE = "unstable_updates"

#: Rules whose finding can be the large steps' consequence.
CONSEQUENCES = frozenset(
    {
        "dead_units",
        "vanishing_gradient",
        "stalled_early_layers",
        "saturated_activation",
        "collapsing_weights",
        "loss_plateau",
    }
)

#: Alarms that say the gradient itself blew up: the steps were then its consequence.
GRADIENT_BLEW_UP = frozenset({"exploding_gradient", "nonfinite_gradient"})


def settle_large_steps(findings: list[Finding]) -> list[Finding]:
    """``findings`` with ``lower_lr`` first among the remedies of each alarm that began after
    ``unstable_updates``' steps too large began, and a sentence saying so; unchanged when the
    gradient itself blew up."""
    alarms = [f for f in findings if is_alarm(f)]
    large = [f for f in alarms if f.rule == CAUSE and f.evidence.get("high_update_ratio")]
    if not large or large[0].steps is None:
        return findings
    if any(f.rule in GRADIENT_BLEW_UP for f in alarms):
        return findings
    cause, first = large[0], large[0].steps[0]
    return [
        _after(f, cause, first)
        if is_alarm(f) and f.rule in CONSEQUENCES and f.steps is not None and f.steps[0] > first
        else f
        for f in findings
    ]


def _what(cause: Finding) -> str:
    """The large steps, in words: those that erased the initialisation, else the largest."""
    erased, high = cause.evidence.get("erased_at_start"), cause.evidence.get("high_update_ratio")
    if isinstance(erased, dict) and erased:
        return (
            f"steps that moved {len(erased)} layer(s) by more than their own norm, which "
            "erases what the initialisation built"
        )
    worst = max(high.values()) if isinstance(high, dict) and high else None
    size = f" of up to {worst:.2g}x the weights' norm" if isinstance(worst, float) else ""
    return f"steps{size} that overshoot"


def _after(f: Finding, cause: Finding, first: int) -> Finding:
    (rate,) = hints(
        (
            "lower_lr",
            f"it began after steps too large (from step {first}): at the same rate a new "
            "start meets the same steps",
        )
    )
    message = (
        f"{f.message} It began after {_what(cause)} (unstable_updates, from step {first}): "
        "a lower learning rate is the first thing to try."
    )
    remedies = (rate, *(h for h in f.remedies if h.id != rate.id))
    return replace(
        f, message=message, remedies=remedies, evidence={**f.evidence, "after_large_steps": first}
    )
