"""What every figure shares: the measured rows of a metric, the steps to draw, log-axis values.

Private to :mod:`gradwatch.report`; each figure module imports what it needs from here, so
"which steps were measured" and "which values a log axis can show" are decided once.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from gradwatch.trace import Trace

__all__ = [
    "METRIC_LABELS",
    "first_last",
    "geomean_rows",
    "has_data",
    "pick",
    "positive",
    "require_rows",
    "rows_at",
    "rows_with_data",
    "select_steps",
]

#: Axis labels with units, per metric (what a user reads on the axis).
METRIC_LABELS: dict[str, str] = {
    "grad_rms": "gradient RMS  ‖∂L/∂θ‖/√n\n(loss units per parameter unit)",
    "grad_norm": "gradient norm  ‖∂L/∂θ‖\n(loss units per parameter unit)",
    "grad_max": "largest |∂L/∂θ|\n(loss units per parameter unit)",
    "weight_norm": "weight norm  ‖θ‖  (parameter units)",
    "update_ratio": "update ratio  ‖Δθ‖/‖θ‖\n(dimensionless)",
    "out_grad_norm": "‖∂L/∂h‖ at the layer's output\n(loss units per activation unit)",
    "nonfinite": "non-finite gradient entries  (count)",
}


def rows_with_data(trace: Trace, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Steps and rows of ``metric`` where at least one layer has a finite value."""
    mat = trace.matrix(metric)
    keep = np.any(np.isfinite(mat), axis=1) if mat.size else np.zeros(len(mat), bool)
    return trace.steps[keep], mat[keep]


def has_data(trace: Trace, metric: str) -> bool:
    """Whether ``trace`` holds ``metric`` with at least one finite value (a plot can show it)."""
    return trace.has_metric(metric) and bool(np.any(np.isfinite(trace.matrix(metric))))


def require_rows(trace: Trace, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """:func:`rows_with_data`, or a ValueError naming the metric when there are none.

    Raises:
        ValueError: When the trace has no such metric, or never measured it.
    """
    if not trace.has_metric(metric):
        raise ValueError(
            f"this trace has no metric {metric!r} (it has {trace.metrics}); record it, or pick "
            "a plot for a metric the trace holds."
        )
    steps, rows = rows_with_data(trace, metric)
    if len(steps) == 0:
        raise ValueError(
            f"metric {metric!r} was never measured in this trace (all values missing). Sampled "
            "metrics exist only every `sample_every` steps: record more steps than that."
        )
    return steps, rows


def pick(n_rows: int, n: int) -> np.ndarray:
    """Up to ``n`` row indices spread evenly from the first row to the last."""
    if n < 1:
        raise ValueError(f"Expected argument `moments` to be at least 1 but got {n}.")
    return np.unique(np.round(np.linspace(0, n_rows - 1, min(n, n_rows))).astype(np.int64))


def select_steps(
    steps: np.ndarray, rows: np.ndarray, which: Sequence[int] | None, moments: int, metric: str
) -> tuple[np.ndarray, np.ndarray]:
    """The steps ``which`` (each must be measured), or ``moments`` spread over ``steps``.

    Raises:
        ValueError: When a step in ``which`` has no measured ``metric``; ``metric`` names
            what was measured in the message.
    """
    if which is None:
        idx = pick(len(steps), moments)
    else:
        idx_list = []
        for s in which:
            hit = np.flatnonzero(steps == int(s))
            if len(hit) == 0:
                raise ValueError(
                    f"step {s} has no measured {metric!r}; {len(steps)} measured steps run from "
                    f"{steps[0]} to {steps[-1]}, e.g. {steps[: min(5, len(steps))].tolist()}."
                )
            idx_list.append(int(hit[0]))
        idx = np.asarray(idx_list, dtype=np.int64)
    return steps[idx], rows[idx]


def positive(values: np.ndarray) -> np.ndarray:
    """Values for a log axis: non-positive and non-finite become NaN (not drawn)."""
    out = np.array(values, dtype=np.float64, copy=True)
    out[~(np.isfinite(out) & (out > 0))] = np.nan
    return out


def geomean_rows(rows: np.ndarray) -> np.ndarray:
    """Geometric mean over steps per layer, of the positive finite values only."""
    logs = np.log(positive(rows))
    with warnings.catch_warnings():
        # "Mean of empty slice": a layer never measured stays NaN, on purpose.
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.exp(np.nanmean(logs, axis=0))


def first_last(trace: Trace, metrics: Sequence[str], step: int | None) -> np.ndarray:
    """The first measured step and ``step`` (default: last) over the union of ``metrics``."""
    present = [m for m in metrics if trace.has_metric(m)]
    if not present:
        raise ValueError(
            f"this trace has none of the metrics {list(metrics)} (it has {trace.metrics}); they "
            "are recorded on sampled steps."
        )
    measured = np.unique(np.concatenate([rows_with_data(trace, m)[0] for m in present]))
    if len(measured) == 0:
        raise ValueError(f"the metrics {present} were never measured in this trace.")
    last = measured[-1] if step is None else int(step)
    if last not in measured:
        raise ValueError(
            f"step {step} has no measured {present}; measured steps: "
            f"{measured[: min(8, len(measured))].tolist()}..."
        )
    return np.array([measured[0], last], dtype=np.int64)


def rows_at(trace: Trace, metric: str, steps: np.ndarray) -> np.ndarray:
    """``(len(steps), layers)`` rows of ``metric`` at ``steps``; NaN where absent."""
    out = np.full((len(steps), len(trace.layers)), np.nan)
    if trace.has_metric(metric):
        mat = trace.matrix(metric)
        for i, s in enumerate(steps):
            hit = np.flatnonzero(trace.steps == s)
            if len(hit):
                out[i] = mat[hit[0]]
    return out
