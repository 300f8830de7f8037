"""``vanishing_gradient``: the gradient shrinks by a large factor from the last layers to the first.

Evidence, per recorded step: the depth trend ``c``, the least-squares rise of log10 grad_rms
from the first to the last layer, in decades. The rule takes the median of ``c`` over windows of
``window`` rows (sustained, not one noisy step) and fires when a window's median reaches
``warn_decades``. It names where the largest drop happens from the backward gain profile
(``out_grad_norm``, the gradient reaching each layer's output) when it was recorded, else from
``grad_rms`` between consecutive layers. Independently, any layer whose grad_rms stays below
SageMaker Debugger's absolute floor (1e-7) over the last window fires it as critical, unless
its recorded update ratio shows the optimizer moving it like the other layers (Adam rescales
a tiny gradient): then the floor is "too small to change the weights" no longer. Nor does a
floor layer count when a layer before it (nearer the input) gets a gradient within
``warn_decades`` of the largest: the backward signal got past it, so it did not vanish with
depth. Such layers are parameters the loss does not depend on (attention over a single key,
as SegFormer's, LeViT's and MobileViT's on small images: query, key and attention-bias
gradients of 1e-13 and exactly 0 while the model learns) and no depth remedy changes them.
Through norms on the main path whose gains start at most 1/``norm_gain_factor`` of their
identity (HF EfficientNet's, drawn from N(0, 0.02)), a re-initialisation is the first remedy.

Both are judged while the model learns: when a ``loss`` was logged, rows in loss windows whose
median has fallen to ``finished_loss_fraction`` of the starting loss are left out (a confident
model's errors, and so all its gradients, are small; its depth contrast says nothing about
whether the gradient reaches the first layers), and "the last window" is the last one before.
A contrast whose last learning window is back under ``warn_decades`` has resolved (the model
grew out of it, as freshly initialised transformers do in their first tens of steps): without
a floor hit it is only ``info``.
"""

from __future__ import annotations

import numpy as np

from ...trace import Trace
from .._common import (
    by_layer,
    core_layers,
    depth_span,
    dominant_activation,
    fl,
    fmt_factor,
    hints,
    metric_rows,
    nanmedian,
    norm_gains,
    pow10,
    quiet_nan,
    residual_shape,
    safe_log10,
    step_span,
    take_cols,
    window_medians,
)
from .._loss import learning_rows
from ..finding import Finding, RemedyHint, Severity
from ..rates import warm_up_length
from ..thresholds import VanishingGradientThresholds

RULE = "vanishing_gradient"


