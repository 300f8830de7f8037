"""The shared vectorised helpers agree with naive per-row / per-window loops."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from gradwatch.diagnosis._common import (
    block_medians,
    depth_span,
    pow10,
    safe_log10,
    take_cols,
    window_medians,
)
from gradwatch.diagnosis._loss import loss_response


def _naive_windows(n: int, window: int) -> list[tuple[int, int]]:
    """Window bounds written out by hand: full windows, the remainder merged if < half."""
    bounds = [(a, min(a + window, n)) for a in range(0, n, window)]
    if len(bounds) > 1 and 2 * (bounds[-1][1] - bounds[-1][0]) < window:
        last = bounds.pop()
        bounds[-1] = (bounds[-1][0], last[1])
    return bounds


@pytest.mark.parametrize("n", [1, 2, 9, 10, 14, 15, 23, 100])
@pytest.mark.parametrize("window", [1, 3, 10])
def test_window_and_block_medians_match_a_loop(n: int, window: int) -> None:
    """window_medians/block_medians equal np.nanmedian over hand-cut windows."""
    rng = np.random.default_rng(n * 100 + window)
    mat = rng.normal(size=(n, 3))
    mat[rng.random((n, 3)) < 0.2] = np.nan
    bounds = _naive_windows(n, window)
    ref = np.array([[_nanmed(mat[a:b, j]) for j in range(3)] for a, b in bounds])
    meds, starts = block_medians(mat, window)
    np.testing.assert_allclose(meds, ref, equal_nan=True)
    assert list(starts) == [a for a, _ in bounds]
    meds1, starts1 = window_medians(mat[:, 0], window)
    np.testing.assert_allclose(meds1, ref[:, 0], equal_nan=True)
    assert list(starts1) == [a for a, _ in bounds]


def _nanmed(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    return float(np.median(x)) if len(x) else math.nan


def test_depth_span_matches_polyfit_per_row() -> None:
    """depth_span equals np.polyfit's slope times (layers - 1), row by row, gaps included."""
    rng = np.random.default_rng(0)
    y = rng.normal(size=(40, 7))
    y[3, 2] = np.nan
    y[5, :6] = np.nan  # one value left: no trend
    y[7, [0, 6]] = np.nan
    got = depth_span(y)
    for i in range(len(y)):
        ok = np.isfinite(y[i])
        if ok.sum() < 2:
            assert math.isnan(got[i])
        else:
            ref = np.polyfit(np.arange(7)[ok], y[i][ok], 1)[0] * 6
            assert got[i] == pytest.approx(ref, abs=1e-10)


def test_safe_log10_marks_non_positive_and_non_finite_missing() -> None:
    """0, negatives, NaN and +-inf become NaN; positive values get their log10."""
    out = safe_log10(np.array([100.0, 0.0, -1.0, np.nan, np.inf, -np.inf, 1e-300]))
    np.testing.assert_allclose(out, [2.0, np.nan, np.nan, np.nan, np.nan, np.nan, -300.0])


def test_take_cols_copies_only_when_needed() -> None:
    """All columns in order returns the same array; a subset is a copy of those columns."""
    m = np.arange(12.0).reshape(3, 4)
    assert take_cols(m, np.arange(4)) is m
    np.testing.assert_array_equal(take_cols(m, np.array([0, 2])), m[:, [0, 2]])


def test_pow10_saturates_instead_of_raising() -> None:
    """pow10 of a huge exponent is inf (10.0 ** 400 would raise OverflowError)."""
    assert pow10(2.0) == 100.0
    assert pow10(400.0) == math.inf
    assert pow10(-400.0) == 0.0


def test_a_loss_starting_near_the_smallest_float_gives_an_infinite_spike_not_a_warning() -> None:
    """A start of 1e-308 and a loss of 1e10 overflow the spike ratio: inf, silently (numpy
    warned "overflow encountered in scalar divide" from inside ``diagnose``; hypothesis
    found it in test_properties)."""
    from gradwatch.trace import Trace

    loss = np.array([1e-308] * 4 + [1e10, 1.0])
    trace = Trace.from_arrays([], np.arange(6), {}, scalars={"loss": loss})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resp = loss_response(trace, 5, 1, 0.1, 6)
    assert resp is not None and resp.spike == math.inf and resp.spike_step == 4
