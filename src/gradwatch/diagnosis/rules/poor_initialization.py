"""``poor_initialization``: the starting weights scale the signal away from unit variance.

Reads only the first ``first_rows`` measured rows of each metric (the start of training) and
fires on any of three kinds of evidence:

* activations: a hidden layer's activation output std is ``std_decades`` from 1, or the
  fitted trend of that variance along depth spans more than ``max_variance_ratio``
  (SageMaker Debugger's PoorWeightInitialization compares max and min variance with 10);
* backward gain: the geometric-mean per-layer gain of ``||dL/dh||`` per unit (RMS), from the
  last hidden layer to the first, is farther than ``gain_factor`` from 1, or compounds through
  those layers past ``compound_decades``;
* norm gains (first measured row only): the RMS gain of each norm layer on the main path
  (:func:`~.._common.norm_gains`) ``weight_scale_factor`` or more from its identity, 1,
  names those norms as culprits of a measured collapse (HF EfficientNet's N(0, 0.02));
* weight scale (first measured row only): a layer's parameter scale
  (``weight_norm / sqrt(numel(weight))``; the norm includes the bias, so a large bias shows
  too) compared with what the activation after it needs, ``gain / sqrt(fan_in)``
  (``gradwatch._activations.INIT_GAINS``, the table the remedies initialise with: 1 for
  sigmoid, linear and SELU, 5/3 for tanh, sqrt(2) for ReLU; He et al. 2015, Glorot &
  Bengio 2010, Klambauer et al. 2017); layers off by ``weight_scale_factor`` compounding past
  ``compound_decades`` name the culprits.

The measured signal decides (issue 12: PyTorch's default initialisation, 0.41x the He scale,
compounded over a 12-block residual MLP to 2.3e-5 "as if in series", and warned on a 3-layer
ReLU MLP that trains normally): the weight scales add to a finding whose activations or
backward gain collapse or explode, are dropped when a measured profile (``act_std`` or
``out_grad_norm`` over at least ``min_layers`` hidden layers) keeps its scale, and alone,
with no profile recorded, they are only ``info``.
"""

from __future__ import annotations

import math

import numpy as np

from ..._activations import init_gain
from ...trace import LayerInfo, Trace
from .._common import (
    by_layer,
    core_layers,
    fl,
    hints,
    metric_rows,
    nanmedian,
    norm_gains,
    pow10,
    quiet_nan,
    safe_log10,
)
from .._loss import loss_curve
from .._outcome import loss_outcome
from ..finding import Finding
from ..input_scale import HOW_TO_STANDARDISE, input_rms
from ..thresholds import PoorInitializationThresholds
from ..trained_start import HOT_RECOVERED, HOT_START, hot_start

RULE = "poor_initialization"


def _first_profile(
    measured: tuple[np.ndarray, np.ndarray], cols: np.ndarray, rows: int, seen: list[int]
) -> np.ndarray | None:
    """Per-layer median of log10 of a metric (its ``measured`` steps and rows, as
    :func:`~.._common.metric_rows` gives them) over its first ``rows`` measured rows.

    Appends the steps read to ``seen`` (the finding's step span).
    """
    steps, mat = measured
    if len(steps) == 0:
        return None
    seen += [int(s) for s in steps[:rows]]
    with quiet_nan():
        return nanmedian(safe_log10(mat[:rows, cols]), axis=0)


def _renormalised(trace: Trace, col: int, gains: dict[int, float], factor: float) -> bool:
    """Whether the next layer of the forward pass after column ``col`` is a normalisation
    that starts near its identity (gain RMS within ``factor`` of 1; torch's norms start at
    1): the layer's output, through its activation, is normalised to unit scale before it
    goes on. A norm that starts far from 1 (HF EfficientNet's N(0, 0.02) gains) passes its
    own scale on, which the layers after it show."""
    if col + 1 >= len(trace.layers) or trace.layers[col + 1].role != "norm":
        return False
    gain = gains.get(col + 1)
    return gain is None or (gain > 0 and abs(math.log10(gain)) < math.log10(factor))


