"""What a trace says of the user's training loop rather than of the model: the gradient
clipping it did, and the watch's records of the loop (``meta["config"]``, recording/loop.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..trace import Trace
from ._common import scalar_rows


def clipping_active(trace: Trace, first: int, last: int) -> bool:
    """Whether the user clipped gradients between steps ``first`` and ``last``.

    A ``clip_coef`` scalar (the factor the clipper scaled the gradient by, as
    ``torch.nn.utils.clip_grad_norm_`` computes it) below 1 at some step there, or a truthy
    ``meta["clipping"]`` (e.g. ``{"max_norm": 0.25}``) for the whole run.
    """
    if trace.meta.get("clipping"):
        return True
    return bool((_scalar_between(trace, "clip_coef", first, last) < 1.0).any())


def clip_scale(trace: Trace, first: int, last: int) -> tuple[float, float] | None:
    """(median factor the user's clipping scaled the gradient by, median pre-clip global
    norm) over steps ``first`` to ``last`` (the ``clip_coef`` and ``global_grad_norm``
    scalars, 1 where no clip acted); None where no clip was recorded there."""
    coef = _scalar_between(trace, "clip_coef", first, last)
    if not len(coef):
        return None
    norms = _scalar_between(trace, "global_grad_norm", first, last)
    norm = float(np.median(norms)) if len(norms) else float("nan")
    return float(np.median(np.minimum(coef, 1.0))), norm


def _scalar_between(trace: Trace, name: str, first: int, last: int) -> np.ndarray:
    """The finite values of scalar ``name`` at steps ``first`` to ``last``."""
    steps, values = scalar_rows(trace, name)
    return values[(steps >= first) & (steps <= last)]


def loop_config(trace: Trace, key: str) -> dict[str, Any] | None:
    """The watch's record ``key`` of the training loop (``meta["config"][key]``,
    recording/loop.py), or None where it is missing or not a mapping (an older trace, a
    hand-built one)."""
    config = trace.meta.get("config")
    seen = config.get(key) if isinstance(config, dict) else None
    return seen if isinstance(seen, dict) else None


def loop_record(trace: Trace, key: str, *fields: str) -> tuple[int, ...] | None:
    """The integer ``fields`` of the watch's record of the training loop
    (``meta["config"][key]``, recording/loop.py), or None where the record or one of the
    fields is missing or not an integer (an older trace, a hand-built one).

    Example:
        >>> t = Trace.from_arrays(["fc"], [0], {"grad_rms": [[1.0]]})
        >>> t.meta["config"] = {"grad_zeroing": {"checked": 4, "kept": 4, "first_kept": 1}}
        >>> loop_record(t, "grad_zeroing", "checked", "kept"), loop_record(t, "train_mode", "steps")
        ((4, 4), None)
    """
    seen = loop_config(trace, key)
    if seen is None:
        return None
    ints = tuple(v for v in (seen.get(name) for name in fields) if isinstance(v, int))
    return ints if len(ints) == len(fields) else None
