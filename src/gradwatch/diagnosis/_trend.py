"""Mann-Kendall's trend test: is a series of loss windows falling, rising, or neither?"""

from __future__ import annotations

import numpy as np

#: At most this many values enter the trend test (longer series are binned by median): the
#: test compares every pair, and a long run has thousands of loss windows.
_TREND_VALUES = 64


def mann_kendall_z(x: np.ndarray) -> float:
    """Mann-Kendall's trend statistic of ``x`` as a z-score (no tie correction): the count of
    later-minus-earlier pairs that rise less those that fall, over its standard deviation
    when there is no trend. Below -3: falling, beyond noise and one-off bumps. 0 for fewer
    than 3 values. A series longer than 64 values is first reduced to the medians of 64
    consecutive bins.

    Example:
        >>> round(mann_kendall_z(np.arange(10.0)[::-1]), 2)
        -4.02
    """
    if len(x) > _TREND_VALUES:
        x = np.array([np.median(b) for b in np.array_split(x, _TREND_VALUES)])
    n = len(x)
    if n < 3:
        return 0.0
    signs = np.sign(x[None, :] - x[:, None])  # [i, j]: sign of x[j] - x[i]
    s = float(np.triu(signs, k=1).sum())
    return s / float(np.sqrt(n * (n - 1) * (2 * n + 5) / 18.0))
