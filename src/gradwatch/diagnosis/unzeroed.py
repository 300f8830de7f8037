"""Findings of a loop that never zeroes its gradients: the loop is the cause.

``exploding_gradient`` names a loop whose gradients nothing zeroes between optimizer steps
(``never_zeroed`` in its evidence, from what the watch saw of the ``.grad`` tensors). Each
step then follows the sum of every gradient so far, and what the other rules measure after
that (a loss that climbs, units that die, steps too large) follows from it: an HF ResNet
trained that way at SGD 0.05 + momentum drew dead units, overshooting updates and a loss
that rose to 95, with ``leaky_relu`` first among the remedies; an HF GPT-2 under AdamW 1e-3,
a loss that rose from 3.39 to 3.97, with ``lower_lr``. No remedy of the catalogue mends a
missing ``zero_grad()``, and the others would be retrained with the same loop, so such
findings say so and offer none.

Example:
    >>> from gradwatch.diagnosis.finding import Finding, RemedyHint
    >>> loop = Finding("exploding_gradient", "critical", (), (1, 99),
    ...                {"never_zeroed": {"pairs_compared": 12, "pairs_not_zeroed": 12}}, "...")
    >>> dead = Finding("dead_units", "warning", ("bn",), (40, 99), {}, "Dead units: ...",
    ...                (RemedyHint("leaky_relu", "a slope"),))
    >>> settle_unzeroed([loop, dead])[1].remedies
    ()
"""

from __future__ import annotations

from .finding import Finding, settled

#: The rule whose evidence names the loop.
CAUSE = "exploding_gradient"


def settle_unzeroed(findings: list[Finding]) -> list[Finding]:
    """``findings`` with every other finding of a loop that never zeroes its gradients told
    so, without remedies; unchanged when no finding names such a loop."""
    if not any(f.rule == CAUSE and f.evidence.get("never_zeroed") for f in findings):
        return findings
    return [f if f.rule == CAUSE else _after(f) for f in findings]


def _after(f: Finding) -> Finding:
    message = (
        f"{f.message} The gradients were never zeroed between steps (exploding_gradient): "
        "zero them once per optimizer step first; this may be its consequence."
    )
    return settled(f, message, unzeroed_loop=True)