def check(trace: Trace, th: VanishingGradientThresholds) -> Finding | None:
    """Return the vanishing-gradient finding of ``trace``, or None when the gradient flows."""
    steps, grad = metric_rows(trace, "grad_rms")
    cols = core_layers(trace)
    if len(steps) == 0 or len(cols) == 0:
        return None
    # Judged while the model learns: rows where the loss has fallen to a small fraction of
    # its start belong to a confident model, whose every gradient is small (issue 12).
    learning, finished_at = learning_rows(trace, steps, th.window, th.finished_loss_fraction)
    if not learning.all():
        steps, grad = steps[learning], grad[learning]
        if len(steps) == 0:
            return None
    names = [trace.layers[i].name for i in cols]
    g = take_cols(grad, cols)  # (S, L) core layers only
    logg = safe_log10(g)

    # --- absolute floor over the last window (SageMaker's mean |g| < 1e-7).
    last = g[-min(th.window, len(g)) :]
    with quiet_nan():
        last_med = nanmedian(last, axis=0)  # (L,)
    floor_hit = np.isfinite(last_med) & (last_med < th.abs_floor)
    # A floor layer that its optimizer moves like the others is not "too small to change".
    moving = _moving(trace, cols, floor_hit, steps[-len(last) :], th)
    floor_hit[list(moving)] = False
    bypassed = _bypassed(last_med, floor_hit, th)
    floor_hit[bypassed] = False

    # --- relative evidence: depth contrast, window medians, over the layers the backward
    # signal passes through (a bypassed layer's 1e-13 would pull a least-squares trend).
    trend = np.flatnonzero(~bypassed)
    contrast_hit = False
    resolved = False
    worst = float("nan")
    worst_steps = ""  # the window the quoted factor is the median of, named in the message
    win_meds = np.zeros(0)
    starts = np.zeros(0, np.int64)
    if len(trend) >= th.min_layers:
        c = depth_span(logg[:, trend])  # (S,)
        win_meds, starts = window_medians(c, th.window)
        with quiet_nan():
            contrast_hit = bool(np.nanmax(win_meds, initial=-np.inf) >= th.warn_decades)
            worst = float(np.nanmax(win_meds)) if np.isfinite(win_meds).any() else float("nan")

    if not contrast_hit and not floor_hit.any():
        return None

    evidence: dict[str, object] = {
        "metric": "grad_rms",
        "warn_decades": th.warn_decades,
        "critical_decades": th.critical_decades,
        "abs_floor": th.abs_floor,
        "window_rows": th.window,
    }
    if finished_at is not None:
        # Say which rows were left out, so the user can check the judgement.
        evidence["finished_at_step"] = finished_at
        evidence["finished_loss_fraction"] = th.finished_loss_fraction
        evidence["learning_rows"] = len(steps)
    layers: list[str] = []
    span: tuple[int, int] | None = step_span(steps)
    severe = False
    if contrast_hit:
        hit = np.flatnonzero(win_meds >= th.warn_decades)
        w0, w1 = int(hit[0]), int(hit[-1])
        row_end = int(starts[w1 + 1]) - 1 if w1 + 1 < len(starts) else len(steps) - 1
        span = (int(steps[starts[w0]]), int(steps[row_end]))
        worst_w = int(np.nanargmax(win_meds))
        evidence.update(
            max_contrast_decades=fl(worst),
            last_over_first_factor=fl(pow10(worst)),
            windows_over_threshold=len(hit),
            windows=len(win_meds),
        )
        severe = worst >= th.critical_decades
        # A contrast that the model has since grown out of (its last learning window is
        # back under warn_decades) is history, not a gradient that fails to arrive now:
        # freshly initialised transformers start with a small gradient below the head and
        # lose it within tens of steps while the loss begins to fall.
        resolved = bool(np.isfinite(win_meds[-1]) and win_meds[-1] < th.warn_decades)
        if resolved:
            evidence["resolved_by_step"] = int(steps[starts[int(hit[-1]) + 1]])
            evidence["last_window_contrast_decades"] = fl(win_meds[-1])
        w_end = int(starts[worst_w + 1]) if worst_w + 1 < len(starts) else len(steps)
        evidence["max_contrast_steps"] = [int(steps[starts[worst_w]]), int(steps[w_end - 1])]
        worst_steps = (
            f" (depth trend over the weight layers, worst window: median over steps "
            f"{int(steps[starts[worst_w]])}-{int(steps[w_end - 1])})"
        )
        drop = _largest_drop(trace, cols[trend], logg[int(starts[worst_w]) : w_end, trend])
        if drop is not None:
            lo, hi, decades, source = drop
            lo, hi = int(trend[lo]), int(trend[hi])
            evidence["largest_drop"] = {
                "from_layer": names[hi],
                "to_layer": names[lo],
                "factor": fl(pow10(-decades)),
                "source": source,
            }
            layers += [names[hi], names[lo]]
    if moving:
        # Below the floor, yet updated like the rest (an adaptive optimizer): reported only.
        evidence["below_floor_moving"] = {
            names[j]: {"grad_rms": fl(last_med[j]), "update_ratio": fl(ratio)}
            for j, ratio in moving.items()
        }
    if bypassed.any():
        # Below the floor, yet the gradient reached the layers before them: reported only.
        evidence["below_floor_bypassed"] = by_layer(
            [names[j] for j in np.flatnonzero(bypassed)], last_med[bypassed]
        )
    if floor_hit.any():
        floor_names = [names[i] for i in np.flatnonzero(floor_hit)]
        evidence["below_floor"] = by_layer(floor_names, last_med[floor_hit])
        layers += [n for n in floor_names if n not in layers]
        severe = True
        if not contrast_hit:
            span = step_span(steps[-len(last) :])

    n = len(cols)
    act = dominant_activation(trace, cols)
    factor = fmt_factor(worst) if np.isfinite(worst) else "many orders of magnitude"
    if act == "sigmoid":
        bound = 0.25 ** (n - 1)
        cause = (
            f"the sigmoid's derivative is at most 0.25, so {n - 1} layers multiply the "
            f"gradient by at most 0.25^{n - 1} = {bound:.1g}; here the first layers get "
            f"{factor} less gradient than the last"
        )
    elif act == "tanh":
        cause = (
            f"tanh's derivative is 1 only at 0 and falls toward 0 where units saturate, so "
            f"over {n} layers the gradient reaching the first layers is {factor} smaller than "
            "at the last"
        )
    else:
        cause = (
            "each layer's backward pass multiplies the gradient by its weights and its "
            f"activation's derivative; a gain below 1 compounds over {n} layers so the first "
            f"layers get {factor} less gradient than the last"
        )
    if not contrast_hit:
        cause = (
            "the gradient of layer(s) "
            f"{', '.join(repr(trace.layer_label(n)) for n in layers[:3])} is below "
            f"{th.abs_floor:g} (RMS), too "
            "small to change the weights"
        )
    message = f"Vanishing gradient: {cause}{worst_steps if contrast_hit else ''}."
    severity: Severity = "critical" if severe else "warning"
    if resolved and not floor_hit.any() and span is not None:
        severity = "info"
        # "Early on" only for a contrast gone within the first half of the learning rows
        # (HF BART's encoder sat near 1e3x below its decoder over steps 10-179 of 200).
        half = int(steps[0]) + (int(steps[-1]) - int(steps[0])) / 2
        when = "early on" if span[1] <= half else f"until step {span[1]}"
        message = (
            f"Vanishing gradient {when}, since resolved: {cause} in steps {span[0]}-{span[1]}"
            f" (window medians), but from step {evidence['resolved_by_step']} it stays under "
            f"the {fmt_factor(th.warn_decades)} threshold ({fmt_factor(float(win_meds[-1]))} "
            "in the last window)."
        )
    return Finding(
        rule=RULE,
        severity=severity,
        layers=tuple(layers),
        steps=span,
        evidence=evidence,
        message=message,
        remedies=_remedies(
            act,
            any(trace.layers[i].recurrent for i in cols),
            _warm_up(trace),
            _low_norm_gain(trace, th.norm_gain_factor),
        ),
    )


