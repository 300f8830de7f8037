"""``unstable_updates``: update ratios far from the ~1e-3 of healthy training.

The update ratio ``||theta_after - theta_before|| / ||theta_before||`` is the real step the
optimizer took (Adam included). Per layer, its median over consecutive blocks of ``window``
sampled rows (so one odd step is not enough); a block median above ``warn_ratio`` (100x
CS231n's ~1e-3 rule of thumb) is a *high* ratio. Whether a high ratio is a problem is the
loss's answer, not the ratio's (issue 12: PyTorch's LSTM language-model recipe thrives at
0.22; a tanh RNN diverging under the same recipe shows 0.28):

* **productive** (no finding): by the end of the high-ratio span (for a span inside the first
  ``early_rows`` logged steps, by their end: the loss needs steps to answer) the loss's
  window median is ``min_progress`` below its start, no window gave back more than
  ``max_relapse`` of the progress made before it, no logged loss in the first
  ``early_rows`` reached ``loss_spike_factor`` times the start, and nothing went
  non-finite. Where the user clips (a ``clip_coef`` scalar below 1 in the span, or
  ``meta["clipping"]``), each step is bounded by the clip, so only the progress, the spike
  and the finiteness are asked for;
* **overshooting** (warning): anything else, or no logged loss to judge by;
* above ``critical_ratio`` (SageMaker Debugger's large_threshold, 10) it is critical, whatever
  the loss does.

The first ``early_rows`` steps are read row by row (blow-ups happen between sampled steps):
one sampled row above ``warn_ratio`` there counts when the loss spiked, and one above
``erase_ratio`` (a step larger than the weights themselves: the initialisation is gone)
counts whatever the loss did next (and puts ``lower_lr`` before a warm-up: such steps come
back at the same peak rate). Separately, a last block below SageMaker's small_threshold
(1e-8: the layer no longer moves) is a warning that says what stopped it: a learning rate
the schedule took under ``decayed_rate_share`` of its peak, half-precision weights whose
steps round away (every trainable parameter bfloat16 or float16), else a gradient lost on
the way (the structural remedies). Not where the model has finished over that whole block
(every loss window at most ``finished_loss_fraction`` of the start): there is no error left
to learn from, so weights that stop are not a finding.

A layer that starts from (near) zero (LayerScale, ReZero, LoRA's B) has no scale of its own:
its ratio is taken over the norm it grows into, and one within ``zero_walk_factor / sqrt(k)``
after k steps (a random walk's growth) is growth, not overshoot.
"""

from __future__ import annotations

import numpy as np

from ...trace import Trace
from .._common import (
    block_medians,
    by_layer,
    fl,
    hints,
    metric_rows,
    nanmedian,
    quiet_nan,
    scalar_rows,
    start_only,
    window_medians,
)
from .._loop import clipping_active
from .._loss import LossResponse, learning_rows, loss_response, no_loss_reference
from .._trend import mann_kendall_z
from ..finding import Finding, RemedyHint, Severity
from ..no_gradient import unused_finding, unused_own, without_gradient
from ..rates import WARM_START_SHARE, learning_rate_at, started_cold
from ..thresholds import UnstableUpdatesThresholds

RULE = "unstable_updates"


def _overshoots(resp: LossResponse, th: UnstableUpdatesThresholds, clipped: bool) -> list[str]:
    """The ways the loss failed to thrive (empty when the high ratio is productive)."""
    why = []
    if resp.nonfinite:
        why.append("the loss or the gradient went non-finite")
    if resp.spike >= th.loss_spike_factor:
        why.append(f"the loss jumped to {resp.spike:.2g}x its start at step {resp.spike_step}")
    if resp.progress < th.min_progress:
        why.append(
            f"the loss went from {resp.start:.3g} to {resp.end:.3g} "
            f"({-resp.progress:+.0%} of its start)"
        )
    if not clipped and resp.relapse > th.max_relapse and resp.relapse_unearned:
        # Nothing was gained before that window ("gave back 53x the progress made before
        # step 0" divided by the floor, not by any progress): say how high it rose instead.
        why.append(
            f"the loss rose before it had fallen {th.min_progress:.0%} (its median over steps "
            f"{resp.relapse_step}-{resp.relapse_until} {resp.relapse_level:.2g}x its start)"
        )
    elif not clipped and resp.relapse > th.max_relapse:
        why.append(
            f"the loss gave back {resp.relapse:.2g}x the progress made before step "
            f"{resp.relapse_step}"
        )
    return why


