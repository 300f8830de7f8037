"""The one ranking of remedies: the findings' hints pooled, checked against the layer table.

``gw.prescribe`` (:mod:`gradwatch.remedies.prescribe`) and the report's verdict both rank
with :func:`rank_remedies`, so "the first thing to try" is the same everywhere. It reads only
findings and a trace's layer table; checking a remedy against a live model is the remedies
package's job (``prescribe(findings, model)``), which re-ranks this list with its answer.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .._activations import SWAPPABLE, none_saturate
from ..trace import Trace
from ._common import residual_shape
from .finding import REMEDY_IDS, Finding, RemedyHint

__all__ = [
    "SEVERITY_WEIGHT",
    "RankedRemedy",
    "fitting_hints",
    "layer_table_applicability",
    "rank_remedies",
]

#: Weight of a finding's severity when pooling its remedies.
SEVERITY_WEIGHT: dict[str, float] = {"critical": 3.0, "warning": 2.0, "info": 1.0}


@dataclass(frozen=True)
class RankedRemedy:
    """One remedy the findings recommend, with its ranking score.

    Attributes:
        remedy: Remedy id (``gradwatch.diagnosis.REMEDY_IDS``).
        reason: Why it is recommended (the findings' reasons, joined by ``"; "``).
        score: Sum over the findings recommending it of severity weight / rank.
        rules: Ids of the findings that recommended it.
        applicable: Whether the layer table (when a trace was given) allows it.
        why_not: Why it does not apply, or None.
    """

    remedy: str
    reason: str
    score: float
    rules: tuple[str, ...]
    applicable: bool = True
    why_not: str | None = None


def layer_table_applicability(trace: Trace, remedy: str) -> tuple[bool, str | None]:
    """What the recorded layer table alone rules out (no model at hand, e.g. the CLI).

    Only clear cases are ruled out: no recurrent layer for lstm/gru/init_identity, no square
    Linear/Conv weight for residual/reduce_depth, residual where most weight layers already
    sit in a residual branch, batchnorm/layernorm for a residual net that has norm layers
    already (a transformer, a ResNet), the same activation after every layer.

    Example:
        >>> t = Trace.from_arrays(["fc"], [0], {"grad_rms": [[1.0]]})
        >>> layer_table_applicability(t, "lstm")
        (False, 'the recorded model has no RNN layer')
    """
    layers = trace.layers
    if remedy in ("lstm", "gru", "init_identity"):
        if not any(layer.type == "RNN" for layer in layers):
            return False, "the recorded model has no RNN layer"
    elif remedy in ("residual", "reduce_depth"):
        # A transformer or ResNet has them already: its probe found the residual branches
        # (LayerInfo.branch), which hold most of its weight layers. Said first: it is the
        # reason, whatever its layers' shapes (nn.TransformerEncoder has no square Linear).
        shape = residual_shape(trace)
        if remedy == "residual" and shape.residual:
            return False, (
                f"the recorded model has residual connections already: {shape.inside} of "
                f"its {shape.total} weight layers sit in a residual branch"
            )
        square = any(
            layer.type in ("Linear", "Conv1d", "Conv2d", "Conv3d")
            and len(layer.shapes.get("weight", [])) >= 2
            and layer.shapes["weight"][0] == layer.shapes["weight"][1]
            for layer in layers
        )
        if not square:
            return False, "no recorded Linear(d, d) or Conv(c, c) layer to make a residual block"
    elif remedy in ("batchnorm", "layernorm"):
        shape = residual_shape(trace)
        if shape.normalised:
            return False, (
                f"the recorded model is a normalised residual net already: {shape.norms} "
                f"normalisation layers beside its {shape.branches} residual branches"
            )
    elif remedy in SWAPPABLE:
        # LayerInfo.activation holds the torch class name, as the table's SWAPPABLE values do
        acts = {layer.activation for layer in layers if layer.activation is not None}
        if acts == {SWAPPABLE[remedy]}:
            return False, f"the recorded model already uses {remedy} everywhere"
        why = relu_misfit(acts) if remedy == "relu" else None
        if why:
            return False, why
    return True, None


def relu_misfit(acts: Iterable[str]) -> str | None:
    """Why the ``relu`` remedy does not fit a model with activations ``acts`` (class names),
    or None: none of them saturates, so a ReLU would pass no more gradient (the layer table's
    and the model's checks share it)."""
    acts = set(acts)
    if not none_saturate(acts):
        return None
    return (
        f"the model's activations ({', '.join(sorted(acts))}) do not saturate: a ReLU would "
        "pass no more gradient"
    )


def fitting_hints(finding: Finding, trace: Trace | None) -> tuple[RemedyHint, ...]:
    """``finding``'s remedy hints less those the trace's layer table rules out
    (:func:`layer_table_applicability`), for showing with the finding; all without a trace."""
    if trace is None:
        return finding.remedies
    return tuple(h for h in finding.remedies if layer_table_applicability(trace, h.id)[0])


def rank_remedies(findings: Iterable[Finding], *, trace: Trace | None = None) -> list[RankedRemedy]:
    """Pool the findings' remedy hints into one ranking, best first.

    A remedy's score is the sum, over the findings recommending it, of the finding's
    severity weight (critical 3, warning 2, info 1) divided by the remedy's rank in that
    finding (1 for its first choice). With ``trace``, the layer table rules out clear misfits
    (:func:`layer_table_applicability`); those come last, with ``applicable=False``. Equal
    scores keep the order the findings gave them. Ids this version does not know are dropped.

    Example:
        >>> from gradwatch.diagnosis import RemedyHint
        >>> f = Finding("vanishing_gradient", "critical", ("fc0",), (0, 9), {}, "...",
        ...             (RemedyHint("residual", "skip paths"), RemedyHint("relu", "no tails")))
        >>> [(r.remedy, r.score) for r in rank_remedies([f])]
        [('residual', 3.0), ('relu', 1.5)]
    """
    pooled: dict[str, tuple[float, list[str], list[str]]] = {}
    for f in findings:
        if not isinstance(f, Finding):
            raise TypeError(
                f"expected `findings` to hold gradwatch Finding objects but got {type(f).__name__}"
            )
        weight = SEVERITY_WEIGHT.get(f.severity, 1.0)
        for rank, hint in enumerate(f.remedies, start=1):
            score, reasons, rules = pooled.setdefault(hint.id, (0.0, [], []))
            if hint.reason not in reasons:
                reasons.append(hint.reason)
            if f.rule not in rules:
                rules.append(f.rule)
            pooled[hint.id] = (score + weight / rank, reasons, rules)
    out: list[RankedRemedy] = []
    for remedy, (score, reasons, rules) in pooled.items():
        if remedy not in REMEDY_IDS:
            continue  # a rule newer than this version of the remedies
        ok, why = layer_table_applicability(trace, remedy) if trace is not None else (True, None)
        out.append(RankedRemedy(remedy, "; ".join(reasons), round(score, 6), tuple(rules), ok, why))
    # stable sort: equal scores keep the order the findings gave them
    out.sort(key=lambda r: (not r.applicable, -r.score))
    return out
