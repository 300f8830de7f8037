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
does not fire and a last-position profile reaching at least ``lookback`` steps back exists,
the rule judges how fast it keeps falling *beyond* the near context: the fit runs from
``near_steps`` back to the start of the window, and its rate per ``lookback`` steps is
compared with ``far_warn_decades`` / ``far_critical_decades``. The near context is left out
because a next-token loss draws most of its gradient from the last few inputs in any cell
(measured: LSTM and GRU byte LMs lose 10-12 decades per 50 steps there, as fast as a tanh
RNN); what tells them apart is the shape: a trained gated cell's decay flattens past it
(2.3-4.1 decades per 50 steps), a tanh RNN's goes on in a straight line to float32 underflow
(7.2 and more).

A decay is not an alarm where the loss says the inputs within reach sufficed (info, no
remedy): the loss ended ``solved_progress`` below its start, or it improved under a
whole-loss decay gentler than ``far_warn_decades`` per ``lookback`` steps (a trained gated
cell weighting recent inputs more while it learns). A loss that stays up keeps the alarm: a
gated cell failing the adding problem forgets at 0.65 a step and plateaus at the trivial
error.
"""

from __future__ import annotations

import math

import numpy as np

from ...trace import ProfileKind, Trace
from .._common import fl, hints, nanmedian, pow10, quiet_nan, safe_log10
from .._outcome import loss_outcome
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
    """The last-position profile's verdict: its decay rate beyond the near context."""
    found = _median_profile(trace, name, "last_position", th)
    if found is None:
        return None
    median, span = found
    length = len(median)
    if length - 1 < th.lookback:
        return None  # the window does not reach past the near context far enough to judge
    # Distances near_steps..T-1 (position t is T-1-t back). When all of them underflowed to
    # exactly 0, the gradient died inside the near context: fit what is left (all of it near).
    fit_from = min(th.near_steps, length - 2)
    fit = fit_decay(median[: length - fit_from])
    if fit is None:
        fit_from = 0
        fit = fit_decay(median)
    if fit is None:
        return None
    slope, r2, points = fit
    fall = -slope * th.lookback  # the fitted rate, per lookback steps
    if fall < th.far_warn_decades or r2 < th.min_r2:
        return None
    with quiet_nan():
        at_lookback = safe_log10(median[-1:] / median[-1 - th.lookback : -th.lookback])[0]
        over_window = safe_log10(median[-1:] / median[:1])[0]
    evidence: dict[str, object] = {
        "layer": name,
        "profile": "last_position",
        "sequence_length": length,
        "lookback_steps": th.lookback,
        "fit_from_steps_back": fit_from,
        "far_decay_decades_per_lookback": fl(fall),
        # Measured, not fitted: NaN (JSON null) when the gradient underflowed to 0 that far.
        "measured_decades_at_lookback": fl(at_lookback),
        "measured_decades_over_window": fl(over_window),
        **_rates(slope, th),
        "fit_r2": fl(r2),
        "points": points,
        "warn_decades": th.far_warn_decades,
        "critical_decades": th.far_critical_decades,
    }
    return fall >= th.far_critical_decades, fall, name, evidence, span, slope


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
    output); when it does not fire, the last-position profile, if recorded and long enough,
    is.
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
    last = evidence["profile"] == "last_position"
    whose = "of the last position's loss" if last else "of the loss"
    beyond = f" (beyond the nearest {evidence['fit_from_steps_back']} inputs)" if last else ""
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
    message = (
        f"Short memory: in layer "
        f"{trace.layer_label(name)!r} ({kind}) the gradient {whose} reaching an input is "
        f"multiplied by {pow10(slope):.2g} per time step of distance from the loss{beyond}: "
        f"each step multiplies it by the recurrent Jacobian, so inputs more than "
        f"~{horizon:.0f} steps "
        f"back get under 1/{th.horizon_factor:g} of the gradient and are effectively not "
        "learned from."
    )
    outcome = loss_outcome(trace, th.loss_window, th.min_progress, th.max_relapse)
    if _within_reach(outcome, slope, last, th):
        evidence.update(outcome)
        # Not an alarm: what it trained on was learned from the inputs within reach.
        return Finding(
            rule=RULE,
            severity="info",
            layers=(name,),
            steps=span,
            evidence=evidence,
            message=(
                f"{message} Yet the loss went {outcome['loss_start']:.3g} -> "
                f"{outcome['loss_end']:.3g}: what it trained on was within that reach. If "
                "what it must learn lies further back (a validation loss that stays high "
                "while this one falls), this is why."
            ),
        )
    return Finding(
        rule=RULE,
        severity="critical" if critical else "warning",
        layers=(name,),
        steps=span,
        evidence=evidence,
        message=message,
        remedies=hints(*pairs),
    )


def _within_reach(
    outcome: dict[str, object], slope: float, last: bool, th: ShortMemoryThresholds
) -> bool:
    """Whether the loss says the inputs within reach sufficed: it ended ``solved_progress``
    below its start, or it improved under a whole-loss decay gentler than the far warning's
    rate (a next-token loss's last-position profile has its own rates: an LM's loss falls
    with the near context alone)."""
    if outcome.get("loss_improving") is not True:
        return False
    progress = outcome.get("loss_progress")
    if isinstance(progress, float) and progress >= th.solved_progress:
        return True
    return not last and -slope * th.lookback < th.far_warn_decades