def check(trace: Trace, th: UnstableUpdatesThresholds) -> Finding | None:
    """Return the unstable-updates finding of ``trace``, or None."""
    steps, ur = metric_rows(trace, "update_ratio")
    if len(steps) == 0 or ur.shape[1] == 0:
        return None
    ur, from_zero = _rebased_from_zero(trace, steps, ur, th)
    blocks, starts = block_medians(ur, th.window)  # (B, L)
    with quiet_nan():
        med = np.nanmax(blocks, axis=0)  # worst sustained ratio of each layer
    last = blocks[-1]
    hot_rows = np.flatnonzero((blocks > th.warn_ratio).any(axis=1))
    high = np.flatnonzero(np.isfinite(med) & (med > th.warn_ratio))
    low = np.flatnonzero(np.isfinite(last) & (last < th.small_ratio))
    unused = unused_own(trace, low)
    low = np.setdiff1d(low, unused)
    if len(low) and _finished(trace, steps[starts[-1] :], th):
        low = low[:0]  # no error left to learn from: stopped because it learned
    if len(low):
        low = _not_annealed(trace, low, last, (int(steps[starts[-1]]), int(steps[-1])), th)
    span: tuple[int, int] | None = None
    if len(hot_rows):
        b1 = int(hot_rows[-1])
        end_row = int(starts[b1 + 1]) - 1 if b1 + 1 < len(starts) else len(steps) - 1
        span = (int(steps[starts[int(hot_rows[0])]]), int(steps[end_row]))

    # --- the first steps, read row by row: blow-ups happen between sampled steps.
    # A sampled row above warn_ratio counts when the loss spiked; one above erase_ratio
    # (the step outweighs the weights themselves) counts whatever the loss did.
    early_end = _early_step(trace, th.early_rows)  # the step after the first early_rows
    early_rows = np.flatnonzero(steps < early_end)
    erased = np.zeros(0, np.int64)
    if len(early_rows):
        with quiet_nan():
            early_max = np.nanmax(ur[early_rows], axis=0)
        finite = np.isfinite(early_max)
        early_high = np.flatnonzero(finite & (early_max > th.warn_ratio))
        erased = np.flatnonzero(finite & (early_max > th.erase_ratio))
        spiked = False
        if len(early_high) > len(erased):
            early_resp = loss_response(
                trace, int(steps[early_rows[-1]]), th.loss_window, th.min_progress, th.early_rows
            )
            spiked = early_resp is not None and early_resp.spike >= th.loss_spike_factor
        counted = early_high if spiked else erased
        if len(counted):
            med = med.copy()
            med[counted] = np.fmax(med[counted], early_max[counted])
            high = np.union1d(high, counted)
            first = int(steps[early_rows[0]])
            span = (first, span[1] if span else int(steps[early_rows[-1]]))

    evidence: dict[str, object] = {
        "metric": "update_ratio",
        "warn_ratio": th.warn_ratio,
        "critical_ratio": th.critical_ratio,
        "small_ratio": th.small_ratio,
        "window_rows": th.window,
    }
    if from_zero:
        # Said so, in case one of these is what fires: ratios over the grown scale.
        evidence["grown_from_zero"] = from_zero
        evidence["zero_init_rms"] = th.zero_init_rms
    message = ""
    clipped = False
    worst = float("nan")
    if len(high):
        assert span is not None
        high = high[np.argsort(-med[high], kind="stable")]
        worst = float(med[high[0]])
        clipped = clipping_active(trace, *span)
        # The loss answers a step only in the steps after it: a span inside the dense start
        # is judged at the start's end, not within the loss window it began in (HF GPT-2
        # under the Trainer's defaults, AdamW 1e-3 without warm-up: 0.1x at steps 0-2 and
        # 5.06 -> 4.8 in that window, -21% by step 19, 2.6 at step 200).
        judged_at = max(span[1], early_end - 1)
        resp = loss_response(trace, judged_at, th.loss_window, th.min_progress, th.early_rows)
        why = _overshoots(resp, th, clipped) if resp is not None else []
        # (_overshoots gives one reason per failed test: the progress's alone is one.)
        slow_only = resp is not None and resp.progress < th.min_progress and len(why) == 1
        if (
            slow_only
            and not len(erased)
            and span[1] < early_end
            and _falls_steadily(trace, span[1], th)
        ):
            # Only the progress failed, for ratios confined to the first steps, and the loss
            # falls steadily after them: an adaptive optimizer's first steps on small weights
            # (Adam moves each weight by ~lr at first), with a loss slow for another reason,
            # which loss_plateau tells. HF GPT-2 (12 layers) with its embeddings (tied to the
            # output) frozen: 0.17x at steps 0-2, -2% by step 19, then a steady fall (z -5.7);
            # a tenth of the rate trains it slower, three times the rate faster.
            why = []
        if len(erased):
            order = erased[np.argsort(-med[erased], kind="stable")]
            why.insert(
                0,
                f"{len(erased)} layer(s) moved by more than their own norm in one step at the "
                "start, which erases what the initialisation built",
            )
            evidence["erased_at_start"] = by_layer(
                [trace.layers[i].name for i in order], med[order]
            )
            evidence["erase_ratio"] = th.erase_ratio
        if worst <= th.critical_ratio and resp is not None and not why:
            high = high[:0]  # the loss thrives on these steps: productive, not unstable
        else:
            names_hi = [trace.layers[i].name for i in high]
            evidence["high_update_ratio"] = by_layer(names_hi, med[high])
            evidence["blocks_over_warn_ratio"] = len(hot_rows)
            evidence["clipping"] = clipped
            if resp is not None:
                evidence["loss_response"] = _response_evidence(resp, th)
            judged = "; ".join(why) if why else (no_loss_reference(trace) if resp is None else "")
            sustained = bool(np.isfinite(blocks[:, high[0]]).any()) and bool(
                np.nanmax(blocks[:, high[0]]) > th.warn_ratio
            )
            lead = "each step changes" if sustained else "in the first steps, one step changed"
            message = (
                f"Unstable updates: {lead} the weights of layer "
                f"{trace.layer_label(names_hi[0])!r} by "
                f"{worst:.2g}x their norm (healthy training is near 0.001)"
                + (" with clipping on" if clipped else "")
                + (f", and {judged}" if judged else "")
                + ", so the learning rate is too high for this layer and the steps overshoot."
            )
            transient, seen = start_only(span, steps, int(trace.steps[-1]))
            if seen is not None:
                message += transient
                evidence["start_only"] = seen
            said, rate = _rate_at(trace, span[0], at_start=seen is not None)
            if rate:
                message += said
                evidence["learning_rate"] = rate
    if len(unused):
        evidence["unused_own_parameters"] = {
            trace.layers[i].name: sorted(trace.layers[i].shapes) for i in unused
        }
    if len(high) == 0 and len(low) == 0:
        return unused_finding(trace, unused, evidence) if len(unused) else None
    names_lo = [trace.layers[i].name for i in low]
    severity: Severity
    if len(high):
        severity = "critical" if worst > th.critical_ratio else "warning"
        # The message's own cause: steps too large for the rate. Steps larger than the
        # weights are not a start-up transient a warm-up trims: at the same peak they come
        # back (HF GPT-2 at AdamW 0.1 stays at the unigram loss after 20- and 60-step
        # warm-ups, HF ViT at 0.1 after 100; a tenth of the rate trains both:
        # diagnosis/large_steps.py), so there the lower rate comes before a warm-up.
        lower = (
            "lower_lr",
            "steps larger than the weights come back at the same peak rate: a lower rate "
            "removes them"
            if len(erased)
            else "a lower learning rate takes smaller steps: the update ratio falls with it",
        )
        pairs = [lower] if len(erased) else []
        rate_seen = evidence.get("learning_rate")
        if isinstance(rate_seen, dict) and rate_seen.get("warm_up") is False:
            # confined to a start that ran at the peak rate: the fix the message names
            pairs.append(
                (
                    "lr_warmup",
                    "raises the rate over the first steps, so they stay small while the "
                    "weights and the optimizer's statistics settle",
                )
            )
        # Confined to a start that ran at its peak rate (and no step outweighed the
        # weights), the warm-up above keeps the rest of the run's rate.
        if not len(erased):
            pairs.append(lower)
        if not clipped:
            pairs.append(("clip_norm", "bounds the step size whatever the gradient"))
        pairs += [
            ("clip_adaptive", "clips each update relative to its parameter's norm"),
            ("layernorm", "makes each layer less sensitive to the size of its weights' steps"),
        ]
        remedies = hints(*pairs)
        names = [trace.layers[i].name for i in high] + names_lo
    else:
        evidence["low_update_ratio"] = by_layer(names_lo, last[low])
        severity = "warning"
        span = (int(steps[starts[-1]]), int(steps[-1]))
        message, remedies = _stalled(trace, names_lo, span, th, evidence)
        names = names_lo
    if len(low) and len(high):
        evidence["low_update_ratio"] = by_layer(names_lo, last[low])
    return Finding(
        rule=RULE,
        severity=severity,
        layers=tuple(names),
        steps=span,
        evidence=evidence,
        message=message,
        remedies=remedies,
    )


