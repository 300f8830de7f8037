"""Findings of a run whose optimizer leaves layers out: nothing steps them, nothing trains them.

An optimizer built from part of the model (``Adam(model.head.parameters())`` where the whole
model was meant to train, or parameters added after the optimizer was made) never steps the
rest: they get gradients and keep their initial weights. The watch names the layers with a
trainable parameter that its optimizer does not step (``meta["config"]["unstepped"]``,
recording/loop.py), and leaves their ``update_ratio`` missing, since another optimizer may
step them (a GAN's discriminator, Lightning's second optimizer). Of those, the layers whose
``weight_norm`` never changed over the run (:data:`UNCHANGED`, at :data:`MIN_SAMPLES`
sampled steps or more) are the ones nothing steps. Every finding at warning or above is told
so and offers no remedy (none of the catalogue mends the optimizer, and the others would be
retrained with the same one); with no such finding to carry it, :func:`unstepped_note` is a
note of the diagnosis (``Diagnosis.notes``).

Measured: a 3-layer ReLU MLP whose Adam (1e-2) held only the head's parameters drew
"unstable updates: ... no longer training" on the two hidden layers, with residual
connections, BatchNorm and He init as remedies, and an exploding-gradient warning (the
gradient reaching the fixed layers grows with the head's weights, 180x).

Example:
    >>> import numpy as np
    >>> from gradwatch.trace import Trace
    >>> t = Trace.from_arrays(["enc", "head"], [0, 10, 20],
    ...     {"weight_norm": np.array([[3.0, 1.0], [3.0, 1.5], [3.0, 2.0]])})
    >>> t.meta["config"] = {"unstepped": {"count": 1, "layers": ["enc"]}}
    >>> unstepped_note([], t)[:60]
    "Layer 'L0 enc' is not in the optimizer's parameter groups, a"
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..trace import Trace
from ._common import metric_rows
from ._loop import loop_config
from .finding import Finding, told_alarms, untold_note

#: Largest relative range of a layer's weight norm over the run that counts as unchanged
#: (an untouched tensor gives the same sum at every sample, float rounding aside; a layer
#: any optimizer steps moves far more over a run, even at unstable_updates' 1e-8 a step).
UNCHANGED = 1e-7
#: Sampled steps needed to call weights unchanged (two: a first and a later one).
MIN_SAMPLES = 2


def never_stepped(trace: Trace) -> list[str]:
    """The layers the watched optimizer does not step whose weights never changed."""
    seen = loop_config(trace, "unstepped")
    names = None if seen is None else seen.get("layers")
    if not isinstance(names, list) or not names:
        return []
    _, norms = metric_rows(trace, "weight_norm")
    columns = {name: i for i, name in enumerate(trace.layer_names)}
    out = []
    for name in names:
        if name not in columns:
            continue
        w = norms[:, columns[name]]
        w = w[np.isfinite(w)]
        if len(w) >= MIN_SAMPLES and w.max() - w.min() <= UNCHANGED * abs(w.max()):
            out.append(name)
    return out


def _sentence(trace: Trace, names: list[str]) -> str:
    shown = ", ".join(repr(trace.layer_label(n)) for n in names[:3])
    more = f" and {len(names) - 3} more" if len(names) > 3 else ""
    one = len(names) == 1
    layer, be, its, it, them, keep = (
        ("Layer", "is", "its", "it", "it", "keeps")
        if one
        else ("Layers", "are", "their", "they", "them", "keep")
    )
    return (
        f"{layer} {shown}{more} {be} not in the optimizer's parameter groups, and {its} weights "
        f"never changed over the run: nothing steps {them}, so {it} {keep} {its} "
        "initialisation. Pass every parameter you train to the optimizer (e.g. "
        f"`torch.optim.Adam(model.parameters())`), or freeze {them} (`requires_grad_(False)`) "
        "if that is meant"
    )


def settle_unstepped(findings: list[Finding], trace: Trace) -> list[Finding]:
    """``findings`` with every finding at warning or above told that some layers are never
    stepped, without remedies; unchanged unless :func:`never_stepped` finds some."""
    names = never_stepped(trace)
    if not names:
        return findings
    return told_alarms(findings, _sentence(trace, names), unstepped=names)


def unstepped_note(findings: Sequence[Finding], trace: Trace) -> str | None:
    """The sentence that some layers are never stepped, when no finding at warning or above
    carries it (:func:`settle_unstepped`); None when none is (:func:`never_stepped`)."""
    names = never_stepped(trace)
    return untold_note(findings, _sentence(trace, names) if names else None)
