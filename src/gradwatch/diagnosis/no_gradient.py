"""Layers that received no gradient: since when, and which are parameters the forward
does not use rather than a graph cut off.

``unstable_updates`` reads a layer whose weights stopped as cut off the loss's graph when it
had no gradient (``.grad`` None) over its last samples: a ``.detach()`` or
``torch.no_grad()`` in the forward, a branch the loss never uses. A module that owns
parameters itself beside layers that train, and whose own parameters never got a gradient,
is another thing: the forward does not use them (HF XLNet's ``mask_emb``, used only by
pretraining's permutation masks, drew the graph-cut warning live at step 100 of a healthy
run). Those are an ``info``.
"""

from __future__ import annotations

import numpy as np

from ..trace import Trace
from ._common import metric_rows
from .finding import Finding


def unused_own(trace: Trace, low: np.ndarray) -> np.ndarray:
    """The layers among ``low`` that received no gradient at any recorded step while a layer
    inside them did: parameters a module owns itself that the forward does not use (HF
    XLNet's ``mask_emb``, used only by pretraining's permutation masks, which its model
    owns beside the layers that train). A leaf layer without a gradient is a graph cut
    (``unstable_updates``' no-gradient stall); these are not."""
    first, last = int(trace.steps[0]), int(trace.steps[-1])
    names = trace.layer_names
    out = []
    for i in low:
        name = names[int(i)]
        inside = [n for n in names if n != name and (not name or n.startswith(name + "."))]
        if (
            inside
            and without_gradient(trace, [name], (first, last)) == first
            and without_gradient(trace, inside, (first, last)) is None
        ):
            out.append(int(i))
    return np.asarray(out, dtype=np.int64)


def unused_finding(trace: Trace, unused: np.ndarray, evidence: dict[str, object]) -> Finding:
    """The info that parameters a module owns itself never received a gradient."""
    names = [trace.layers[int(i)].name for i in unused]
    owned = [
        f"{trace.layers[int(i)].name}.{p}" if trace.layers[int(i)].name else p
        for i in unused
        for p in sorted(trace.layers[int(i)].shapes)
    ]
    more = f" and {len(owned) - 4} more" if len(owned) > 4 else ""
    shown = ", ".join(f"`{p}`" for p in owned[:4]) + more
    message = (
        f"Unused parameters: {shown}, owned by layer {trace.layer_label(names[0])!r} itself, "
        "received no gradient at any recorded step while the layers inside it trained: the "
        "forward does not use them. An embedding kept for another mode is unused by design "
        "(HF XLNet's `mask_emb`, for pretraining's permutation masks): freeze it "
        "(`requires_grad_(False)`) to say so (under DDP an unused parameter needs "
        "`find_unused_parameters=True` unless frozen); otherwise the forward skips a "
        "parameter it was meant to use."
    )
    steps = (int(trace.steps[0]), int(trace.steps[-1]))
    return Finding("unstable_updates", "info", tuple(names), steps, evidence, message)


def without_gradient(trace: Trace, names: list[str], span: tuple[int, int]) -> int | None:
    """The first step of the stretch, up to the end of ``span``, in which no layer of
    ``names`` had a gradient (``.grad`` None: ``grad_norm`` and ``nonfinite`` both missing,
    where a non-finite gradient is counted) at any step that recorded gradients; None where
    one had a gradient inside ``span`` or no step there recorded gradients."""
    steps, norms = metric_rows(trace, "grad_norm")
    count_steps, counts = metric_rows(trace, "nonfinite")
    upto = steps <= span[1]
    if not (upto & (steps >= span[0])).any() or not np.array_equal(steps, count_steps):
        return None
    columns = [trace.layer_names.index(name) for name in names]
    had = ~(np.isnan(norms[upto][:, columns]) & np.isnan(counts[upto][:, columns])).all(axis=1)
    last_with = np.flatnonzero(had)
    start = int(last_with[-1]) + 1 if len(last_with) else 0
    rows = steps[upto]
    return int(rows[start]) if start < len(rows) and rows[start] <= span[0] else None