def _finished(trace: Trace, rows: np.ndarray, th: UnstableUpdatesThresholds) -> bool:
    """Whether every one of the sampled ``rows`` (steps) lies where the model has finished:
    loss windows at most ``finished_loss_fraction`` of the start (:func:`learning_rows`)."""
    learning, _ = learning_rows(trace, rows, th.loss_window, th.finished_loss_fraction)
    return not learning.any()


def _falls_steadily(trace: Trace, after: int, th: UnstableUpdatesThresholds) -> bool:
    """Whether the window medians of the losses logged after step ``after`` (3 windows or
    more) fall steadily: a Mann-Kendall z-score at or below ``-falling_z``."""
    steps, loss = scalar_rows(trace, "loss")
    meds, _ = window_medians(loss[steps > after], th.loss_window)
    return len(meds) >= 3 and mann_kendall_z(meds) <= -th.falling_z


def _stalled(
    trace: Trace,
    names: list[str],
    span: tuple[int, int],
    th: UnstableUpdatesThresholds,
    evidence: dict[str, object],
) -> tuple[str, tuple[RemedyHint, ...]]:
    """(message, remedies) of layers whose weights no longer move, the first named, with the
    cause the trace shows (written into ``evidence["stalled_by"]``): no gradient at all, a
    learning rate decayed to nothing, steps rounded away by half-precision weights, or (none
    seen) a gradient lost on the way."""
    head = (
        f"Unstable updates: the weights of layer {trace.layer_label(names[0])!r} change by "
        f"less than {th.small_ratio:g} of their norm per step"
    )
    since = without_gradient(trace, names, span)
    if since is not None:
        # Not a gradient lost on the way: none was made. No structural remedy reaches a
        # layer the loss does not depend on.
        evidence["stalled_by"] = "no_gradient"
        evidence["no_gradient_since"] = since
        it, its = ("they", "their") if len(names) > 1 else ("it", "its")
        others = f" (and {len(names) - 1} more layer(s))" if len(names) > 1 else ""
        when = "at any recorded step" if since == int(trace.steps[0]) else f"from step {since}"
        return (
            f"{head}{others}: {it} received no gradient {when} ({its} .grad stayed None), so "
            f"the loss does not depend on {'them' if len(names) > 1 else 'it'}. A `.detach()` "
            "or `torch.no_grad()` in the forward, or a branch whose output the loss never "
            "uses, cuts a layer off the graph, and nothing trains it; freeze it "
            "(`requires_grad_(False)`) if that is meant.",
            (),
        )
    decayed = _decayed_rate(trace, span, th)
    if decayed is not None:
        # The schedule, not the gradient: a structural remedy would not move the weights.
        at, peak, fell = decayed
        evidence["stalled_by"] = "learning_rate"
        evidence["learning_rate"] = {"value": fl(at), "peak": fl(peak), "below_share_from": fell}
        evidence["decayed_rate_share"] = th.decayed_rate_share
        return (
            f"{head}, because the learning rate fell to {at:.2g} ({at / peak:.1g} of its peak "
            f"{peak:.2g}; under {th.decayed_rate_share:g} of it from step {fell}): the "
            "schedule stopped training with steps left. A scheduler sized in epochs but "
            "stepped every batch decays this fast: step it once per epoch, or size it in "
            "steps.",
            (),
        )
    dtype = half_precision_weights(trace)
    if dtype is not None:
        bits = SIGNIFICANT_BITS[dtype]
        evidence["stalled_by"] = "precision"
        evidence["weights_dtype"] = dtype
        lr = learning_rate_at(trace, np.array([span[1]]))
        rate = "" if lr is None else f" (at a learning rate of {float(lr[0]):.2g})"
        return (
            f"{head}: the model's weights are {dtype}, which keeps {bits} significant bits, "
            f"so a step smaller than about 1/{2**bits} of a weight rounds to no change at "
            f"all, and this layer's steps{rate} are that small. Keep the weights and the "
            f"optimizer in float32 and run the forward under torch.autocast(dtype="
            f"torch.{dtype}) (mixed precision).",
            (),
        )
    evidence["stalled_by"] = "gradient"
    # Updates too small to train: clipping would shrink them further; the layer needs a
    # gradient (it usually sits below a vanishing one).
    return (
        f"{head}, so that layer is no longer training.",
        hints(
            ("residual", "an identity path delivers the loss gradient to the stalled layer"),
            ("batchnorm", "re-scales each layer so its gradient is not lost on the way"),
            ("init_he", "a variance-preserving initialisation keeps the per-layer gain near 1"),
        ),
    )


