"""``collapsing_weights``: weight norms drifting toward zero.

The run is split into ``windows`` equal spans; per layer, the median weight norm of each;
the rule fires when a layer's last span is below ``warn_fraction`` of its first span *and*
the spans fall steadily (at least ``min_falling_fraction`` of consecutive pairs decrease):
a drift, not a jump. Only the rows where the model still learns are judged: once its loss
is a tenth of its start, the loss's gradient is tiny and weight decay shrinks the weights
unopposed, which costs nothing while the loss stays low (an HF ResNet under the CIFAR recipe
did so from step ~150 and ended at 0.49 of its norms with loss 0.003). A drift while the loss
keeps improving (at least ``min_progress`` below its start, never giving back more than
``max_relapse`` of its progress) is ``info``: weight decay shrinks what the loss does not
hold up, as regularisation does; the same ResNet on 40%-noisy labels sits at the noise's
floor (loss 1.5) while its shortcut's BatchNorm gain drifts to 0.37. The failure is weights
drifting to zero while the loss is stuck or gives its progress back.
Strong weight decay or an L2 penalty that outweighs the loss does this; small weights pass a
small signal forward and a small gradient backward.
"""

from __future__ import annotations

import itertools

import numpy as np

from ...trace import Trace
from .._common import by_layer, hints, metric_rows, nanmedian, quiet_nan
from .._loss import learning_rows
from .._outcome import loss_outcome
from ..decay_alone import decay_alone, explained
from ..finding import Finding, RemedyHint, Severity
from ..thresholds import CollapsingWeightsThresholds

RULE = "collapsing_weights"


def check(trace: Trace, th: CollapsingWeightsThresholds) -> Finding | None:
    """Return the collapsing-weights finding of ``trace``, or None."""
    steps, wn = metric_rows(trace, "weight_norm")
    learning, finished_at = learning_rows(trace, steps, th.loss_window, th.finished_loss_fraction)
    steps, wn = steps[learning], wn[learning]
    n = len(steps)
    n_win = min(th.windows, n)
    if n_win < th.min_windows or wn.shape[1] == 0:
        return None
    # The run split into `windows` equal spans: a drift is judged over the whole run, so a
    # slow fall under step-to-step noise still shows as falling medians.
    bounds = np.linspace(0, n, n_win + 1).astype(np.int64)
    meds = np.stack([nanmedian(wn[a:b], axis=0) for a, b in itertools.pairwise(bounds)])
    with quiet_nan():
        first = meds[0]
        ratio = meds[-1] / first
        falling = np.mean(np.diff(meds, axis=0) < 0, axis=0)
    ok = np.isfinite(ratio) & (first > 0)
    hit = ok & (ratio < th.warn_fraction) & (falling >= th.min_falling_fraction)
    if not hit.any():
        return None
    idx = np.flatnonzero(hit)
    idx = idx[np.argsort(ratio[idx])]  # most collapsed first
    names = [trace.layers[i].name for i in idx]
    worst = float(ratio[idx[0]])
    outcome = loss_outcome(
        trace, th.loss_window, th.min_progress, th.max_relapse, last_step=int(steps[-1])
    )
    thriving = outcome.get("loss_improving") is True
    label = trace.layer_label(names[0])
    start, end = outcome.get("loss_start"), outcome.get("loss_end")
    loss_words = (
        f" while the loss went {start:.3g} -> {end:.3g}"
        if isinstance(start, float) and isinstance(end, float)
        else ""
    )
    # What the optimizer's weight decay alone would have done, first span to last.
    mid = [int(steps[(a + b - 1) // 2]) for a, b in (bounds[:2], bounds[-2:])]
    alone = decay_alone(trace, names, mid[0], mid[1])
    by_alone = None if alone is None else alone[names[0]]
    by_decay = by_alone is None or explained(worst, by_alone)
    shrunk = f"shrank steadily to {worst:.2g} of their initial norm{loss_words}"
    if by_decay and by_alone is not None:
        shrunk += f" (the optimizer's weight decay alone: {by_alone:.2g})"
    elif not by_decay:
        alone_words = (
            "the optimizer does not decay them"
            if by_alone == 1.0
            else f"the optimizer's weight decay alone would take them to {by_alone:.2g}"
        )
        shrunk += (
            f", where {alone_words}: the updates themselves took them down (an L2 penalty in "
            "the loss, or steps that drive them toward 0)"
        )
    if thriving:
        severity: Severity = "info"
        message = (
            f"Shrinking weights under an improving loss: the weights of layer {label!r} "
            f"{shrunk}"
            + (
                ": weight decay (or a penalty) shrinks what the loss does not hold up, as "
                "regularisation does, and it did not keep the loss from improving. If the loss "
                "ends higher than the task allows, lower the weight decay."
                if by_decay
                else "; the shrink did not keep the loss from improving."
            )
        )
    else:
        severity = "critical" if worst < th.critical_fraction else "warning"
        message = (
            f"Collapsing weights: the weights of layer {label!r} {shrunk}; "
            + (
                "weight decay (or a penalty) pulls harder than the loss pushes, and "
                if by_decay
                else ""
            )
            + "shrinking weights shrink both the signal and its gradient."
        )
    remedies = () if thriving else _remedies(trace, idx)
    if not thriving and not remedies and by_decay:
        message += " Exclude normalisation gains from weight decay, or lower it."
    if not outcome:
        # Without a loss, regularisation (a drift the loss does not mind) cannot be told apart.
        message += (
            " No loss was logged: with w.log(loss=...) a drift under an improving loss is told "
            "apart as regularisation."
        )
    return Finding(
        rule=RULE,
        severity=severity,
        layers=tuple(names),
        steps=(int(steps[0]), int(steps[-1])),
        evidence={
            "metric": "weight_norm",
            "final_over_initial": by_layer(names, ratio[idx]),
            "falling_window_fraction": by_layer(names, falling[idx]),
            "warn_fraction": th.warn_fraction,
            "critical_fraction": th.critical_fraction,
            "min_falling_fraction": th.min_falling_fraction,
            "windows": n_win,
            **(
                {}
                if alone is None
                else {"decay_alone": by_layer(names, np.array(list(alone.values())))}
            ),
            **({} if finished_at is None else {"finished_at_step": finished_at}),
            **outcome,
        },
        message=message,
        remedies=remedies,
    )


def _remedies(trace: Trace, idx: np.ndarray) -> tuple[RemedyHint, ...]:
    """The structural remedies, for collapsing weight layers. A normalisation layer's own gain
    is not mended by adding a normalisation layer or re-initialising with He's scale."""
    if all(trace.layers[i].role == "norm" for i in idx):
        return ()
    return hints(
        ("layernorm", "makes the layer's output independent of its weight scale"),
        ("batchnorm", "also rescales the signal whatever the weight norm"),
        ("init_he", "restart from a variance-preserving scale (and lower weight decay)"),
    )
