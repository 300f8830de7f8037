"""Per-layer sums of one sampled step, combined into the activation metrics in a few kernels.

Outputs come from two sources per layer: the layer's own output ("raw") and the output of the
activation that follows it ("act"); a layer's activation statistics describe the activation
when it has one, else its own output. Contributions arrive as vectors over a batch of layers
(``add_batch``, ``add_out_grads``) or one layer at a time (``add_accumulator``, for outputs
reduced in their hook), and ``metrics`` turns them into act_mean, act_std, act_saturated,
act_dead, out_grad_norm and act_between_inputs for every layer at once.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from .stats import ActivationAccumulator, Moments

RAW, ACT = 0, 1


class DeviceConstants:
    """Host values the sampled steps send to the device, copied once and reused.

    A copy from pageable host memory to a CUDA device makes the stream wait for all work
    queued before it (the host stalls until the backward pass has run), and
    ``torch.tensor(..., device="cuda")`` is such a copy. The layer lists of a batch and the
    per-layer counts and flags repeat from one sampled step to the next, so each distinct
    value goes to the device once.
    """

    _MAX_ENTRIES = 256  # distinct values kept; a run with more starts the cache over

    def __init__(self, device: torch.device) -> None:
        self._device = device
        self._cache: dict[tuple[Any, ...], torch.Tensor] = {}

    def _get(self, key: tuple[Any, ...], make: Callable[[], torch.Tensor]) -> torch.Tensor:
        t = self._cache.get(key)
        if t is None:
            if len(self._cache) >= self._MAX_ENTRIES:
                self._cache.clear()
            t = self._cache[key] = _to_device(make(), self._device)
        return t

    def index(self, layers: tuple[int, ...]) -> torch.Tensor:
        """``layers`` as a long tensor on the device."""
        return self._get(("index", layers), lambda: torch.tensor(layers, dtype=torch.long))

    def array(self, values: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
        """``values`` (a host array) as a tensor of ``dtype`` on the device."""
        key = ("array", values.shape, values.dtype.str, values.tobytes(), dtype)
        return self._get(key, lambda: torch.tensor(values, dtype=dtype))


def _to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``t`` on ``device``; to a CUDA device from pinned memory, so that the copy neither
    blocks the host nor makes the stream wait (once per distinct value: pinning is slow)."""
    if device.type != "cuda":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)


