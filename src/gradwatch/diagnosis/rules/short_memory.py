"""``short_memory``: a recurrent net's gradient forgets distant inputs.

The recorder measures ``||dL/dx_t||`` for every input position t of a recurrent layer. With a
loss on the last output, the distance to the loss is ``d = T - 1 - t``. The rule takes the
median profile over the last ``window`` sampled rows, fits ``log10 ||dL/dx_t|| = a + b d``
(least squares) and fires when the fitted fall over the sequence reaches ``warn_decades``
and the fit explains the profile (R^2 >= ``min_r2``): an exponential decay, as Bengio et al.
(1994) and Pascanu et al. (2013) derive for products of Jacobians with norm below 1. It
reports the horizon: the distance at which the gradient has fallen by ``horizon_factor``.

Which loss the profile is of matters. For a classifier read at the last step it is the loss
itself. For a language model the loss has a term at every position, so ``||dL/dx_t||`` of the
whole loss is flat however short the memory (issue 12: a tanh RNN LM whose last position's
gradient falls ~5 decades within 50 steps). The gradient of a *late position's* loss is the
profile to judge; a trace gives it as the recurrent entry ``"<layer>:last_position"``
(:data:`LAST_POSITION_SUFFIX`), or marks its entry for ``<layer>`` as one with
``meta["recurrent_profiles"] = {"<layer>": "last_position"}``. When a layer has both, the
late-position profile is read; the evidence says which (``profile``: ``"last_position"`` or
``"whole_loss"``).
"""

from __future__ import annotations

import math

import numpy as np

from ...trace import Trace
from .._common import fl, hints, nanmedian, pow10, quiet_nan, safe_log10
from ..finding import Finding
from ..thresholds import ShortMemoryThresholds

RULE = "short_memory"

#: Suffix of the recurrent-table entry holding the gradient of a late position's loss.
LAST_POSITION_SUFFIX = ":last_position"


def profiles_to_judge(trace: Trace) -> list[tuple[str, str, str]]:
    """``(layer, recurrent-table key, profile kind)`` per recurrent layer, preferring the
    late-position profile when the trace has one."""
    kinds = trace.meta.get("recurrent_profiles")
    kinds = kinds if isinstance(kinds, dict) else {}
    chosen: dict[str, tuple[str, str]] = {}
    for key in trace.recurrent_layers:
        if key.endswith(LAST_POSITION_SUFFIX):
            chosen[key[: -len(LAST_POSITION_SUFFIX)]] = (key, "last_position")
        elif key not in chosen:
            kind = "last_position" if kinds.get(key) == "last_position" else "whole_loss"
            chosen[key] = (key, kind)
    return [(layer, key, kind) for layer, (key, kind) in chosen.items()]


def fit_decay(profile: np.ndarray) -> tuple[float, float, int] | None:
    """Least-squares ``(slope per step, R^2, points)`` of log10 norm vs distance to the loss.

    ``profile`` is indexed by input position t (t = T-1 nearest the loss). None when fewer
    than 2 finite points.
    """
    logv = safe_log10(profile)
    dist = (len(profile) - 1 - np.arange(len(profile))).astype(np.float64)
    ok = np.isfinite(logv)
    if ok.sum() < 2:
        return None
    x, y = dist[ok], logv[ok]
    xm, ym = x.mean(), y.mean()
    sxx = float(np.sum((x - xm) ** 2))
    if sxx == 0.0:
        return None
    slope = float(np.sum((x - xm) * (y - ym)) / sxx)
    resid = y - (ym + slope * (x - xm))
    syy = float(np.sum((y - ym) ** 2))
    r2 = 1.0 - float(np.sum(resid**2)) / syy if syy > 0 else 1.0
    return slope, r2, int(ok.sum())


def check(trace: Trace, th: ShortMemoryThresholds) -> Finding | None:
    """Return the short-memory finding of ``trace`` (its worst recurrent layer), or None."""
    best: tuple[float, str, dict[str, object], tuple[int, int], float] | None = None
    for name, key, kind in profiles_to_judge(trace):  # one pass per layer, never per step
        prof = trace.input_grad_profile(key)
        if prof.values.ndim != 2 or prof.values.shape[1] < th.min_length:
            continue
        rows = ~np.all(np.isnan(prof.values), axis=1)
        vals, steps = prof.values[rows], prof.steps[rows]
        if len(vals) == 0:
            continue
        tail = vals[-min(th.window, len(vals)) :]
        with quiet_nan():
            median = nanmedian(tail, axis=0)
        fit = fit_decay(median)
        if fit is None:
            continue
        slope, r2, points = fit
        length = prof.values.shape[1]
        fall = -slope * (length - 1)  # decades lost from the last input to the first
        if fall < th.warn_decades or r2 < th.min_r2:
            continue
        e_fold = 1.0 / (-slope * math.log(10.0))  # steps per factor e
        horizon = math.log10(th.horizon_factor) / -slope
        evidence: dict[str, object] = {
            "layer": name,
            "profile": kind,
            "sequence_length": length,
            "decay_decades_over_sequence": fl(fall),
            "decay_per_step": fl(pow10(slope)),
            "e_folding_steps": fl(e_fold),
            "horizon_steps": fl(horizon),
            "horizon_factor": th.horizon_factor,
            "fit_r2": fl(r2),
            "points": points,
            "warn_decades": th.warn_decades,
            "critical_decades": th.critical_decades,
        }
        span = (int(steps[-len(tail)]), int(steps[-1]))
        if best is None or fall > best[0]:
            best = (fall, name, evidence, span, slope)
    if best is None:
        return None
    fall, name, evidence, span, slope = best
    kind = next((la.type for la in trace.layers if la.name == name), "recurrent layer")
    horizon = math.log10(th.horizon_factor) / -slope
    pairs = []
    if kind not in ("LSTM", "GRU"):
        pairs += [
            ("lstm", "its additive cell state lets the gradient cross many steps undiminished"),
            ("gru", "gated updates do the same with fewer parameters"),
        ]
    pairs += [
        ("init_orthogonal", "orthogonal recurrent weights have gain 1 at every step"),
        ("init_identity", "an identity recurrent matrix (IRNN) starts with perfect memory"),
        ("clip_norm", "lets a larger recurrent gain train without exploding"),
    ]
    return Finding(
        rule=RULE,
        severity="critical" if fall >= th.critical_decades else "warning",
        layers=(name,),
        steps=span,
        evidence=evidence,
        message=(
            f"Short memory: in layer {name!r} ({kind}) the gradient reaching an input is "
            f"multiplied by {pow10(slope):.2g} per time step of distance from the loss (each step "
            f"multiplies it by the recurrent Jacobian), so inputs more than ~{horizon:.0f} steps "
            f"back get under 1/{th.horizon_factor:g} of the gradient and are effectively not "
            "learned from."
        ),
        remedies=hints(*pairs),
    )
