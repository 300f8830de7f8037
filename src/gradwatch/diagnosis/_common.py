"""Shared, vectorised helpers of the rules: windows, logs, layer selection, evidence.

Rules must tolerate any trace: zero steps, one layer, all-missing, NaN/inf everywhere. These
helpers return empty arrays or NaN for "no evidence" and never raise on such input; numpy's
"All-NaN slice" / "Mean of empty slice" warnings are silenced where NaN is the expected answer.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple

import numpy as np

from ..trace import Trace
from .finding import REMEDY_IDS, RemedyHint

# Layer types whose statistics are not comparable along depth with those of weight layers:
# normalisation layers hold scale/shift vectors near 1 and 0, embeddings get sparse gradients.


@contextmanager
def quiet_nan() -> Iterator[None]:
    """Silence numpy's warnings about all-NaN slices and empty means (NaN is the answer)."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def nanmedian(x: np.ndarray, axis: int) -> np.ndarray:
    """``np.nanmedian`` with a fast path: plain ``np.median`` when there is no NaN.

    numpy's nanmedian falls back to a per-column Python loop for long axes; most rule inputs
    hold no NaN after the unmeasured rows are dropped, so this keeps ``diagnose`` vectorised.
    """
    x = np.asarray(x, dtype=np.float64)
    with quiet_nan():
        if x.size and not np.isnan(x).any():
            return np.median(x, axis=axis)
        return np.nanmedian(x, axis=axis)


def safe_log10(x: np.ndarray) -> np.ndarray:
    """log10 of positive finite values; NaN for 0, negatives, NaN and inf."""
    with np.errstate(all="ignore"):
        out = np.log10(np.asarray(x, dtype=np.float64))
    # log10 gives -inf for 0, NaN for negatives, inf for inf: one pass marks them missing.
    out[~np.isfinite(out)] = np.nan
    return out


