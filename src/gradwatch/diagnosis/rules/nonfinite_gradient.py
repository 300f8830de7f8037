"""``nonfinite_gradient``: NaN or Inf in the gradients.

A layer is bad at a step when its ``nonfinite`` count is > 0 (or, where no count was recorded,
its grad_norm is inf: with a count of 0 an inf norm is a float32 overflow of finite entries). The
finding gives the first bad step and, at that step, the bad layers in backward order: the
deepest first, since backward visits it first, so the NaN was born there or after it.
Where gradients were not recorded at every step (the overhead budget thins them, or
``every`` > 1) the first bad step recorded may come after the NaN arose and spread through
the weights: the finding then gives the steps it arose between, and says that the layer named
need not be its origin.
Steps the optimizer skipped (``skipped`` = 1, GradScaler's overflow handling) are reported as
``info``: mixed precision calibrating its scale, not a model failure, unless the skips
persist: a run longer than ``max_consecutive_skipped``, or more than
``max_skipped_fraction`` of the steps after the leading calibration run.
"""

from __future__ import annotations

import numpy as np

from ...trace import Trace
from .._common import fl, hints, metric_rows, scalar_rows
from ..finding import Finding, Severity
from ..thresholds import NonfiniteGradientThresholds

RULE = "nonfinite_gradient"


def _bad_matrix(trace: Trace) -> tuple[np.ndarray, np.ndarray]:
    """``(steps, bool matrix)``: where a layer's gradient held a NaN/Inf."""
    steps, counts = metric_rows(trace, "nonfinite")
    bad = np.nan_to_num(counts, nan=0.0) > 0
    if trace.has_metric("grad_norm") and len(trace.steps):
        # An infinite norm stands in for the count where the count was not recorded. Where it
        # was and is 0, every entry was finite and only the float32 sum of squares overflowed
        # (entries ~1e19 and up): an exploding gradient, not a NaN/Inf one (the real corpus'
        # no-norm ResNet: step 18 has max |g| 8.6e19, its first non-finite entry is at 19).
        inf_rows = np.isinf(trace.matrix("grad_norm"))
        if trace.has_metric("nonfinite"):
            inf_rows &= ~np.isfinite(trace.matrix("nonfinite"))
        if inf_rows.any():
            all_bad = np.zeros((len(trace.steps), len(trace.layers)), bool)
            pos = np.searchsorted(trace.steps, steps)
            all_bad[pos] = bad
            all_bad |= inf_rows
            keep = all_bad.any(axis=1)
            return trace.steps[keep], all_bad[keep]
    return steps, bad


def _recorded_before(trace: Trace, step: int) -> int | None:
    """The last step before ``step`` whose gradients were recorded (None: none was).

    A recorded step has a ``nonfinite`` count (or flag) or a ``grad_norm``: the norm alone
    would miss steps where it is NaN in every layer.
    """
    steps = np.union1d(metric_rows(trace, "nonfinite")[0], metric_rows(trace, "grad_norm")[0])
    earlier = steps[steps < step]
    return int(earlier[-1]) if len(earlier) else None


def _longest_run(flags: np.ndarray) -> int:
    """Length of the longest run of True (vectorised)."""
    if not flags.any():
        return 0
    padded = np.concatenate(([0], flags.astype(np.int8), [0]))
    edges = np.flatnonzero(np.diff(padded))
    return int((edges[1::2] - edges[::2]).max())


def _where_skipped(trace: Trace, step: int | None, layers: tuple[str, ...]) -> str:
    """ " The first, step 3, overflowed in 'L2 fc2' (backward order)."" or ""."""
    if step is None or not layers:
        return ""
    named = ", ".join(repr(trace.layer_label(name)) for name in layers[:3])
    more = f" and {len(layers) - 3} more" if len(layers) > 3 else ""
    return (
        f" The first, step {step}, had non-finite gradients in {named}{more} (backward "
        "order: the first is where the backward pass met the overflow)."
    )