def _decayed_rate(
    trace: Trace, span: tuple[int, int], th: UnstableUpdatesThresholds
) -> tuple[float, float, int] | None:
    """(median rate over ``span``, peak rate, first step of the run's last stretch at or under
    ``decayed_rate_share`` of the peak) when the schedule stopped training with steps left:
    the rate over ``span`` that low, and that stretch at least ``stopped_rate_stretch`` of the
    run's steps. None otherwise (a decay to zero that ends the run), or without a rate."""
    lr = learning_rate_at(trace, trace.steps)
    if lr is None:
        return None
    peak, at = float(np.max(lr)), _median_rate(trace, lr, span)
    if at > th.decayed_rate_share * peak:
        return None
    above = np.flatnonzero(lr > th.decayed_rate_share * peak)  # (the peak's step at least)
    fell = int(trace.steps[min(int(above[-1]) + 1, len(lr) - 1)])
    first, end = int(trace.steps[0]), int(trace.steps[-1])
    if end - fell + 1 < th.stopped_rate_stretch * (end - first + 1):
        return None
    return at, peak, fell


def _not_annealed(
    trace: Trace,
    low: np.ndarray,
    last: np.ndarray,
    span: tuple[int, int],
    th: UnstableUpdatesThresholds,
) -> np.ndarray:
    """Of the ``low`` layers (``last``: their last block's ratios, over ``span``), those the
    learning rate's fall does not explain.

    A step is proportional to the rate (SGD's ``lr * g``, Adam's ~``lr`` a weight), so at the
    run's peak rate a layer's ratio would be ``ratio * peak / rate``. Where the schedule
    stopped training with steps left (:func:`_decayed_rate`) every low layer is kept: that is
    the finding. Elsewhere only those under ``small_ratio`` even at the peak: a decay to zero
    that ends the run (linear, cosine) leaves its last steps near zero by design.
    """
    lr = learning_rate_at(trace, trace.steps)
    if lr is None or _decayed_rate(trace, span, th) is not None:
        return low
    share = _median_rate(trace, lr, span) / float(np.max(lr))
    return low[last[low] < th.small_ratio * share]  # (none at a rate of 0: it moves nothing)