class StepSums:
    """Running sums over every forward of a sampled step, per layer and source."""

    def __init__(
        self, n_layers: int, device: torch.device, dtype: torch.dtype, consts: DeviceConstants
    ) -> None:
        self.n = n_layers
        self._dtype = dtype
        self._consts = consts
        # rows: total, total of squares, saturated count, the squared per-unit and overall
        # means (stats.Moments; _PER_SOURCE rows), for RAW then ACT; then the out-grad sum
        # of squares.
        self._sums = torch.zeros(_SUM_ROWS, n_layers, dtype=dtype, device=device)
        self.count = np.zeros((2, n_layers))
        self.has_sat = np.zeros((2, n_layers), dtype=bool)
        self.has_og = np.zeros(n_layers, dtype=bool)
        self.alive: dict[tuple[int, int], torch.Tensor] = {}

    def _row(self, src: int, k: int) -> torch.Tensor:
        return self._sums[_PER_SOURCE * src + k]

    def add_batch(
        self,
        src: int,
        layers: tuple[int, ...],
        m: Moments,
        *,
        count: int,
    ) -> None:
        """Add the reductions of k outputs of ``count`` elements, one per entry of ``layers``."""
        idx = self._consts.index(layers)
        self._row(src, 0).index_add_(0, idx, m.total.to(self._dtype))
        self._row(src, 1).index_add_(0, idx, m.total_sq.to(self._dtype))
        np.add.at(self.count[src], list(layers), count)
        if m.saturated is not None:
            self._row(src, 2).index_add_(0, idx, m.saturated.to(self._dtype))
            self.has_sat[src, list(layers)] = True
        self._row(src, 3).index_add_(0, idx, m.common.to(self._dtype))
        self._row(src, 4).index_add_(0, idx, m.offset.to(self._dtype))
        if m.alive is not None:
            for j, i in enumerate(layers):
                self._add_alive(src, i, m.alive[j])

    def add_out_grads(self, layers: tuple[int, ...], sq: torch.Tensor) -> None:
        """Add sum((dL/d output)**2) of outputs of ``layers``."""
        self._sums[OUT_GRAD_ROW].index_add_(0, self._consts.index(layers), sq.to(self._dtype))
        self.has_og[list(layers)] = True

    def add_accumulator(self, src: int, i: int, acc: ActivationAccumulator) -> None:
        """Add what was reduced in a hook (an output over the stash budget)."""
        if acc.count and acc.total is not None and acc.total_sq is not None:
            self._row(src, 0)[i] += acc.total.to(self._dtype)
            self._row(src, 1)[i] += acc.total_sq.to(self._dtype)
            self.count[src, i] += acc.count
            if acc.saturated is not None:
                self._row(src, 2)[i] += acc.saturated.to(self._dtype)
                self.has_sat[src, i] = True
            if acc.common is not None and acc.offset is not None:
                self._row(src, 3)[i] += acc.common.to(self._dtype)
                self._row(src, 4)[i] += acc.offset.to(self._dtype)
            if acc.alive is not None:
                self._add_alive(src, i, acc.alive)
        if acc.out_grad_sq is not None:
            self._sums[OUT_GRAD_ROW, i] += acc.out_grad_sq.to(self._dtype)
            self.has_og[i] = True

    def _add_alive(self, src: int, i: int, alive: torch.Tensor) -> None:
        prev = self.alive.get((src, i))
        same = prev is not None and prev.shape == alive.shape
        self.alive[(src, i)] = prev | alive if same else alive  # type: ignore[operator]

    def raw(self) -> torch.Tensor:
        """(RAW_ROWS, layers): the step's sums and counts, which add up across processes.

        Rows: total, total of squares, saturated count, the squared per-unit and overall means
        (``stats.Moments``), for RAW then ACT, out-grad sum of squares, then the
        element counts (RAW, ACT) and the flags has_sat (RAW, ACT) and has_og as 0/1. The
        host-side bookkeeping goes to the device once per distinct value.
        """
        host = np.concatenate([self.count, self.has_sat, self.has_og[None]])
        return torch.cat([self._sums, self._consts.array(host, self._dtype)])

    def alive_units(self) -> dict[int, torch.Tensor]:
        """Per layer, its "positive at least once" units from the source its metrics use."""
        use_act = self.count[ACT] > 0
        out = {}
        for i in range(self.n):
            a = self.alive.get((int(use_act[i]), i))
            if a is not None:
                out[i] = a
        return out

    def all_sums(self) -> torch.Tensor:
        """(WINDOW_ROWS, layers): :meth:`raw` then the units alive and the units per layer,
        what :func:`combine` needs, in one tensor."""
        alive_sum, units = alive_counts(self.alive_units(), self.n, self._sums, self._consts)
        return torch.cat([self.raw(), alive_sum[None], units[None]])


class WindowSums:
    """The sums of a window's sampled steps, turned into their metrics at the flush.

    :func:`combine` is ~25 small tensor operations; run per sampled step they were a third of
    its kernel launches on a GPU (W1: ~30 of 94). Kept as sums, the window's sampled steps
    are combined together, in those same ~25 operations, once per flush. Each step's sums
    are kept as they are (no copy), so the memory follows the sampled steps, not the window.
    """

    def __init__(self) -> None:
        self._kept: dict[int, torch.Tensor] = {}  # slot -> (WINDOW_ROWS, layers)

    def keep(self, slot: int, sums: StepSums) -> None:
        """Keep the sampled step at ``slot`` of the window."""
        self._kept[slot] = sums.all_sums()

    def take(self) -> tuple[list[int], torch.Tensor | None]:
        """The slots kept since the last call and their ``(slots, metrics, layers)`` metrics."""
        kept, self._kept = self._kept, {}
        if not kept:
            return [], None
        stacked = torch.stack(list(kept.values()))
        return list(kept), combine(
            stacked[:, :RAW_ROWS], stacked[:, RAW_ROWS], stacked[:, RAW_ROWS + 1]
        )

    @staticmethod
    def bytes_per_step(n_layers: int, dtype: torch.dtype) -> int:
        """Bytes kept per sampled step (a window's worth when every step is sampled)."""
        return WINDOW_ROWS * max(n_layers, 1) * dtype.itemsize


