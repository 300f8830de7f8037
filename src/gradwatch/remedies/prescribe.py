"""Prescribe: turn findings into the remedies that apply to *this* model, ranked.

Each :class:`~gradwatch.diagnosis.Finding` carries ranked remedy ids with a reason. They
are pooled (a remedy recommended by several findings, or by a critical one, ranks higher),
then each is checked against the model: a residual wrapper is not offered without a
shape-preserving block, LSTM/GRU not without an ``nn.RNN``, an activation swap not when
the model already uses that activation, and so on.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from torch import nn

from ..diagnosis import ACTIVATION_REMEDY_IDS, REMEDY_IDS, Finding
from ..diagnosis.ranking import rank_remedies, relu_misfit
from ._blocks import find_stacks
from ._common import activation_types, weight_layer_types
from .lower_lr import RATE_FACTORS, suggest_raise

if TYPE_CHECKING:
    from gradwatch.trace import Trace

__all__ = ["Prescription", "applicability", "prescribe"]

#: Layers a norm can follow (see gradwatch.remedies.normalization).
_NORMABLE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


@dataclass(frozen=True)
class Prescription:
    """One remedy recommended for a model.

    Attributes:
        remedy: Remedy id (``gradwatch.diagnosis.REMEDY_IDS``), for ``remedies.apply``.
        reason: Why it is recommended (the findings' reasons).
        applicable: Whether it applies to the model (True when no model was given).
        why_not: Why it does not apply, or None.
        options: Options to pass to ``remedies.apply`` (``max_norm`` suggested from the
            trace; ``"<required>"`` marks data the caller must supply).
        rules: Ids of the findings that recommended it.
        score: Ranking score: sum over findings of severity weight / rank.
        checked: Whether applicability was checked against a model.
    """

    remedy: str
    reason: str
    applicable: bool
    why_not: str | None
    options: dict[str, Any] = field(default_factory=dict)
    rules: tuple[str, ...] = ()
    score: float = 0.0
    checked: bool = True

    def to_json(self) -> dict[str, Any]:
        return {
            "remedy": self.remedy,
            "reason": self.reason,
            "applicable": self.applicable,
            "why_not": self.why_not,
            "options": {
                k: (v if isinstance(v, (int, float, str, bool)) else repr(v))
                for k, v in self.options.items()
            },
            "rules": list(self.rules),
            "score": self.score,
            "checked": self.checked,
        }


def _hidden_activation_types(model: nn.Module) -> set[type[nn.Module]]:
    from .activations import _output_activations

    outputs = _output_activations(model)
    return {
        type(m)
        for name, m in model.named_modules()
        if isinstance(m, activation_types()) and name not in outputs
    }


def applicability(model: nn.Module, remedy: str) -> tuple[bool, str | None]:
    """Whether ``remedy`` can be applied to ``model``, and if not, why (one sentence).

    A structural check, cheap (no copy, no forward pass).

    Example:
        >>> applicability(nn.Sequential(nn.Linear(2, 3), nn.Tanh()), "lstm")
        (False, 'the model has no nn.RNN to replace')
    """
    if remedy not in REMEDY_IDS:
        raise ValueError(f"unknown remedy id {remedy!r}; expected one of {list(REMEDY_IDS)}")
    has_rnn = any(type(m) is nn.RNN for m in model.modules())
    weight_layers = [m for m in model.modules() if isinstance(m, weight_layer_types())]
    stacks = find_stacks(model)
    if remedy in ("residual", "reduce_depth"):
        if not any(s.preserving_units for s in stacks):
            return False, (
                "no shape-preserving block (Linear(d, d) or same-padded Conv(c, c) + "
                "activation) inside an nn.Sequential"
            )
        return True, None
    if remedy in ("lstm", "gru", "init_identity"):
        return (True, None) if has_rnn else (False, "the model has no nn.RNN to replace")
    if remedy in ACTIVATION_REMEDY_IDS:
        from .activations import _module_class

        hidden = _hidden_activation_types(model)
        if not hidden:
            return False, (
                "no hidden activation module to swap (functional activations in forward "
                "need swap_activations(..., rewrite_functional=True))"
            )
        if hidden == {_module_class(remedy)}:
            return False, f"the model already uses {remedy} everywhere"
        why = relu_misfit(t.__name__ for t in hidden) if remedy == "relu" else None
        return (False, why) if why else (True, None)
    if remedy in ("batchnorm", "layernorm"):
        for s in stacks:
            children = list(s.module.children())
            for a, b in itertools.pairwise(children):
                if isinstance(a, _NORMABLE) and isinstance(b, activation_types()):
                    return True, None
        return False, (
            "no Linear/Conv directly followed by an activation inside an nn.Sequential "
            "(or every one is already normalised)"
        )
    if remedy.startswith("init_"):
        if remedy == "init_lsuv" and not weight_layers:
            return False, "LSUV needs Linear or Conv layers"
        if not weight_layers and not any(isinstance(m, nn.RNNBase) for m in model.modules()):
            return False, "no Linear, Conv or recurrent layer to initialise"
        return True, None
    if remedy == "layerwise_pretraining":
        linear_units = [
            u
            for u in (stacks[0].units if stacks and stacks[0].name == "" else ())
            if isinstance(stacks[0].module[u.start], nn.Linear)
        ]
        if len(linear_units) < 2:
            return False, "layer-wise pretraining needs an nn.Sequential MLP (two or more Linear)"
        return True, None
    from .registry import TRAINING_TIME

    if remedy in TRAINING_TIME:
        if not any(p.requires_grad for p in model.parameters()):
            return False, "the model has no trainable parameter"
        return True, None
    assert remedy == "faster_hardware", remedy
    from .hardware import _model_device, fastest_device

    fastest = fastest_device()
    if fastest.type == "cpu":
        return False, "no accelerator (CUDA or MPS) is available on this machine"
    if _model_device(model).type == fastest.type:
        return False, f"the model is already on the fastest device ({fastest})"
    return True, None


def _options(remedy: str, trace: Trace | None) -> dict[str, Any]:
    """The options the caller must pass (marked ``"<required>"``, from the registry), with
    ``max_norm`` of ``clip_norm`` suggested from the trace where it can be, and the factor
    of ``lower_lr`` (its default: the one setting that says what the remedy does), and that
    of ``raise_lr`` read off the trace's steps (:func:`~.lower_lr.suggest_raise`), else its
    default."""
    from .registry import REMEDIES, REQUIRED

    options: dict[str, Any] = dict.fromkeys(REMEDIES[remedy].required, REQUIRED)
    if remedy in RATE_FACTORS:
        options["factor"] = REMEDIES[remedy].options["factor"]
    if remedy == "raise_lr" and trace is not None:
        options["factor"] = suggest_raise(trace) or options["factor"]
    if remedy == "clip_norm" and trace is not None and trace.has_scalar("global_grad_norm"):
        from .clipping import suggest_max_norm

        # too few steps to suggest one: the caller still has to choose
        with contextlib.suppress(ValueError):
            options["max_norm"] = float(suggest_max_norm(trace))
    return options


def prescribe(
    findings: Iterable[Finding],
    model: nn.Module | None = None,
    *,
    trace: Trace | None = None,
    include_inapplicable: bool = False,
) -> list[Prescription]:
    """Rank the remedies the findings recommend and keep those that apply to ``model``.

    A remedy's score is the sum, over the findings recommending it, of the finding's
    severity weight (critical 3, warning 2, info 1) divided by the remedy's rank in that
    finding (1 for its first choice). Without ``model`` the remedies are not checked against
    a model (``checked=False``); with a ``trace`` the recorded layer table still rules out
    the clear misfits (no RNN layer for lstm, no square layer for residual). With ``trace``,
    ``clip_norm`` also comes with a ``max_norm`` from :func:`suggest_max_norm`.

    Args:
        findings: From ``gw.diagnose``.
        model: The model to check the remedies against.
        trace: The recorded trace (suggested options; layer-table checks without a model).
        include_inapplicable: Also return the remedies that do not apply (last, with
            ``why_not``).

    Example:
        >>> from gradwatch.diagnosis import Finding, RemedyHint
        >>> f = Finding("vanishing_gradient", "critical", ("0",), (0, 9), {}, "...",
        ...             (RemedyHint("residual", "skip paths"), RemedyHint("relu", "no tails")))
        >>> mlp = nn.Sequential(nn.Linear(2, 8), nn.Sigmoid(), nn.Linear(8, 1))
        >>> [p.remedy for p in prescribe([f], mlp)]
        ['relu']
    """
    out: list[Prescription] = []
    # The one ranking (gradwatch.diagnosis.ranking), also behind the report's verdict; with a
    # model, each remedy is checked against it instead of against the layer table.
    for r in rank_remedies(findings, trace=trace if model is None else None):
        ok, why = applicability(model, r.remedy) if model is not None else (r.applicable, r.why_not)
        out.append(
            Prescription(
                remedy=r.remedy,
                reason=r.reason,
                applicable=ok,
                why_not=why,
                options=_options(r.remedy, trace),
                rules=r.rules,
                score=r.score,
                checked=model is not None,
            )
        )
    # stable sort: equal scores keep the order the findings gave them
    out.sort(key=lambda p: (not p.applicable, -p.score))
    return out if include_inapplicable else [p for p in out if p.applicable]