def check(trace: Trace, th: NonfiniteGradientThresholds) -> Finding | None:
    """Return the non-finite-gradient finding of ``trace``, or None."""
    steps, bad = _bad_matrix(trace)
    bad_rows = bad.any(axis=1) if bad.size else np.zeros(len(steps), bool)
    s_steps, skipped = scalar_rows(trace, "skipped")
    skip_flags = skipped > 0.5
    skip_steps = s_steps[skip_flags]
    if not bad_rows.any() and not skip_flags.any():
        return None

    bad_steps = steps[bad_rows]
    # Bad steps the optimizer skipped are GradScaler's business; the others reached the weights.
    unskipped = bad_steps[~np.isin(bad_steps, skip_steps)]
    longest = _longest_run(skip_flags)
    frac = float(skip_flags.mean()) if len(skip_flags) else 0.0
    # GradScaler calibrates at the start: the leading run of skips (if not too long) is not
    # counted in the steady-state fraction.
    lead = int(np.argmin(skip_flags)) if not skip_flags.all() else len(skip_flags)
    after = skip_flags[lead:]
    steady_frac = float(after.mean()) if len(after) else 0.0
    persistent = longest > th.max_consecutive_skipped or steady_frac > th.max_skipped_fraction

    severity: Severity
    evidence: dict[str, object] = {
        "bad_steps": len(bad_steps),
        "skipped_steps": len(skip_steps),
        "skipped_fraction": fl(frac),
        "skipped_fraction_after_calibration": fl(steady_frac),
        "calibration_skips": lead,
        "longest_skipped_run": longest,
        "max_consecutive_skipped": th.max_consecutive_skipped,
        "max_skipped_fraction": th.max_skipped_fraction,
    }
    layers: tuple[str, ...] = ()
    first_step: int | None = None
    since: int | None = None  # the first step it may have arisen at
    origin_exact = True  # whether the step before first_step was recorded (finite)
    if bad_rows.any():
        # First bad step not skipped if there is one (the failure), else the first bad step.
        focus = unskipped if len(unskipped) else bad_steps
        first_step = int(focus[0])
        row = bad[int(np.searchsorted(steps, first_step))]
        # Backward order: deepest layer first.
        order = np.flatnonzero(row)[::-1]
        layers = tuple(trace.layers[i].name for i in order)
        evidence["first_bad_step"] = first_step
        before = _recorded_before(trace, first_step)
        since = before + 1 if before is not None else int(trace.steps[0])
        evidence["recorded_before"] = before
        # Whether the step before it was recorded finite: else the NaN may be older, and
        # spread through the weights, so the layers at first_step need not hold its origin.
        origin_exact = since >= first_step
        evidence["origin_exact"] = origin_exact
        evidence["first_layer_backward"] = layers[0] if layers else None
        evidence["bad_layers_at_first_step"] = list(layers[:20])
        if trace.has_metric("nonfinite"):
            counts = trace.matrix("nonfinite")[int(np.searchsorted(trace.steps, first_step))]
            evidence["nonfinite_counts_at_first_step"] = {
                trace.layers[i].name: fl(counts[i]) for i in order[:20]
            }
    all_steps = np.concatenate([bad_steps, skip_steps])
    span = (int(all_steps.min()), int(all_steps.max()))

    if len(unskipped) and not origin_exact:
        assert since is not None and first_step is not None
        where = f"in layer {trace.layer_label(layers[0])!r}" if layers else "in some layer"
        gap = f"between step {since - 1} and" if since > int(trace.steps[0]) else "before"
        msg = (
            f"Non-finite gradient: a NaN/Inf reached the weights at step {first_step}, the "
            f"first step recorded with one; gradients were not recorded {gap} step "
            f"{first_step} (the overhead budget thins them, or `every` > 1), so it may have "
            f"arisen at any of steps {since}-{first_step}. At step {first_step} the backward "
            f"pass met it first {where}; if it arose earlier it has spread through the weights "
            "since, so that layer need not be where it began. Record every step "
            "(`overhead=None`, `every=1`) to find where it began."
        )
        severity = "critical"
    elif len(unskipped):
        where = f"in layer {trace.layer_label(layers[0])!r}" if layers else ""
        msg = (
            f"Non-finite gradient: a NaN/Inf first reached the weights at step {first_step} "
            f"{where}, the first layer the backward pass visits that holds one, so it arose in "
            "that layer or in what comes after it (its output, the loss); once in the weights, "
            "NaN spreads to every later step."
        )
        severity = "critical"
    elif persistent:
        msg = (
            f"Non-finite gradient: the optimizer skipped {len(skip_steps)} steps "
            f"({frac:.0%}, up to {longest} in a row) for overflowing gradients, more than "
            "mixed-precision scaling needs to calibrate, so the model is not training on them."
            + _where_skipped(trace, first_step, layers)
        )
        severity = "warning"
    else:
        msg = (
            f"Skipped steps: the gradient scaler skipped {len(skip_steps)} step(s) with "
            "overflowing fp16 gradients; this is how mixed precision calibrates its scale, "
            "not a model failure." + _where_skipped(trace, first_step, layers)
        )
        severity = "info"
    return Finding(
        rule=RULE,
        severity=severity,
        layers=layers,
        steps=span,
        evidence=evidence,
        message=msg,
        remedies=hints(
            ("clip_norm", "caps the gradient before an overflow reaches the weights"),
            ("layernorm", "keeps activations in range so products do not overflow"),
            ("clip_value", "caps each gradient entry; a crude guard against overflow"),
        ),
    )