def take_cols(mat: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``mat[:, cols]`` without a copy when ``cols`` is every column in order."""
    if len(cols) == mat.shape[1] and (
        len(cols) == 0 or (cols[0] == 0 and cols[-1] == len(cols) - 1)
    ):
        return mat
    return mat[:, cols]


def core_layers(trace: Trace) -> np.ndarray:
    """Column indices of the layers depth comparisons use (``Trace.path_columns``: weights and
    attention; not norms, embeddings, PReLU slopes or the model's own parameters)."""
    return np.asarray(trace.path_columns(), dtype=np.int64)


def metric_rows(trace: Trace, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """``(steps, matrix)`` of the rows where ``metric`` was measured; empty if absent."""
    if not trace.has_metric(metric):
        return np.zeros(0, np.int64), np.zeros((0, len(trace.layers)))
    return trace.measured(metric)


def scalar_rows(trace: Trace, name: str) -> tuple[np.ndarray, np.ndarray]:
    """``(steps, values)`` of a scalar where it is finite; empty if absent."""
    if not trace.has_scalar(name):
        return np.zeros(0, np.int64), np.zeros(0)
    values = trace.scalar(name)
    ok = np.isfinite(values)
    return trace.scalar_steps[ok], values[ok]


#: Per-token norm classes by name: LayerNorm, RMSNorm and HF's T5LayerNorm, LlamaRMSNorm ...
_LAYER_NORM_RE = re.compile(r"(Layer|RMS)Norm$")


class ResidualShape(NamedTuple):
    """How residual the recorded model is (:func:`residual_shape`)."""

    inside: int  # weight layers on the gradient's path that sit in a residual branch
    total: int  # weight layers on the gradient's path
    branches: int  # distinct residual branches holding them
    norms: int  # normalisation layers (LayerInfo.role == "norm")
    layer_norms: int  # of them, per-token norms (LayerNorm, RMSNorm): a transformer's

    @property
    def residual(self) -> bool:
        """Most weight layers sit in a residual branch: the model has skip connections."""
        return 2 * self.inside > self.total

    @property
    def normalised(self) -> bool:
        """A residual net with a norm layer per two branches or more (every transformer
        block's and ResNet block's, checked on 12 HF and corpus models)."""
        return self.residual and 2 * self.norms >= self.branches


def residual_shape(trace: Trace) -> ResidualShape:
    """The residual branches and norm layers of the recorded model: the recorder's probe
    (``LayerInfo.branch``) finds a transformer's or a ResNet's branches.

    Example:
        >>> from gradwatch.trace import LayerInfo
        >>> layers = [LayerInfo("h.0.attn.q", "Linear", 0, 4, branch="h.0.attn"),
        ...           LayerInfo("h.0.ln", "LayerNorm", 1, 2), LayerInfo("head", "Linear", 2, 4)]
        >>> shape = residual_shape(Trace.from_arrays(layers, [0], {"grad_rms": [[1.0] * 3]}))
        >>> shape, shape.residual, shape.normalised
        (ResidualShape(inside=1, total=2, branches=1, norms=1, layer_norms=1), False, False)
    """
    on_path = [layer for layer in trace.layers if layer.on_path]
    return ResidualShape(
        inside=sum(layer.branch is not None for layer in on_path),
        total=len(on_path),
        branches=len({layer.branch for layer in on_path if layer.branch is not None}),
        norms=sum(layer.role == "norm" for layer in trace.layers),
        layer_norms=sum(
            layer.role == "norm" and _LAYER_NORM_RE.search(layer.type) is not None
            for layer in trace.layers
        ),
    )


def window_medians(x: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Medians of consecutive windows of ``window`` rows of a 1-D array (NaN ignored).

    The last window takes the remainder (it is merged into the previous one when shorter
    than half a window, so no window is a single noisy row). Returns the medians and the
    index of each window's first row.
    """
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    n = len(x)
    if n == 0:
        return np.zeros(0), np.zeros(0, np.int64)
    window = max(1, int(window))
    n_win = max(1, n // window)
    if 2 * (n - n_win * window) >= window:  # a remainder of at least half a window
        n_win += 1
    starts = np.minimum(np.arange(n_win) * window, n)
    ends = np.append(starts[1:], n)
    # Pad each window to the longest one with NaN and take one nanmedian: no Python loop.
    width = int((ends - starts).max())
    idx = starts[:, None] + np.arange(width)[None, :]
    valid = idx < ends[:, None]
    padded = np.where(valid, x[np.minimum(idx, n - 1)], np.nan)
    return nanmedian(padded, axis=1), starts


def block_medians(mat: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-column medians of consecutive blocks of ``window`` rows of a 2-D array.

    Like :func:`window_medians` but for a ``(rows, layers)`` matrix (the remainder rows join
    the last block when it would hold fewer than half a window). Returns ``(blocks, layers)``
    medians and the first row of each block.
    """
    rows, cols = mat.shape
    if rows == 0:
        return np.zeros((0, cols)), np.zeros(0, np.int64)
    window = max(1, int(window))
    n_full = max(1, rows // window)
    rem = rows - n_full * window
    if 2 * rem >= window or rows < window:
        n_blocks = n_full + (1 if rows >= window else 0)
    else:
        n_blocks = n_full
    starts = np.arange(n_blocks) * window
    ends = np.append(starts[1:], rows)
    width = int((ends - starts).max())
    idx = starts[:, None] + np.arange(width)[None, :]  # (B, width)
    valid = idx < ends[:, None]
    padded = np.where(valid[:, :, None], mat[np.minimum(idx, rows - 1)], np.nan)
    return nanmedian(padded, axis=1), starts


def end_groups(n: int, fraction: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the "first" and "last" layers among ``n`` (at least one each)."""
    k = max(1, round(n * fraction)) if n >= 10 else 1
    k = min(k, max(1, n // 2))
    return np.arange(k), np.arange(n - k, n)


def depth_span(log_mat: np.ndarray) -> np.ndarray:
    """Per row, the least-squares trend of ``log_mat`` along depth, times the depth covered.

    ``log_mat`` is ``(rows, layers)`` of log10 values in depth order (NaN = missing). The
    result is the fitted rise, in decades, from the first to the last layer: positive when
    the last layers are larger (vanishing toward the input), negative when the first are
    (exploding toward the input). A fit over all layers is steadier than comparing the two
    end layers, one of which is often odd (the output layer). NaN for rows with < 2 values.
    """
    rows, n = log_mat.shape
    if n < 2 or rows == 0:
        return np.full(rows, np.nan)
    ok = np.isfinite(log_mat)
    full = ok.all(axis=1)
    slope = np.full(rows, np.nan)
    if full.any():
        # Rows with every layer present (the usual case): one matrix-vector product.
        xc = np.arange(n, dtype=np.float64) - (n - 1) / 2.0
        slope[full] = (log_mat[full] @ xc) / float(xc @ xc)
    part = ~full
    if part.any():
        # Rows with gaps: centre depth on each row's own layers.
        sub, okp = log_mat[part], ok[part]
        x = np.arange(n, dtype=np.float64)[None, :]
        cnt = okp.sum(axis=1)
        y = np.where(okp, sub, 0.0)
        with quiet_nan():
            xm = (okp * x).sum(axis=1) / cnt
            ym = y.sum(axis=1) / cnt
            dx = np.where(okp, x - xm[:, None], 0.0)
            var = (dx * dx).sum(axis=1)
            sl = (dx * (y - ym[:, None])).sum(axis=1) / var
        sl[(cnt < 2) | (var == 0)] = np.nan
        slope[part] = sl
    return slope * (n - 1)


def pow10(x: float) -> float:
    """10**x as a float that saturates to inf/0 instead of raising OverflowError."""
    with np.errstate(over="ignore"):
        return float(np.power(10.0, np.float64(x)))


def fl(x: Any) -> float | None:
    """A JSON-friendly float (6 significant digits); ``None`` for NaN/inf/missing."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(v):
        return None
    return float(f"{v:.6g}")


def step_span(steps: np.ndarray) -> tuple[int, int] | None:
    """First and last step of an evidence set, or None when it is empty."""
    if len(steps) == 0:
        return None
    return int(np.min(steps)), int(np.max(steps))


def start_only(
    span: tuple[int, int] | None, measured: np.ndarray, run_end: int, min_later: int = 3
) -> tuple[str, dict[str, int] | None]:
    """(sentence, evidence) for a finding whose evidence lies at the start of training.

    That is: it begins in the first 10% of the steps its rule read (``measured``), ends in
    their first half, and at least ``min_later`` measurements follow it up to the end of the
    run (``run_end``, the trace's last step; a run whose statistics stop early, e.g. once they
    turn non-finite, gets no sentence). Else ("", None). The sentence states only that the
    later measurements stay under the rule's threshold: whether the run recovered is for the
    loss and the other findings to say (ResNet-50 without warm-up fires for its first 10-12
    steps of 300 and learns; GPT-2 at too high a rate erases its init in 6 and never does).
    """
    if span is None or len(measured) == 0:
        return "", None
    first, last = int(measured[0]), int(measured[-1])
    length = max(last - first, 1)
    later = int((measured > span[1]).sum())
    if (
        later < min_later
        or span[0] > first + 0.1 * length
        or span[1] > first + 0.5 * length
        or last < run_end - 0.1 * max(run_end - first, 1)
    ):
        return "", None
    where = f"step {span[0]}" if span[0] == span[1] else f"steps {span[0]}-{span[1]}"
    sentence = (
        f" Seen in {where} only: the {later} later measurements (to step {last}) stay under "
        "the threshold."
    )
    return sentence, {"until_step": span[1], "later_measurements": later, "last_step": last}


def hints(*pairs: tuple[str, str]) -> tuple[RemedyHint, ...]:
    """Ranked remedy hints; a typo in a remedy id fails loudly here, not in a user's run."""
    out = []
    for rid, reason in pairs:
        if rid not in REMEDY_IDS:
            raise ValueError(f"unknown remedy id {rid!r}; valid ids are {REMEDY_IDS}")
        out.append(RemedyHint(rid, reason))
    return tuple(out)


def activation_after(trace: Trace, col: int) -> str | None:
    """The activation a layer's output passes through: its own, or for a layer whose output
    goes straight into a norm (conv -> BatchNorm -> SiLU: the norm is next in depth order),
    the norm's. The recorder gives the activation to the module right before it, the norm."""
    layer = trace.layers[col]
    if layer.activation is None and col + 1 < len(trace.layers):
        after = trace.layers[col + 1]
        if after.role == "norm":
            return after.activation
    return layer.activation


def norm_gains(trace: Trace) -> dict[int, float]:
    """{column: the RMS of its gain} at the start, for each norm layer on the main path.

    Read from the first measured ``weight_norm`` over ``sqrt(C)``, C the gain's length (a
    norm's shift starts at 0, so the norm is the gain's). The identity init every torch norm
    starts from gives 1; HF EfficientNet's draws gains from N(0, 0.02) and gives 0.02. Norms
    inside a residual branch are left out: a branch may start its last norm at 0 on purpose
    (zero-init residual BatchNorm). Empty without a recorded ``weight_norm``.
    """
    steps, wn = metric_rows(trace, "weight_norm")
    if len(steps) == 0:
        return {}
    gains: dict[int, float] = {}
    for col, layer in enumerate(trace.layers):
        shape = layer.shapes.get("weight")
        if layer.role != "norm" or layer.branch is not None or not shape or len(shape) != 1:
            continue
        if np.isfinite(wn[0, col]) and shape[0] > 0:
            gains[col] = float(wn[0, col]) / math.sqrt(shape[0])
    return gains


def dominant_activation(trace: Trace, cols: Sequence[int] | np.ndarray) -> str | None:
    """The most common activation (lower-case class name) after the layers ``cols``, if any
    (:func:`activation_after`): HF EfficientNet's 33 conv -> BatchNorm -> SiLU blocks outnumber
    its 16 squeeze-excite gates (a conv -> Sigmoid each), whose sigmoid the layers' own
    activations alone named."""
    names = [a.lower() for a in (activation_after(trace, int(c)) for c in cols) if a]
    if not names:
        return None
    values, counts = np.unique(np.asarray(names), return_counts=True)
    return str(values[int(np.argmax(counts))])


def is_sigmoid_like(activation: str | None) -> bool:
    return activation is not None and any(
        k in activation for k in ("sigmoid", "tanh", "softsign", "hardtanh")
    )


def fmt_factor(decades: float) -> str:
    """A factor written for people: 10^3.2 -> '1.6e+03x'."""
    return f"{pow10(decades):.2g}x"


def finite_output_mask(trace: Trace, steps: np.ndarray, measured: np.ndarray) -> np.ndarray:
    """``(len(steps), L)``: False where a layer's values were not finite at that step.

    ``measured`` marks where the caller's sampled statistic exists. There, a layer's output
    was non-finite when its ``act_mean`` is NaN/inf or its ``act_std`` is inf (the mean of
    the outputs is finite only when every output is; a NaN output counts as "not positive"
    and would read as a dead unit). Anywhere, its gradient had non-finite entries
    (``nonfinite`` > 0) or the logged loss was infinite. Fractions measured there describe a
    blow-up, which is the ``nonfinite_gradient`` rule's to report, not dead units.
    """
    steps = np.asarray(steps)
    ok = np.ones((len(steps), len(trace.layers)), dtype=bool)
    if len(steps) == 0:
        return ok
    rows = np.clip(np.searchsorted(trace.steps, steps), 0, max(len(trace.steps) - 1, 0))
    if trace.has_metric("act_mean"):
        ok &= ~(measured & ~np.isfinite(trace.matrix("act_mean")[rows]))
    if trace.has_metric("act_std"):
        ok &= ~(measured & np.isinf(trace.matrix("act_std")[rows]))
    if trace.has_metric("nonfinite"):
        ok &= ~(np.nan_to_num(trace.matrix("nonfinite")[rows], nan=0.0) > 0)
    if trace.has_scalar("loss") and len(trace.scalar_steps):
        # Only an infinite loss: a NaN may just be a step where the loss was not logged.
        pos = np.clip(np.searchsorted(trace.scalar_steps, steps), 0, len(trace.scalar_steps) - 1)
        same = trace.scalar_steps[pos] == steps
        ok &= ~(same & np.isinf(trace.scalar("loss")[pos]))[:, None]
    return ok


def tail_fraction(
    trace: Trace, metric: str, window: int, columns: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-layer median of a fraction metric over its last ``window`` measured rows.

    Values at non-finite outputs (:func:`finite_output_mask`) are dropped first, so the window
    is the last ``window`` rows with some finite evidence. Layers outside ``columns`` (when
    given) are NaN. Returns ``(steps of those rows, (L,) medians)`` or None when never measured.
    """
    steps, mat = metric_rows(trace, metric)
    if len(steps) == 0 or mat.shape[1] == 0:
        return None
    mat = np.where(finite_output_mask(trace, steps, np.isfinite(mat)), mat, np.nan)
    if columns is not None:
        keep = np.zeros(mat.shape[1], dtype=bool)
        keep[np.asarray(columns, dtype=np.int64)] = True
        mat = np.where(keep[None, :], mat, np.nan)
    alive = ~np.all(np.isnan(mat), axis=1)
    steps, mat = steps[alive], mat[alive]
    if len(steps) == 0:
        return None
    tail = mat[-min(window, len(mat)) :]
    return steps[-len(tail) :], nanmedian(tail, axis=0)


class FractionHits(NamedTuple):
    """Layers whose tail-median fraction crossed a threshold, worst first."""

    steps: np.ndarray  # steps of the tail rows the medians came from
    layers: np.ndarray  # (K,) layer indices, worst first
    names: list[str]  # their names, same order
    values: np.ndarray  # (K,) their median fractions, same order


def fractions_over(
    trace: Trace,
    metric: str,
    window: int,
    threshold: float,
    columns: np.ndarray | None = None,
) -> FractionHits | None:
    """Layers whose median ``metric`` over the last ``window`` rows exceeds ``threshold``.

    Shared by the per-layer fraction rules (saturated and dead units); only layers in
    ``columns`` when given. None when the metric was never measured or no layer crosses.
    """
    got = tail_fraction(trace, metric, window, columns)
    if got is None:
        return None
    steps, frac = got
    hit = np.flatnonzero(np.isfinite(frac) & (frac > threshold))
    if len(hit) == 0:
        return None
    hit = hit[np.argsort(-frac[hit], kind="stable")]
    return FractionHits(steps, hit, [trace.layers[i].name for i in hit], frac[hit])


def by_layer(names: Sequence[str], values: np.ndarray, limit: int = 20) -> dict[str, float | None]:
    """``{name: value}`` for evidence, the first ``limit`` pairs (names and values aligned)."""
    return {n: fl(v) for n, v in zip(names[:limit], np.asarray(values)[:limit], strict=False)}