def _median_rate(trace: Trace, lr: np.ndarray, span: tuple[int, int]) -> float:
    """The median of the rates ``lr`` (at ``trace.steps``) over ``span``; the last one when
    no recorded step lies in it."""
    inside = (trace.steps >= span[0]) & (trace.steps <= span[1])
    return float(np.median(lr[inside])) if inside.any() else float(lr[-1])


#: Significant bits (the stored mantissa and the implicit leading one) of the half-precision
#: dtypes: a weight moves only by a step over about ``2**-bits`` of itself (half its spacing).
SIGNIFICANT_BITS = {"bfloat16": 8, "float16": 11}


def half_precision_weights(trace: Trace) -> str | None:
    """``"bfloat16"`` or ``"float16"`` when every trainable parameter of the recorded model
    has that dtype (``meta["model"]["param_dtypes"]``, written by the watch); else None
    (float32 weights, mixed dtypes, or a trace that predates the record)."""
    model = trace.meta.get("model")
    counts = model.get("param_dtypes") if isinstance(model, dict) else None
    if not isinstance(counts, dict) or len(counts) != 1:
        return None
    (dtype,) = counts
    return dtype if dtype in SIGNIFICANT_BITS else None


def _rebased_from_zero(
    trace: Trace, steps: np.ndarray, ur: np.ndarray, th: UnstableUpdatesThresholds
) -> tuple[np.ndarray, dict[str, float | None]]:
    """The update ratios, those of layers that start from (near) zero taken over the scale
    they grow into; and {layer: first weight RMS} of those layers.

    ``ratio * ||theta_before||`` is the step's size, so the ratio over another norm ``n`` is
    ``ratio * ||theta_before|| / n``; ``n`` is the larger of ``||theta_before||`` and the
    layer's median norm over the last third of the sampled rows.

    Such a layer's norm is the sum of its own steps: k steps in no steady direction (noisy
    gradients) add up to ~sqrt(k) steps, so each step is ~1/sqrt(k) of the norm whatever
    the rate (Adam moves every weight by ~lr: a higher rate makes both larger). A ratio
    within ``zero_walk_factor / sqrt(k)`` says how far the layer has come, not that it
    overshoots, and is read as at most ``warn_ratio``; steps that overshoot and undo each
    other leave the norm behind the walk and stay above it.
    """
    w_steps, wn = metric_rows(trace, "weight_norm")
    if len(w_steps) == 0:
        return ur, {}
    sizes = np.array([max(layer.num_params, 1) for layer in trace.layers], dtype=np.float64)
    # Each layer's first measured weight norm (NaN for a layer never measured).
    first_row = np.argmax(np.isfinite(wn), axis=0)
    first = wn[first_row, np.arange(wn.shape[1])]
    with quiet_nan():
        tiny = np.flatnonzero(first / np.sqrt(sizes) < th.zero_init_rms)
    if len(tiny) == 0:
        return ur, {}
    at = np.searchsorted(w_steps, steps)
    known = (at < len(w_steps)) & (w_steps[np.minimum(at, len(w_steps) - 1)] == steps)
    before = np.full_like(ur, np.nan)
    before[known] = wn[at[known]]
    # Steps each layer has taken since its first (near-zero) weights, before each row's.
    taken = (steps[:, None] - w_steps[first_row[tiny]][None, :]).astype(np.float64)
    with quiet_nan(), np.errstate(divide="ignore"):
        grown = nanmedian(wn[-max(len(wn) // 3, 1) :, tiny], axis=0)  # (T,)
        scale = np.fmax(before[:, tiny], grown)
        out = ur.copy()
        out[:, tiny] = ur[:, tiny] * before[:, tiny] / scale
        walk = np.where(taken >= 1, th.zero_walk_factor / np.sqrt(taken), 0.0)
        out[:, tiny] = np.where(
            ur[:, tiny] <= walk, np.fmin(out[:, tiny], th.warn_ratio), out[:, tiny]
        )
    return out, by_layer([trace.layers[i].name for i in tiny], (first / np.sqrt(sizes))[tiny])


def _rate_at(trace: Trace, step: int, *, at_start: bool) -> tuple[str, dict[str, object]]:
    """(sentence, evidence) on the learning rate at ``step`` where the trace has one.

    For instability confined to the start under a rate already at its peak there, the
    sentence names a warm-up (the rate raised over the first steps); a run that warmed up,
    or instability that lasts, is told the rate (and its share of the peak, if below it).
    """
    lr = learning_rate_at(trace, trace.steps)
    if lr is None:
        return "", {}
    peak, first = float(np.max(lr)), int(trace.steps[0])
    at = float(lr[int(np.searchsorted(trace.steps, step))])
    cold = at_start and bool(started_cold(trace))  # no warm-up before the unstable steps
    evidence: dict[str, object] = {"at_step": step, "value": fl(at), "peak": fl(peak)}
    if cold:
        evidence["warm_up"] = False
        return (
            f" The learning rate was {at:.2g} from step {first}, its peak from the start: a "
            "warm-up (the rate raised over the first steps) keeps the first steps small.",
            evidence,
        )
    share = f" ({at / peak:.0%} of its peak)" if at < WARM_START_SHARE * peak else ""
    return f" The learning rate was {at:.2g} at step {step}{share}.", evidence


def _early_step(trace: Trace, early_rows: int) -> int:
    """The step after the first ``early_rows`` logged losses (or training steps)."""
    steps, _ = scalar_rows(trace, "loss")
    if len(steps) >= early_rows:
        return int(steps[early_rows - 1]) + 1
    return int(steps[-1]) + 1 if len(steps) else early_rows


def _response_evidence(resp: LossResponse, th: UnstableUpdatesThresholds) -> dict[str, object]:
    return {
        "start": fl(resp.start),
        "end": fl(resp.end),
        "progress": fl(resp.progress),
        "min_progress": th.min_progress,
        "max_relapse_seen": fl(resp.relapse),
        "max_relapse": th.max_relapse,
        "relapse_unearned": resp.relapse_unearned,
        "early_spike_over_start": fl(resp.spike),
        "loss_spike_factor": th.loss_spike_factor,
        "nonfinite": resp.nonfinite,
    }