def _needed_std(layer: LayerInfo) -> tuple[float, int] | None:
    """(std the following activation needs, number of weight entries), when known."""
    shape = layer.shapes.get("weight")
    # The one gain table, shared with the remedies' inits (gradwatch._activations).
    gain = init_gain(layer.activation) if layer.activation else None
    if layer.recurrent or not shape or len(shape) < 2 or gain is None:
        return None
    fan_in, numel = int(np.prod(shape[1:])), int(np.prod(shape))
    if fan_in <= 0 or numel <= 0:
        return None
    return gain / math.sqrt(fan_in), numel


def _input_scale(
    layer: LayerInfo, std: np.ndarray, wn: np.ndarray, col: int
) -> tuple[float, float, float] | None:
    """(input RMS it implies, output std, output std a unit-variance input would give) of
    the first layer (column ``col``), a Linear or convolution, at the first step, from the
    measured rows of ``act_std`` and ``weight_norm``; None when unknown.

    Its output std at step 0 over what its starting weights give a unit-variance input
    (weight std times sqrt(fan_in)) is the RMS of what it was fed: the model's own inputs. An
    underestimate after a ReLU (which drops the negative half), never an overestimate.
    """
    shape = layer.shapes.get("weight")
    if layer.type not in _FED_BY_INPUTS or not shape or len(shape) < 2:
        return None
    if len(std) == 0 or len(wn) == 0:
        return None
    out, norm = float(std[0, col]), float(wn[0, col])
    # (An output with no spread at step 0 says nothing of its inputs' scale.)
    if not (np.isfinite(out) and np.isfinite(norm)) or out <= 0 or norm <= 0 or shape[0] <= 0:
        return None
    # weight std * sqrt(fan_in) = (norm / sqrt(out * fan_in)) * sqrt(fan_in) = norm / sqrt(out)
    unit = norm / math.sqrt(shape[0])
    return out / unit, out, unit


#: Layer types whose input at depth 0 is the model's own input (an embedding's is an index).
_FED_BY_INPUTS = ("Linear", "Conv1d", "Conv2d", "Conv3d")