#: Sum rows per source (RAW, ACT) in :meth:`StepSums.raw`, then the out-grad row.
_PER_SOURCE = 5
OUT_GRAD_ROW = 2 * _PER_SOURCE
_SUM_ROWS = OUT_GRAD_ROW + 1
#: Rows of :meth:`StepSums.raw`, and of :meth:`StepSums.all_sums`.
RAW_ROWS = _SUM_ROWS + 5
WINDOW_ROWS = RAW_ROWS + 2
_COUNT, _HAS_SAT, _HAS_OG = _SUM_ROWS, _SUM_ROWS + 2, _SUM_ROWS + 4


def alive_counts(
    alive: dict[int, torch.Tensor], n: int, like: torch.Tensor, consts: DeviceConstants
) -> tuple[torch.Tensor, torch.Tensor]:
    """(units alive, units) per layer from per-unit flags; units is NaN where none were seen."""
    units = np.full(n, math.nan)
    zero = like.new_zeros(())
    sums = []
    for i in range(n):
        a = alive.get(i)
        sums.append(zero if a is None else (a > 0).sum().to(like.dtype))
        if a is not None:
            units[i] = a.numel()
    return torch.stack(sums), consts.array(units, like.dtype)


def combine(raw: torch.Tensor, alive: torch.Tensor, units: torch.Tensor) -> torch.Tensor:
    """The sampled metrics (``activations.SAMPLED_METRICS``) from :meth:`StepSums.raw` sums,
    per layer.

    Args:
        raw: ``(..., RAW_ROWS, layers)`` sums (of one process, or added over processes).
        alive: ``(..., layers)`` units positive at least once.
        units: ``(..., layers)`` units per layer, NaN where not measured.

    Returns:
        ``(..., 6, layers)``: act_mean, act_std, act_saturated, act_dead, out_grad_norm,
        act_between_inputs.
    """

    def row(k: int) -> torch.Tensor:
        return raw[..., k, :]

    act_rows = row(_COUNT + ACT) > 0

    def used(k: int) -> torch.Tensor:
        # A layer's metrics describe its activation's outputs where it has one, else its own.
        return torch.where(act_rows, row(_PER_SOURCE * ACT + k), row(_PER_SOURCE * RAW + k))

    count = torch.where(act_rows, row(_COUNT + ACT), row(_COUNT + RAW))
    nan = torch.full_like(count, math.nan)
    cnt = torch.where(count > 0, count, nan)
    total, total_sq, sat, common, offset = (used(k) for k in range(_PER_SOURCE))
    has_sat = torch.where(act_rows, row(_HAS_SAT + ACT), row(_HAS_SAT + RAW)) > 0
    mean = total / cnt
    std = (total_sq / cnt - mean.square()).clamp_min(0).sqrt()
    saturated = torch.where(has_sat, sat / cnt, nan)
    dead = 1.0 - alive / units
    out_grad = torch.where(row(_HAS_OG) > 0, row(OUT_GRAD_ROW).sqrt(), nan)
    # The share of the variance that lies between inputs; NaN where not measured (and for a
    # constant output, which has no variance to share). Clamped against rounding.
    between = (total_sq - common).clamp_min(0)
    centred = (total_sq - offset).clamp_min(0)
    varied = torch.where(centred > 0, (between / centred).clamp_max(1), nan)
    return torch.stack([mean, std, saturated, dead, out_grad, varied], dim=-2)
