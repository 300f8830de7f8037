"""``short_memory``: a recurrent net's gradient forgets distant inputs.

The recorder measures ``||dL/dx_t||`` for every input position t of a recurrent layer. With a
loss on the last output, the distance to the loss is ``d = T - 1 - t``. The rule takes the
median profile over the last ``window`` sampled rows, fits ``log10 ||dL/dx_t|| = a + b d``
(least squares) and fires when the fitted fall over the sequence reaches ``warn_decades``
and the fit explains the profile (R^2 >= ``min_r2``): an exponential decay, as Bengio et al.
(1994) and Pascanu et al. (2013) derive for products of Jacobians with norm below 1. It
reports the horizon: the distance at which the gradient has fallen by ``horizon_factor``.

A loss with a term at every position (a language model) makes that whole-loss profile flat:
every input has a loss term next to it. The recorder also keeps the *last-position* profile,
``||d loss_T / dx_t||`` (the part of the loss at the last time step). When the whole profile
does not fire and a last-position profile exists, the same fit is made on it over the first
``lookback`` steps back, and the fall over ``lookback`` steps is compared with
``lookback_warn_decades`` / ``lookback_critical_decades``: higher bars, since a next-token loss
draws most of its gradient from near context even in gated cells.
"""

from __future__ import annotations

import math

import numpy as np

from ...trace import ProfileKind, Trace
from .._common import fl, hints, nanmedian, pow10, quiet_nan, safe_log10
from ..finding import Finding
from ..thresholds import ShortMemoryThresholds

RULE = "short_memory"


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


# (critical, decades fallen, layer, evidence, steps spanned, fitted log10 slope per step)
_Best = tuple[bool, float, str, dict[str, object], tuple[int, int], float]


def _median_profile(
    trace: Trace, name: str, kind: ProfileKind, th: ShortMemoryThresholds
) -> tuple[np.ndarray, tuple[int, int]] | None:
    """Median profile of the last ``window`` measured rows, and the steps it spans."""
    prof = trace.input_grad_profile(name, kind)
    if prof.values.ndim != 2 or prof.values.shape[1] < th.min_length:
        return None
    rows = ~np.all(np.isnan(prof.values), axis=1)
    # The recorder's dense start samples each of the first `dense_steps` steps; keep only the
    # `sample_every` spacing there, so the window is not filled with the untrained start.
    every = max(int(trace.config.get("sample_every", 1) or 1), 1)
    dense = int(trace.config.get("dense_steps", 0) or 0)
    rows &= (prof.steps >= dense) | (prof.steps % every == 0)
    vals, steps = prof.values[rows], prof.steps[rows]
    if len(vals) == 0:
        return None
    tail = vals[-min(th.window, len(vals)) :]
    with quiet_nan():
        median = nanmedian(tail, axis=0)
    return median, (int(steps[-len(tail)]), int(steps[-1]))


def _whole(trace: Trace, name: str, th: ShortMemoryThresholds) -> _Best | None:
    """The whole-loss profile's verdict: fall over the sequence vs warn_decades."""
    found = _median_profile(trace, name, "whole", th)
    if found is None:
        return None
    median, span = found
    fit = fit_decay(median)
    if fit is None:
        return None
    slope, r2, points = fit
    length = len(median)
    fall = -slope * (length - 1)  # decades lost from the last input to the first
    if fall < th.warn_decades or r2 < th.min_r2:
        return None
    evidence: dict[str, object] = {
        "layer": name,
        "profile": "whole",
        "sequence_length": length,
        "decay_decades_over_sequence": fl(fall),
        **_rates(slope, th),
        "fit_r2": fl(r2),
        "points": points,
        "warn_decades": th.warn_decades,
        "critical_decades": th.critical_decades,
    }
    return fall >= th.critical_decades, fall, name, evidence, span, slope


def _last_position(trace: Trace, name: str, th: ShortMemoryThresholds) -> _Best | None:
    """The last-position profile's verdict: fall over ``lookback`` steps back."""
    found = _median_profile(trace, name, "last_position", th)
    if found is None:
        return None
    median, span = found
    near = median[-min(len(median), th.lookback + 1) :]  # distances 0..lookback
    fit = fit_decay(near)
    if fit is None:
        return None
    slope, r2, points = fit
    fall = -slope * th.lookback  # a shorter sequence's fitted rate, extrapolated
    if fall < th.lookback_warn_decades or r2 < th.min_r2:
        return None
    with quiet_nan():
        floor = safe_log10(near[:1] / near[-1:])[0]
    evidence: dict[str, object] = {
        "layer": name,
        "profile": "last_position",
        "sequence_length": len(median),
        "lookback_steps": th.lookback,
        "decay_decades_over_lookback": fl(fall),
        # Measured, not fitted: NaN when the gradient underflowed to 0 that far back.
        "measured_decades_at_lookback": fl(-floor),
        **_rates(slope, th),
        "fit_r2": fl(r2),
        "points": points,
        "warn_decades": th.lookback_warn_decades,
        "critical_decades": th.lookback_critical_decades,
    }
    return fall >= th.lookback_critical_decades, fall, name, evidence, span, slope


def _rates(slope: float, th: ShortMemoryThresholds) -> dict[str, object]:
    return {
        "decay_per_step": fl(pow10(slope)),
        "e_folding_steps": fl(1.0 / (-slope * math.log(10.0))),  # steps per factor e
        "horizon_steps": fl(math.log10(th.horizon_factor) / -slope),
        "horizon_factor": th.horizon_factor,
    }


def check(trace: Trace, th: ShortMemoryThresholds) -> Finding | None:
    """Return the short-memory finding of ``trace`` (its worst recurrent layer), or None.

    Per layer the whole-loss profile is judged first (unchanged for a loss on the last
    output); when it does not fire, the last-position profile, if recorded, is.
    """
    best: _Best | None = None
    for name in trace.recurrent_layers:  # one pass per recurrent layer, never per step
        kinds = trace.profile_kinds(name)
        verdict = _whole(trace, name, th) if "whole" in kinds else None
        if verdict is None and "last_position" in kinds:
            verdict = _last_position(trace, name, th)
        # Rank: critical before warning, then the larger fall.
        if verdict is not None and (best is None or verdict[:2] > best[:2]):
            best = verdict
    if best is None:
        return None
    critical, _, name, evidence, span, slope = best
    kind = next((la.type for la in trace.layers if la.name == name), "recurrent layer")
    horizon = math.log10(th.horizon_factor) / -slope
    whose = (
        "of the last position's loss" if evidence["profile"] == "last_position" else "of the loss"
    )
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
        severity="critical" if critical else "warning",
        layers=(name,),
        steps=span,
        evidence=evidence,
        message=(
            f"Short memory: in layer {name!r} ({kind}) the gradient {whose} reaching an input is "
            f"multiplied by {pow10(slope):.2g} per time step of distance from the loss (each step "
            f"multiplies it by the recurrent Jacobian), so inputs more than ~{horizon:.0f} steps "
            f"back get under 1/{th.horizon_factor:g} of the gradient and are effectively not "
            "learned from."
        ),
        remedies=hints(*pairs),
    )