def check(trace: Trace, th: PoorInitializationThresholds) -> Finding | None:
    """Return the poor-initialisation finding of ``trace``, or None."""
    cols = core_layers(trace)
    if len(cols) == 0:
        return None
    names = [trace.layers[i].name for i in cols]
    evidence: dict[str, object] = {}
    culprits: list[str] = []
    causes: list[str] = []

    # --- forward: activation std far from 1, or drifting along depth.
    # Only hidden layers followed by a known activation are held to unit variance: logits and
    # recurrent states (an LSTM's h starts near 0) have no such target.
    # Layers inside a residual branch (LayerInfo.branch) are left out too: a branch's output
    # is added to the main path, not passed on in series, and real residual nets (GPT-2, ViT)
    # start their branches small on purpose.
    # So are layers whose activation feeds a normalisation (a head's dense -> GELU ->
    # LayerNorm): the norm resets the forward scale and divides the backward gradient by it,
    # so their starting scale cancels out (HF ModernBERT's head starts at std 0.037 and
    # trains).
    gains = norm_gains(trace)
    renormed = np.array(
        [_renormalised(trace, int(i), gains, th.weight_scale_factor) for i in cols], dtype=bool
    )
    hidden = ~renormed & np.array(
        [
            bool(trace.layers[i].activation)
            and not trace.layers[i].recurrent
            and trace.layers[i].branch is None
            for i in cols
        ],
        dtype=bool,
    )
    seen: list[int] = []
    # Whether a measured profile (forward or backward) covered enough hidden layers to say
    # the signal keeps its scale through depth.
    measured = False
    act = metric_rows(trace, "act_std")
    w_steps, wn = metric_rows(trace, "weight_norm")  # (the weight scales' too, below)
    log_std = _first_profile(act, cols, th.first_rows, seen)
    if log_std is not None:
        ok = np.flatnonzero(np.isfinite(log_std) & hidden)
        measured |= len(ok) >= max(2, th.min_layers)
        far = ok[np.abs(log_std[ok]) >= th.std_decades]
        drift = float("nan")
        if len(ok) >= max(2, th.min_layers):
            slope = np.polyfit(ok.astype(float), log_std[ok], 1)[0]
            drift = 2.0 * abs(slope) * (ok[-1] - ok[0])  # decades of variance over depth
        drifting = np.isfinite(drift) and drift >= math.log10(th.max_variance_ratio)
        if len(far) or drifting:
            evidence["activation_std"] = {names[i]: fl(pow10(log_std[i])) for i in ok[:20]}
            evidence["variance_trend_ratio"] = fl(pow10(drift)) if np.isfinite(drift) else None
            evidence["max_variance_ratio"] = th.max_variance_ratio
            evidence["std_decades"] = th.std_decades
            culprits += [names[i] for i in far[np.argsort(-np.abs(log_std[far]))]]
            if drifting:
                causes.append(
                    f"the activation variance drifts {pow10(drift):.2g}x along depth at the start"
                )
            if len(far):
                causes.append(
                    f"{len(far)} layer(s) start with an output std {pow10(log_std[far[0]]):.2g}, "
                    "far from 1"
                )
            # The first layer far from 1 from the start, its weights not the reason: the
            # inputs are (features in raw units, pixels in 0-255). Only too large: a
            # saturating activation bounds the output, which reads as inputs too small.
            col0 = int(cols[0])
            fed = (
                _input_scale(trace.layers[col0], act[1], wn, col0)
                if len(far) and far.min() == 0
                else None
            )
            if fed is not None and math.log10(fed[0]) >= th.std_decades:
                evidence["input_rms_at_least"] = fl(fed[0])
                culprits = [names[0], *(c for c in culprits if c != names[0])]
                # The RMS the watch read off the inputs themselves where it did (inputs.py).
                rms = input_rms(trace)
                how = f"{rms:.3g}" if rms is not None else f"about {fed[0]:.2g}"
                causes.insert(
                    0,
                    f"the first layer {trace.layer_label(names[0])!r} is fed inputs of RMS {how} "
                    f"(its output std {fed[1]:.2g} at step 0, where its weights give "
                    f"{fed[2]:.2g} from unit-variance inputs): the inputs are not standardised",
                )

    # --- backward: per-unit gradient gain per layer, last layer to first.
    log_ogn = _first_profile(metric_rows(trace, "out_grad_norm"), cols, th.first_rows, seen)
    if log_ogn is not None:
        widths = np.array([_out_width(trace.layers[i]) for i in cols], dtype=np.float64)
        if not np.isfinite(widths).any():
            widths = np.ones_like(widths)  # shapes unknown: compare norms as they are
        per_unit = log_ogn - 0.5 * safe_log10(widths)  # log10 RMS of dL/dh
        # Hidden layers only: the gradient at the logits is set by the loss, and the step from
        # a wide hidden layer to few outputs changes the per-unit RMS by sqrt(fan ratio).
        ok = np.flatnonzero(np.isfinite(per_unit) & hidden)
        if len(ok) >= max(2, th.min_layers):
            measured = True
            span = ok[-1] - ok[0]
            gain = (per_unit[ok[0]] - per_unit[ok[-1]]) / span  # log10 gain per layer
            # Per layer beyond gain_factor, or compounding through the hidden layers past
            # compound_decades: the measured counterpart of the weight scales' product.
            total = gain * span
            if abs(gain) >= math.log10(th.gain_factor) or abs(total) >= th.compound_decades:
                evidence["backward_gain_per_layer"] = fl(pow10(gain))
                evidence["backward_gain_through_depth"] = fl(pow10(total))
                evidence["gain_factor"] = th.gain_factor
                evidence["compound_decades"] = th.compound_decades
                causes.append(
                    f"each layer multiplies the backward gradient by about {pow10(gain):.2g} "
                    f"at the start ({pow10(gain * span):.2g}x over {span} layers)"
                )

    # --- weights: scale vs what the following activation needs.
    if len(wn):
        seen.append(int(w_steps[0]))
        # The first measured row only: the starting weights themselves (weight_norm may be
        # sampled every 10 steps, and a high learning rate changes them within 10).
        w0 = wn[0, cols]
        ratios: dict[str, float] = {}
        for j, i in enumerate(cols):  # one pass over layers, not steps
            need = _needed_std(trace.layers[int(i)])
            # (A renormalised layer's scale cancels out: it compounds with nothing.)
            if need is None or renormed[j] or not np.isfinite(w0[j]) or w0[j] <= 0:
                continue
            std = w0[j] / math.sqrt(need[1])
            ratios[names[j]] = math.log10(std / need[0])
        off = {n: r for n, r in ratios.items() if abs(r) >= math.log10(th.weight_scale_factor)}
        compound = sum(off.values())
        # The product of per-layer scales is the signal's gain only for layers in series; in a
        # residual net the branches are summed onto an identity path, and PyTorch's default
        # (1/sqrt(3 fan_in), 0.41x the He scale) is fine in shallow plain nets. So a measured
        # profile that keeps its scale overrules the compounded weights (issue 12), and with
        # no measured profile the weights alone are only a hint.
        weights_only = not causes
        if off and abs(compound) >= th.compound_decades and not (measured and weights_only):
            evidence["param_scale_over_needed"] = {
                n: fl(pow10(r)) for n, r in list(off.items())[:20]
            }
            evidence["weight_scale_factor"] = th.weight_scale_factor
            evidence["compound_factor"] = fl(pow10(compound))
            culprits += [n for n in sorted(off, key=lambda n: -abs(off[n])) if n not in culprits]
            first = next(iter(off))
            causes.append(
                f"{len(off)} layer(s) start with parameters {pow10(off[first]):.2g}x the scale "
                f"their activation needs ({trace.layers[int(cols[names.index(first)])].activation}"
                f": weight std gain/sqrt(fan_in); weight_norm counts the bias too), compounding "
                f"to {pow10(compound):.2g}x"
            )
    # --- norms: the gains of the norms on the main path against their identity, 1. Like the
    # weight scales, they name culprits of a measured collapse only (Gemma's RMSNorm
    # multiplies by 1 + weight and starts its weight at 0, and trains).
    if "activation_std" in evidence or "backward_gain_per_layer" in evidence:
        far = {
            c: g
            for c, g in gains.items()
            if g <= 0 or abs(math.log10(g)) >= math.log10(th.weight_scale_factor)
        }
        if far:
            gain_names = [trace.layers[c].name for c in far]
            evidence["norm_gain_rms"] = by_layer(gain_names, np.array(list(far.values())))
            culprits += [n for n in gain_names if n not in culprits]
            typical = float(np.median(list(far.values())))
            causes.append(
                f"{len(far)} norm layer(s) on the main path start with gains of RMS "
                f"{typical:.2g} (their identity init: 1), each scaling the signal by that"
            )
    # --- the loss: far above an untrained model's at the start, logits too large.
    started = _hot_start(trace, th, cols, act[1][0] if len(act[0]) else np.zeros(0))
    hot = None
    if started is not None:
        ratio, hot, cause, head = started
        evidence["loss_start_over_untrained"] = fl(ratio)
        evidence["hot_start_factor"] = HOT_START
        causes.append(cause)
        if head is not None and head not in culprits:
            # After the culprits found above (inputs far from unit scale, layers that scale
            # the signal up): the logits are then their consequence.
            culprits.append(head)
    if not causes:
        return None
    unconfirmed = "compound_factor" in evidence and len(causes) == 1
    if unconfirmed:
        evidence["measured_profile"] = False  # act_std / out_grad_norm were not recorded
    # Whether training recovered from it: read by the settling pass (diagnosis/recovered.py),
    # which alone knows whether any other finding followed.
    evidence.update(loss_outcome(trace, th.loss_window, th.min_progress, th.max_relapse))
    end = evidence.get("loss_end")
    if hot is not None and isinstance(end, float):
        # Recovered only once well below the untrained level, not from a start it inflated.
        evidence["loss_improving"] = end <= HOT_RECOVERED * hot
    evidence["measured_at_start"] = "; ".join(causes)
    lsuv = ("init_lsuv", "rescales each layer on real data until its output variance is 1")
    norm = ("batchnorm", "re-normalises every layer whatever the initial scale")
    if "input_rms_at_least" in evidence:
        # No initialisation of the weights' kind mends the inputs' scale; standardising
        # them does (not a remedy of the catalogue: it changes the data), and LSUV and
        # BatchNorm rescale from real data whatever it is.
        tail = (
            f"standardise the inputs ({HOW_TO_STANDARDISE}) to start the first layer at unit scale"
        )
        remedies = hints(lsuv, norm)
    elif hot is not None:
        # Logits too large: the output layer's scale, which a re-initialisation sets (HF
        # Qwen2 and ELECTRA at initializer_range 1.0 train under init_xavier: see
        # trained_start.py); a norm re-normalises the hidden layers, not the logits.
        tail = "a variance-preserving initialisation starts the logits near 0"
        remedies = hints(
            ("init_xavier", "variance-preserving: the logits start near 0, the loss near log C"),
            ("init_he", "std sqrt(2/fan_in): the logits start near 0 too"),
            lsuv,
        )
    else:
        tail = (
            "a variance-preserving initialisation keeps each layer's forward and backward "
            "gain near 1"
        )
        remedies = hints(
            lsuv,
            ("init_he", "std sqrt(2/fan_in): variance-preserving for ReLU layers"),
            ("init_xavier", "variance-preserving for tanh/sigmoid layers"),
            norm,
        )
    return Finding(
        rule=RULE,
        severity="info" if unconfirmed else "warning",
        layers=tuple(culprits),
        steps=(min(seen), max(seen)) if seen else None,
        evidence=evidence,
        message=f"Poor initialisation: {'; '.join(causes)}; {tail}.",
        remedies=remedies,
    )