def _moving(
    trace: Trace,
    cols: np.ndarray,
    floor_hit: np.ndarray,
    span: np.ndarray,
    th: VanishingGradientThresholds,
) -> dict[int, float]:
    """{column: median update ratio} of the floor layers that move like the others.

    Over the sampled rows within ``span`` (the steps of the floor's window): a layer moves
    when its median update ratio is at least ``moving_ratio`` and within ``moving_decades`` of
    the median over all weight layers. Without recorded update ratios there, none does.
    """
    if not floor_hit.any() or not trace.has_metric("update_ratio"):
        return {}
    rows, ratio = metric_rows(trace, "update_ratio")
    inside = (rows >= span[0]) & (rows <= span[-1])
    if not inside.any():
        return {}
    with quiet_nan():
        med = nanmedian(take_cols(ratio[inside], cols), axis=0)  # (L,)
        typical = float(np.nanmedian(med)) if np.isfinite(med).any() else float("nan")
    if not typical > 0:
        return {}
    least = max(th.moving_ratio, typical * 10.0**-th.moving_decades)
    return {int(j): float(med[j]) for j in np.flatnonzero(floor_hit) if med[j] >= least}


def _bypassed(
    last_med: np.ndarray, floor_hit: np.ndarray, th: VanishingGradientThresholds
) -> np.ndarray:
    """Mask of the floor columns the backward signal got past on its way to the input.

    ``last_med``: each core layer's median grad_rms over the last window, in depth order. A
    floor column is bypassed when an earlier column has a gradient over the floor and within
    ``warn_decades`` of the largest: the signal reached that layer, so it did not die at this
    depth. What keeps the column's own gradient under the floor is not the depth (its
    parameters have no effect on the loss, or its input collapsed), and no depth remedy
    changes it.
    """
    bypassed = np.zeros_like(floor_hit)
    ok = np.isfinite(last_med) & (last_med >= th.abs_floor)
    if not floor_hit.any() or not ok.any():
        return bypassed
    healthy = ok & (last_med >= np.max(last_med[ok]) * 10.0**-th.warn_decades)
    first = int(np.argmax(healthy))
    bypassed[first + 1 :] = floor_hit[first + 1 :]
    return bypassed


