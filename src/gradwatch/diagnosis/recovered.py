"""A cause training recovered from: a poor initialisation that nothing followed.

``poor_initialization`` reads only the start of training. When no other rule found anything
at warning level or above and the loss improved (``loss_improving`` in its evidence, which
the rule measures over the run), the gradient reached every layer and the model learned
despite its start. That is worth knowing, not a warning. Measured: a DDPM noise predictor
(4 SiLU layers of 256 under PyTorch's default initialisation, AdamW 1e-3, digits) starts
with a backward gain of 0.31 a layer and an output std of 0.05, and its loss falls 0.38 ->
0.115 in 3000 steps with nothing else found: it drew a warning with four re-initialisations
to try. Such a finding becomes ``info``, without remedies.

A poor start beside any other warning (a vanishing gradient, a loss plateau from the start)
stays a warning: it is then a likely cause. A plateau after learning that nothing else
explains is not such a warning (``symptoms.learned_plateau``; the symptoms pass makes it
info): an autoencoder on digits (64-128-16-128-64, ReLU, a sigmoid output under BCE, Adam
1e-3, PyTorch's default init) fell 44 -> 15.8 and levelled off there, at what its
grey-level targets allow, and the poor start and the plateau kept each other warnings.

Example:
    >>> from gradwatch.diagnosis.finding import Finding
    >>> start = Finding("poor_initialization", "warning", (), (0, 2),
    ...                 {"loss_improving": True, "loss_start": 2.3, "loss_end": 0.4,
    ...                  "measured_at_start": "each layer multiplies the gradient by 0.3"},
    ...                 "Poor initialisation: each layer multiplies the gradient by 0.3.")
    >>> [f.severity for f in settle_recovered([start])]
    ['info']
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .finding import Finding, alarms_besides, settled
from .symptoms import learned_plateau

if TYPE_CHECKING:
    from ..trace import Trace

#: The cause this pass settles.
CAUSE = "poor_initialization"


def settle_recovered(findings: list[Finding], trace: Trace | None = None) -> list[Finding]:
    """``findings`` with a poor initialisation that training recovered from made ``info``:
    no other finding at warning or above (a plateau after learning aside), and a loss that
    improved over the run."""
    if alarms_besides([f for f in findings if not learned_plateau(f, trace)], CAUSE):
        return findings
    return [
        _recovered(f)
        if f.rule == CAUSE and f.severity == "warning" and f.evidence.get("loss_improving") is True
        else f
        for f in findings
    ]


def _recovered(f: Finding) -> Finding:
    start, end = f.evidence.get("loss_start"), f.evidence.get("loss_end")
    went = (
        f" and the loss went {start:.3g} -> {end:.3g}"
        if isinstance(start, float) and isinstance(end, float)
        else " and the loss improved"
    )
    what = f.evidence.get("measured_at_start") or "the start was mis-scaled"
    better = (
        "standardised inputs"
        if "input_rms_at_least" in f.evidence
        else "a variance-preserving initialisation"
    )
    message = (
        f"Poor initialisation, recovered from: {what}. Yet nothing else was found{went}: the "
        f"gradient reached every layer and training recovered; {better} would start it at "
        "its working scale."
    )
    # No remedy: nothing needs mending now; the re-initialisations stay the vanishing and
    # stalled findings' remedies when those appear.
    return settled(f, message, "info", recovered=True)