def _hot_start(
    trace: Trace, th: PoorInitializationThresholds, cols: np.ndarray, act: np.ndarray
) -> tuple[float, float, str, str | None] | None:
    """Where the loss started over ``trained_start.HOT_START`` times the untrained level (a
    cross-entropy starts near log C at any fresh initialisation): the start over that level,
    the level, the cause in words and the output layer when it is the last recorded one
    (``act``: the first ``act_std`` row, empty when none). None otherwise."""
    curve = loss_curve(trace, th.loss_window)
    hot = hot_start(trace, curve.start if curve is not None else None)
    if hot is None or curve is None:
        return None
    ratio, level, says = hot
    last = int(cols[-1]) if len(cols) else -1
    head, logits = None, ""
    if last == len(trace.layers) - 1 and len(act) and np.isfinite(act[last]):
        # The output layer is the last recorded one: its outputs are the logits.
        head = trace.layers[last].name
        logits = f" (those of {trace.layer_label(head)!r} at std {act[last]:.2g})"
    cause = (
        f"the loss starts at {curve.start:.3g}, {ratio:.2g}x {says}: the output logits start "
        f"too large{logits}, so the softmax starts saturated on classes it has no reason to "
        "prefer"
    )
    return ratio, level, cause, head


def _out_width(layer: LayerInfo) -> float:
    """Units of a layer's output (first dim of its weight), NaN when unknown."""
    shape = layer.shapes.get("weight")
    return float(shape[0]) if shape else float("nan")
