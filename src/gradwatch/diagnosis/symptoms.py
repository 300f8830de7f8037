"""A symptom no cause explains: a loss plateau after learning, with healthy gradients.

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
"""

from __future__ import annotations

from dataclasses import replace

from .finding import SEVERITY_RANK, Finding

#: The symptom rule this pass settles.
SYMPTOM = "loss_plateau"


def settle_symptoms(findings: list[Finding]) -> list[Finding]:
    """``findings`` with a loss plateau that learned first and has no cause made ``info``.

    Only for a diagnosis that ran every rule: with a subset, a missing cause may just not
    have been looked for.
    """
    causes = [f for f in findings if f.rule != SYMPTOM and SEVERITY_RANK[f.severity] >= 1]
    out = []
    for f in findings:
        if f.rule == SYMPTOM and f.severity == "warning" and not causes and _learned_first(f):
            f = _unexplained(f)
        out.append(f)
    return out


def _learned_first(f: Finding) -> bool:
    """Whether the plateau starts after the first loss window (the loss improved first)."""
    ev = f.evidence
    windows, plateau = ev.get("windows"), ev.get("plateau_windows")
    return isinstance(windows, int) and isinstance(plateau, int) and plateau < windows


def _unexplained(f: Finding) -> Finding:
    ev = f.evidence
    start, level = ev.get("start_loss"), ev.get("plateau_loss")
    fell = f" (from {start:.4g} at the start)" if isinstance(start, float) else ""
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
    return replace(
        f, severity="info", message=message, evidence={**ev, "unexplained": True}, remedies=()
    )
