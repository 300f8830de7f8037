"""``exploding_gradient``: the gradient grows along depth, or over steps.

Three kinds of evidence, any of which fires the rule:

* depth: the first layers' grad_rms exceeds the last layers' by ``warn_decades`` in a
  window's median (the vanishing contrast, reversed);
* spikes: a step whose global gradient norm is ``spike_ratio`` times the median of the
  ``trailing`` rows before it *and* a modified z-score (median/MAD, Iglewicz & Hoaglin) above
  ``spike_z`` there, at a step where the model still learns (``finished_loss_fraction``);
  spikes in consecutive rows are one episode, and fewer than ``min_spikes`` episodes that
  the loss felt (it rose ``loss_spike_factor`` times over its level in the ``window`` logged
  losses after them, or reached that multiple of its start; every episode counts where no
  loss was logged), none ``critical_spike_ratio`` high, are only ``info``: hard batches do
  that in healthy runs;
* growth: window medians of the global norm rise ``growth_decades`` above their minimum,
  rising through each of the last ``rising_windows`` windows (exponential growth).

The global norm is the ``global_grad_norm`` scalar, or sqrt(sum grad_norm^2) over layers.

Blow-ups in the first steps happen before a trailing window exists: among the first
``trailing`` rows, a global norm ``spike_ratio`` over the median of the rows before it is an
early spike, a warning when a logged loss in those steps also reaches ``loss_spike_factor``
times its start (otherwise counted like the other spikes). The depth evidence and the spikes
are judged while the model learns, as in ``vanishing_gradient`` (``finished_loss_fraction``).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ...trace import Trace
from .._common import (
    core_layers,
    depth_span,
    dominant_activation,
    fl,
    hints,
    metric_rows,
    nanmedian,
    pow10,
    quiet_nan,
    safe_log10,
    scalar_rows,
    start_only,
    take_cols,
    window_medians,
)
from .._loop import clipping_active, loop_record
from .._loss import learning_rows, loss_curve, loss_response
from ..finding import Finding, Severity
from ..thresholds import ExplodingGradientThresholds

RULE = "exploding_gradient"
#: Weight layers with a recorded backward signal needed to read its depth trend.
MIN_BACKWARD_LAYERS = 3
_MAD_TO_SIGMA = 0.6745  # Iglewicz & Hoaglin's modified z-score constant (Phi^-1(0.75)).


def global_norm(trace: Trace) -> tuple[np.ndarray, np.ndarray]:
    """``(steps, norm)`` of the global gradient norm, recorded or rebuilt from layer norms."""
    steps, vals = scalar_rows(trace, "global_grad_norm")
    if len(steps):
        return steps, vals
    steps, gn = metric_rows(trace, "grad_norm")
    if len(steps) == 0:
        return steps, np.zeros(0)
    with quiet_nan():
        # Layers missing at a step contribute nothing; an all-missing row was already dropped.
        return steps, np.sqrt(np.nansum(np.square(gn), axis=1))


def never_zeroed(trace: Trace, th: ExplodingGradientThresholds) -> Finding | None:
    """The finding of a loop that never zeroes its gradients, from what the watch
    saw of them (``meta["config"]["grad_zeroing"]``, recording/zeroing.py); None otherwise.

    Each step's gradient is then added to the sum of every step's before it, so the gradient
    the optimizer steps on grows with the step count whatever the model: under SGD its steps
    grow with it, under Adam they follow ever staler directions. Critical; a warning where
    the user's clipping acted (``clip_coef`` below 1), which bounds the steps.
    """
    seen = loop_record(trace, "grad_zeroing", "checked", "kept", "first_kept")
    if seen is None:
        return None
    checked, kept, first = seen
    if kept < th.min_unzeroed_steps or kept < th.unzeroed_share * checked:
        return None
    last = int(trace.steps[-1]) if len(trace.steps) else first
    # The user's clipping bounds the steps (clip 1.0, 200 steps, one thread: an HF ResNet
    # still learned, to 0.17 against 0.034 zeroed; GPT-2 to 2.55 against 2.41): the loop is
    # as wrong, the run less broken.
    clipped = clipping_active(trace, first, last)
    bounded = (
        " Clipping bounds the size of each step, not its direction: the sum of every "
        "gradient so far, ever staler."
        if clipped
        else ""
    )
    return Finding(
        rule=RULE,
        severity="warning" if clipped else "critical",
        layers=(),
        steps=(first, max(first, last)),
        evidence={
            "never_zeroed": {"pairs_compared": checked, "pairs_not_zeroed": kept},
            "first_not_zeroed_step": first,
            "clipped": clipped,
            "unzeroed_share": th.unzeroed_share,
            "min_unzeroed_steps": th.min_unzeroed_steps,
        },
        message=(
            f"Exploding gradient: the gradients are never zeroed between optimizer steps: in "
            f"{kept} of {checked} pairs of consecutive steps compared (from step {first}) the "
            "optimizer got the same .grad tensors as at the step before, only added into "
            "since, so each step's gradient is the sum of every step's so far and grows with "
            f"the step count.{bounded} Call optimizer.zero_grad() (or model.zero_grad()) once "
            "per optimizer step, before the backward pass."
        ),
        # No remedy of the catalogue: the fix is one line of the training loop.
        remedies=(),
    )


def backward_growth(trace: Trace, cols: np.ndarray, steps: np.ndarray, window: int) -> float | None:
    """The largest window median of the backward signal's first-over-last depth trend, in
    decades; None where it was not recorded for ``MIN_BACKWARD_LAYERS`` weight layers.

    The backward signal per element is ``out_grad_norm / sqrt(out_numel)``: the gradient
    reaching each layer's output, the quantity the chain rule multiplies layer by layer.
    A parameter's gradient also sums over every position its weight is shared across, so
    a convolution early in a network that downsamples gets a larger one than a late layer
    at the same backward signal (a healthy MobileNetV2 or ResNet-50 on 32 x 32 images:
    2.5 decades of grad_rms, 1.3-1.5 of backward signal). Only sampled rows within ``steps``.
    """
    if not trace.has_metric("out_grad_norm") or len(cols) == 0:
        return None
    numel = np.array([trace.layers[c].out_numel or np.nan for c in cols], dtype=np.float64)
    if np.isfinite(numel).sum() < MIN_BACKWARD_LAYERS:
        return None
    og_steps, og = metric_rows(trace, "out_grad_norm")
    keep = np.isin(og_steps, steps)
    if not keep.any():
        return None
    with quiet_nan():
        per_element = take_cols(og[keep], cols) / np.sqrt(numel)
        c = -depth_span(safe_log10(per_element))
        meds, _ = window_medians(c, window)
    return float(np.nanmax(meds)) if np.isfinite(meds).any() else None


def check(trace: Trace, th: ExplodingGradientThresholds) -> Finding | None:
    """Return the exploding-gradient finding of ``trace``, or None."""
    never = never_zeroed(trace, th)
    if never is not None:
        return never  # the cause is known and is the loop's: the evidence below follows it
    evidence: dict[str, object] = {}
    isolated = False
    layers: list[str] = []
    spans: list[int] = []
    severe = False
    kinds: list[str] = []

    # --- depth: first layers larger than the last.
    steps, grad = metric_rows(trace, "grad_rms")
    cols = core_layers(trace)
    # Judged while the model learns (as vanishing_gradient): a confident model's gradients
    # are all small, and their ratio along depth says nothing about a blow-up.
    learning, _ = learning_rows(trace, steps, th.window, th.finished_loss_fraction)
    steps, grad = steps[learning], grad[learning]
    if len(steps) and len(cols) >= th.min_layers:
        c = -depth_span(safe_log10(take_cols(grad, cols)))  # first over last
        meds, starts = window_medians(c, th.window)
        over = bool(np.isfinite(meds).any() and np.nanmax(meds) >= th.warn_decades)
        backward = backward_growth(trace, cols, steps, th.window) if over else None
        if backward is not None and backward < th.warn_decades:
            # The parameter gradients grow toward the input but the backward signal does
            # not: a weight shared over more positions (early, larger maps) sums more of it.
            evidence["depth_not_backward"] = {
                "grad_rms_first_over_last_decades": fl(np.nanmax(meds)),
                "backward_signal_first_over_last_decades": fl(backward),
            }
        elif over:
            worst = float(np.nanmax(meds))
            hit = np.flatnonzero(meds >= th.warn_decades)
            spans += [
                int(steps[starts[hit[0]]]),
                int(steps[min(len(steps) - 1, starts[hit[-1]] + th.window - 1)]),
            ]
            evidence["depth"] = {
                "first_over_last_decades": fl(worst),
                "first_over_last_factor": fl(pow10(worst)),
                "warn_decades": th.warn_decades,
                "windows_over_threshold": len(hit),
                "backward_signal_first_over_last_decades": fl(backward),
            }
            severe |= worst >= th.critical_decades
            layers.append(trace.layers[int(cols[0])].name)
            kinds.append(
                f"the gradient grows {pow10(worst):.2g}x from the last layers back to the first"
            )

    # --- over steps: spikes and exponential growth of the global norm.
    g_steps, norm = global_norm(trace)
    logn = safe_log10(norm)
    got_later = _later_spikes(trace, th, g_steps, logn)
    if got_later is not None:
        spikes, what, (first_spike, last_spike) = got_later
        evidence["spikes"] = spikes
        spans += [first_spike, last_spike]
        culprit = spikes.get("layer_at_first_spike")
        if isinstance(culprit, str):
            layers.append(culprit)
        ratio = spikes["max_ratio_to_trailing_median"]
        critical = isinstance(ratio, float) and ratio >= th.critical_spike_ratio
        severe |= critical
        # One episode is common in healthy runs (a hard batch), and so are episodes the loss
        # did not feel; repeated felt ones are not that.
        felt = spikes.get("felt_by_loss", spikes["episodes"])
        assert isinstance(felt, int)
        isolated = felt < th.min_spikes and not critical
        kinds.append(what)
    got = _early_spikes(trace, th, g_steps, logn)
    if got is not None:
        early, what = got
        evidence["early_spikes"] = early
        kinds.append(what)
        steps_hit = early["steps"]
        assert isinstance(steps_hit, list)
        spans += [steps_hit[0], steps_hit[-1]]
        early_culprit = early.get("layer_at_first_spike")
        if isinstance(early_culprit, str) and early_culprit not in layers:
            layers.append(early_culprit)
        ratio = early["max_ratio_to_earlier_median"]
        severe |= isinstance(ratio, float) and ratio >= th.critical_spike_ratio
        # An early jump the loss did not feel is one hard batch; with a loss spike it is a
        # blow-up, whatever the later spikes say.
        isolated = (isolated or "spikes" not in evidence) and not early["loss_spiked"]
    meds, starts = window_medians(logn, th.window)
    ok = np.isfinite(meds)
    if ok.sum() > th.rising_windows:
        m = meds[ok]
        tail = m[-(th.rising_windows + 1) :]
        rising = bool(np.all(np.diff(tail) > 0))
        growth = float(m[-1] - np.min(m[:-1]))
        if rising and growth >= th.growth_decades:
            evidence["growth"] = {
                "decades": fl(growth),
                "factor": fl(pow10(growth)),
                "growth_decades": th.growth_decades,
                "last_window_median": fl(pow10(m[-1])),
            }
            s_ok = starts[ok]
            spans += [int(g_steps[s_ok[int(np.argmin(m[:-1]))]]), int(g_steps[-1])]
            severe |= growth >= 2 * th.growth_decades
            kinds.append(
                f"the global gradient norm has grown {pow10(growth):.2g}x and is still rising"
            )

    if not kinds:
        return None
    act = dominant_activation(trace, cols)
    cause = "; ".join(kinds)
    if "depth" in evidence:
        why = (
            "each layer's backward pass multiplies the gradient by its weights, so weights "
            "with a gain above 1 compound over depth"
        )
    else:
        why = "updates that are too large push the weights where the gradient grows further"
    pairs = [
        ("clip_norm", "caps the global gradient norm, so one bad step cannot blow up the weights"),
    ]
    if "depth" in evidence:
        pairs += [
            (
                "init_xavier" if act in ("tanh", "sigmoid") else "init_he",
                "a variance-preserving initialisation starts each layer's gain at 1, not above",
            ),
            ("init_orthogonal", "orthogonal weights have every singular value 1: no growth"),
            ("layernorm", "normalisation resets the scale at every layer"),
        ]
    else:
        pairs += [
            ("lower_lr", "smaller updates do not push the weights where the gradient grows"),
            ("clip_adaptive", "clips relative to each parameter's norm, adapting as it trains"),
            ("layernorm", "normalisation keeps activations, and so gradients, in range"),
        ]
    pairs.append(("clip_value", "a cruder cap on each gradient entry"))
    # "depth_not_backward" records a depth test that did not fire: it leaves spikes alone.
    only_spikes = set(evidence) <= {"spikes", "early_spikes", "depth_not_backward"}
    severity: Severity = "critical" if severe else "warning"
    if only_spikes and isolated:
        severity = "info"
    evidence["metric"] = "grad_rms / global_grad_norm"
    span = (min(spans), max(spans)) if spans else None
    transient, seen = start_only(span, metric_rows(trace, "grad_rms")[0], int(trace.steps[-1]))
    if seen is not None:
        evidence["start_only"] = seen
    return Finding(
        rule=RULE,
        severity=severity,
        layers=tuple(layers),
        steps=span,
        evidence=evidence,
        message=f"Exploding gradient: {cause}; {why}.{transient}",
        remedies=hints(*pairs),
    )


def _later_spikes(
    trace: Trace, th: ExplodingGradientThresholds, g_steps: np.ndarray, logn: np.ndarray
) -> tuple[dict[str, object], str, tuple[int, int]] | None:
    """Spikes over the trailing median (rows past the first ``trailing``): evidence, a
    clause for the message and the first and last spike's steps, or None.

    A row spikes when its global norm is ``spike_ratio`` over the median of the ``trailing``
    rows before it with a modified z-score over ``spike_z``, at a step where the model still
    learns. Spikes in consecutive rows are one episode; where a loss was logged, an episode
    is ``felt_by_loss`` when the loss rose or blew up with it (:func:`_felt`).
    """
    n = len(logn)
    if n <= th.trailing:
        return None
    win = sliding_window_view(logn[:-1], th.trailing)  # row i: rows i .. i+trailing-1
    cur = logn[th.trailing :]
    with quiet_nan():
        med = nanmedian(win, axis=1)
        mad = nanmedian(np.abs(win - med[:, None]), axis=1)
        z = _MAD_TO_SIGMA * (cur - med) / np.maximum(mad, 1e-12)
    excess = cur - med  # decades above the trailing median
    # Judged while the model learns: a finished model's gradient comes from its few
    # remaining errors, so one batch holding one is many times the median of batches
    # that hold none (HF ResNet on digits, SGD 0.1: loss 0.004, jumps of 28x).
    learning, _ = learning_rows(trace, g_steps, th.window, th.finished_loss_fraction)
    spike = (
        np.isfinite(z)
        & (z > th.spike_z)
        & (excess >= np.log10(th.spike_ratio))
        & learning[th.trailing :]
    )
    if not spike.any():
        return None
    idx = np.flatnonzero(spike)
    biggest = float(np.nanmax(excess[idx]))
    sp = g_steps[th.trailing :][idx]
    # Spikes in consecutive rows are one episode: the optimizer's momentum carries one bad
    # batch's push over the next steps (HF RoBERTa, AdamW 1e-3: 17x, 19x, 13x at steps
    # 22-24, then normal; the loss back under its level within 10 steps).
    breaks = np.flatnonzero(np.diff(idx) > 1)
    episodes = [
        (int(sp[a]), int(sp[b]))
        for a, b in zip(np.r_[0, breaks + 1], np.r_[breaks, len(idx) - 1], strict=True)
    ]
    spikes: dict[str, object] = {
        "count": len(idx),
        "episodes": len(episodes),
        "steps": [int(s) for s in sp[:20]],
        "max_ratio_to_trailing_median": fl(pow10(biggest)),
        "spike_ratio": th.spike_ratio,
        "spike_z": th.spike_z,
        "min_spikes": th.min_spikes,
        "trailing_rows": th.trailing,
    }
    felt = _felt(trace, episodes, th.window, th.loss_spike_factor)
    if felt is not None:
        spikes["felt_by_loss"] = felt
        spikes["loss_spike_factor"] = th.loss_spike_factor
    culprit = _spike_layer(trace, int(sp[0]), th.trailing)
    if culprit is not None:
        spikes["layer_at_first_spike"] = culprit
    said = _count_spikes(len(idx), len(episodes))
    if felt is not None:
        said += f", {felt} felt by the loss"
    what = (
        f"the global gradient norm jumps up to {pow10(biggest):.2g}x above its recent median "
        f"({said})"
    )
    return spikes, what, (int(sp[0]), int(sp[-1]))


def _felt(trace: Trace, episodes: list[tuple[int, int]], window: int, factor: float) -> int | None:
    """How many spike ``episodes`` (first and last step) the loss felt; None without a loss.

    Felt: the median of the ``window`` logged losses after the episode is at least ``factor``
    times the median of the ``window`` before it, and above every one of those (a level the
    batch-to-batch spread before it never reached); or a loss in the episode or those after it
    reaches ``factor`` times the starting loss (worse than the untrained model: the step
    wrecked it, as in HF ResNet-50 on small images, which starts at 2.99 and reached 28.7 at
    step 80, within 10 steps of a spike at 74); or one of them is not finite. An episode
    with no logged loss on either side counts as felt (nothing says otherwise). A hard batch
    raises the loss at its own step only, under the start: HF ALBERT, AdamW 1e-3, spikes
    of 18x, 82x and 31x over 60 steps, the loss after them 0.82x, 0.98x and 2.1x its level
    before, at its worst 0.66 against a start of 0.68; the model learned, 0.68 -> 0.12.
    A nearly trained classifier's batches are either all right or hold a mistake, so its loss
    swings between levels (HF RoBERTa with dropout, warm-up, cosine decay and clipping at 1.0:
    0.018 or 0.15 from batch to batch near step 170, the gradient norm 0.2 or 20): a window
    median doubles when a few more hard batches fall in it, which the window's own spread
    shows; three such spikes were "felt", a warning on a model that learned 0.69 -> 0.07.
    """
    curve = loss_curve(trace, window)
    if curve is None:
        return None
    steps, values = curve.steps, curve.values
    raw_steps, raw = trace.scalar_steps, trace.scalar("loss")
    felt = 0
    for first, last in episodes:
        before = values[steps < first][-window:]
        later = steps > last
        after_steps, after = steps[later][:window], values[later][:window]
        # Every logged value from the episode's first step to the end of the window after
        # it, an infinite one (a blow-up) included.
        upto = int(after_steps[-1]) if len(after_steps) else last
        span = raw[(raw_steps >= first) & (raw_steps <= upto)]
        if len(before) == 0 or len(after) == 0 or np.isinf(span).any():
            felt += 1
            continue
        with quiet_nan():
            level = np.nanmedian(after)
            rose = level >= factor * np.nanmedian(before) and level > np.nanmax(before)
            wrecked = np.nanmax(span) >= factor * curve.start
        felt += bool(rose or wrecked)
    return felt


def _count_spikes(count: int, episodes: int) -> str:
    """ "1 spike", "3 spikes" or "4 spikes in 2 episodes"."""
    said = f"{count} spike{'s' if count > 1 else ''}"
    return said if episodes == count else f"{said} in {episodes} episode{'s' * (episodes > 1)}"


def _early_spikes(
    trace: Trace, th: ExplodingGradientThresholds, g_steps: np.ndarray, logn: np.ndarray
) -> tuple[dict[str, object], str] | None:
    """Spikes among the first ``trailing`` rows, where the trailing test has no median yet.

    Row i (i >= 1) spikes when the global norm is ``spike_ratio`` over the median of rows
    0..i-1. Returns the evidence (with ``loss_spiked``: a logged loss in those steps reached
    ``loss_spike_factor`` times its start) and a clause for the message, or None.
    """
    head = logn[: min(len(logn), th.trailing)]
    if len(head) < 2:
        return None
    with quiet_nan():
        # Median of the rows before each row: a small loop over at most `trailing` rows.
        before = np.array([np.nanmedian(head[:i]) for i in range(1, len(head))])
    excess = head[1:] - before
    hit = np.flatnonzero(np.isfinite(excess) & (excess >= np.log10(th.spike_ratio)))
    if len(hit) == 0:
        return None
    sp = g_steps[1:][hit]
    biggest = float(np.nanmax(excess[hit]))
    last_step = int(g_steps[len(head) - 1])
    resp = loss_response(trace, last_step, th.window, 0.0, th.trailing)
    loss_spiked = resp is not None and resp.spike >= th.loss_spike_factor
    early: dict[str, object] = {
        "count": len(hit),
        "steps": [int(s) for s in sp],
        "max_ratio_to_earlier_median": fl(pow10(biggest)),
        "spike_ratio": th.spike_ratio,
        "loss_spiked": loss_spiked,
        "loss_spike_factor": th.loss_spike_factor,
    }
    if resp is not None:
        early["loss_start"] = fl(resp.start)
        early["max_early_loss_over_start"] = fl(resp.spike)
        early["max_early_loss_step"] = resp.spike_step
    culprit = _spike_layer(trace, int(sp[0]), th.trailing)
    if culprit is not None:
        early["layer_at_first_spike"] = culprit
    what = (
        f"in the first steps the global gradient norm jumps {pow10(biggest):.2g}x above its "
        "earlier median"
    )
    if loss_spiked and resp is not None:
        what += f" and the loss reaches {resp.spike:.2g}x its start (step {resp.spike_step})"
    return early, what


def _spike_layer(trace: Trace, step: int, trailing: int) -> str | None:
    """The layer whose grad_norm jumped most (vs its trailing median) at ``step``."""
    if not trace.has_metric("grad_norm") or step not in trace.steps:
        return None
    row = int(np.searchsorted(trace.steps, step))
    if row == 0:
        return None
    gn = trace.matrix("grad_norm")
    base = nanmedian(gn[max(0, row - trailing) : row], axis=0)
    with quiet_nan():
        jump = safe_log10(gn[row]) - safe_log10(base)
    if not np.isfinite(jump).any():
        return None
    return trace.layers[int(np.nanargmax(jump))].name
