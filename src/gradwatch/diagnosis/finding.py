"""What a rule reports: a :class:`Finding`, with the remedies it recommends."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from .._activations import ACTIVATION_IDS

Severity = Literal["info", "warning", "critical"]

#: Order used to sort findings, most severe first.
SEVERITY_RANK: dict[str, int] = {"critical": 2, "warning": 1, "info": 0}

#: Stable rule ids (DESIGN.md). Users filter on them; never rename one.
RULE_IDS: tuple[str, ...] = (
    "vanishing_gradient",
    "exploding_gradient",
    "nonfinite_gradient",
    "stalled_early_layers",
    "collapsing_weights",
    "loss_plateau",
    "saturated_activation",
    "dead_units",
    "poor_initialization",
    "short_memory",
    "unstable_updates",
)

#: Activation remedies: one remedy id per activation gradwatch can swap in (the swappable
#: ids of the one activation table, :mod:`gradwatch._activations`).
ACTIVATION_REMEDY_IDS: tuple[str, ...] = ACTIVATION_IDS

#: Stable remedy ids (DESIGN.md), understood by ``gradwatch.remedies.apply``.
REMEDY_IDS: tuple[str, ...] = (
    "residual",
    "layerwise_pretraining",
    "lstm",
    "gru",
    *ACTIVATION_REMEDY_IDS,
    "batchnorm",
    "layernorm",
    "init_xavier",
    "init_he",
    "init_lecun",
    "init_orthogonal",
    "init_identity",
    "init_lsuv",
    "clip_norm",
    "clip_value",
    "clip_adaptive",
    "reduce_depth",
    "faster_hardware",
)


@dataclass(frozen=True)
class RemedyHint:
    """A remedy a finding recommends, with the one-line reason it fits."""

    id: str
    reason: str


@dataclass(frozen=True)
class Finding:
    """One diagnosed problem.

    Attributes:
        rule: Stable rule id, one of :data:`RULE_IDS`.
        severity: ``"info"``, ``"warning"`` or ``"critical"``.
        layers: Module names of the layers concerned, most relevant first (the
            machine-readable form: ``Trace.layer_names`` entries).
        steps: First and last step of the evidence, or ``None`` for a run-wide finding.
        evidence: Observed values and the thresholds they crossed (JSON-serialisable).
        message: One plain sentence that says what is wrong and why.
        remedies: Ranked remedies, best first.
        layer_labels: The same layers as people read them, ``L<depth> <name>``
            (``Trace.layer_label``); filled in by :func:`~gradwatch.diagnosis.diagnose`,
            empty for a finding built by hand. Not part of equality.
    """

    rule: str
    severity: Severity
    layers: tuple[str, ...]
    steps: tuple[int, int] | None
    evidence: dict[str, Any] = field(hash=False, compare=True)
    message: str
    remedies: tuple[RemedyHint, ...] = ()
    layer_labels: tuple[str, ...] = field(default=(), compare=False)

    @property
    def shown_layers(self) -> tuple[str, ...]:
        """The layers as every view shows them: the labels when known, else the names."""
        if len(self.layer_labels) == len(self.layers):
            return self.layer_labels
        return tuple(s or "(root)" for s in self.layers)

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "severity": self.severity,
            "layers": list(self.layers),
            "layer_labels": list(self.shown_layers),
            "steps": list(self.steps) if self.steps is not None else None,
            "evidence": self.evidence,
            "message": self.message,
            "remedies": [{"id": r.id, "reason": r.reason} for r in self.remedies],
        }