def _largest_drop(
    trace: Trace, cols: np.ndarray, logg_window: np.ndarray
) -> tuple[int, int, float, str] | None:
    """(lower layer, upper layer, log10 gain, source) of the steepest backward drop.

    ``out_grad_norm`` measures ||dL/dh|| at each layer's output; the ratio between consecutive
    layers is the backward gain of the block between them. Without it, consecutive grad_rms.
    """
    profile = None
    source = "grad_rms"
    if trace.has_metric("out_grad_norm"):
        _, ogn = metric_rows(trace, "out_grad_norm")
        if len(ogn):
            with quiet_nan():
                prof = nanmedian(safe_log10(ogn[:, cols]), axis=0)
            if np.isfinite(prof).sum() >= 2:
                profile, source = prof, "out_grad_norm"
    if profile is None:
        with quiet_nan():
            profile = nanmedian(logg_window, axis=0) if len(logg_window) else None
    if profile is None:
        return None
    ok = np.flatnonzero(np.isfinite(profile))
    if len(ok) < 2:
        return None
    # Backward gain from layer ok[j+1] down to layer ok[j] (negative = it shrinks).
    gains = profile[ok[:-1]] - profile[ok[1:]]
    j = int(np.argmin(gains))
    if gains[j] >= 0:
        return None
    return int(ok[j]), int(ok[j + 1]), float(gains[j]), source


def _warm_up(trace: Trace) -> tuple[str, str] | None:
    """``lr_warmup`` for a transformer (most weight layers in a residual branch, and
    LayerNorm or RMSNorm layers): a post-LN transformer loses its early layers' gradient
    without a warm-up (Xiong et al. 2020); the real corpus' 4-layer post-LN LM under Adam
    1e-2 learns with one over its first 50 of 150 steps (loss 3.25 -> 2.64), not with one
    over 15 (3.14). A run that warmed up is offered a longer one; one whose rate is unknown,
    none; a BatchNorm ResNet, none (its warm-up answers large-batch instability)."""
    length, shape = warm_up_length(trace), residual_shape(trace)
    if not (shape.residual and shape.layer_norms) or length is None:
        return None
    if length == 0:
        why = "the first steps ran at the peak rate"
    else:
        why = f"this run's rate rose to its peak over its first {length} steps: a longer warm-up"
    return (
        "lr_warmup",
        f"{why}; small first steps let a transformer (post-LN above all) settle before the "
        "rate reaches its peak",
    )


def _low_norm_gain(trace: Trace, factor: float) -> float | None:
    """The median starting gain of the norms on the main path when it is ``factor`` or more
    under their identity, 1 (:func:`norm_gains`); else None."""
    gains = list(norm_gains(trace).values())
    if not gains:
        return None
    typical = float(np.median(gains))
    return typical if typical <= 1.0 / factor else None


def _remedies(
    act: str | None, recurrent: bool, warm_up: tuple[str, str] | None, low_gain: float | None
) -> tuple[RemedyHint, ...]:
    init = "init_he" if act not in ("sigmoid", "tanh") else "init_xavier"
    if low_gain is not None:
        # The norms shrink the signal themselves: re-initialise first, and add no norm.
        return hints(
            (
                init,
                f"the norms on the main path start with gains of RMS {low_gain:.2g}, not 1, "
                "each scaling the gradient down; it re-initialises the weights and puts "
                "torch's norms back to gain 1",
            ),
            ("init_lsuv", "rescales each layer on real data, with torch's norms back to gain 1"),
            ("residual", "skip connections add an identity path the gradient always flows through"),
            ("reduce_depth", "fewer layers multiply fewer factors below 1"),
        )
    pairs: list[tuple[str, str]] = [] if warm_up is None else [warm_up]
    if recurrent:
        pairs += [
            ("lstm", "its additive cell state carries the gradient across many steps"),
            ("gru", "gates let the gradient skip steps, with fewer parameters than an LSTM"),
        ]
    if act in ("sigmoid", "tanh"):
        pairs.append(("relu", f"ReLU's derivative is 1 where active, unlike {act}'s"))
    pairs += [
        ("residual", "skip connections add an identity path the gradient always flows through"),
        (
            "batchnorm",
            "normalising each layer's input keeps activations where derivatives are large",
        ),
        (init, "a variance-preserving initialisation starts every layer's gain near 1"),
        ("layerwise_pretraining", "trains the early layers before the gradient has to reach them"),
        ("reduce_depth", "fewer layers multiply fewer factors below 1"),
    ]
    return hints(*pairs)
