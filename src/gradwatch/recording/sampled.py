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

from .stats import ActivationAccumulator, Moments, UnitMoments

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

    def segments(self, layers: tuple[int, ...], sizes: tuple[int, ...]) -> torch.Tensor:
        """The layer of each element of tensors of ``sizes`` elements, one per entry of
        ``layers``, flattened and concatenated (long, on the device)."""
        return self.repeat(layers, sizes, torch.long)

    def repeat(
        self, values: tuple[float, ...], sizes: tuple[int, ...], dtype: torch.dtype
    ) -> torch.Tensor:
        """Each of ``values`` repeated its entry of ``sizes`` times, concatenated (``dtype``,
        on the device)."""
        return self._get(
            ("repeat", values, sizes, dtype),
            lambda: torch.from_numpy(np.repeat(np.asarray(values), sizes)).to(dtype),
        )

    def layout(
        self,
        keys: tuple[tuple[int, tuple[int, ...], float], ...],
        norms: int,
        n: int,
        dtype: torch.dtype,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Where a step's contributions go in its flattened sums, and their scales.

        ``keys``: ``(row, layers, scale)`` per contribution, the first ``norms`` of them
        norms (squared after scaling, so they get the root of their scale). Returns the flat
        position (``row * n + layer``, long) and the factor (``dtype``) of each element of
        the contributions concatenated in that order.
        """

        index = self._get(
            ("layout", keys, n),
            lambda: torch.tensor(
                [row * n + i for row, layers, _ in keys for i in layers], dtype=torch.long
            ),
        )
        scale = self._get(
            ("scales", keys, norms, dtype),
            lambda: torch.tensor(
                [
                    math.sqrt(f) if k < norms else f
                    for k, (_, layers, f) in enumerate(keys)
                    for _ in layers
                ],
                dtype=dtype,
            ),
        )
        return index, scale

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
    """Running sums over every forward of a sampled step, per layer and source.

    Contributions are vectors over some layers, each meant for one row of the sums; they are
    kept as they come and added once, when the sums are read (:meth:`sums`): one
    concatenation, one multiply (the scales of :class:`~.stats.Moments`, and the cast to the
    sums' dtype), one in-place square of the vectors that are norms, and one ``index_add``
    into the flattened sums. Added a row at a time these were ten to twenty kernels per group
    of outputs; with the reductions giving norms and the alive units counted at once
    (:func:`count_alive`), W1's sampled step went from 74 to 41 operators on the accelerator
    path, ResNet-50's (4 x 64**2) from 635 to 160 (``benchmarks/sampled_step.py --device
    meta``).
    """

    def __init__(
        self, n_layers: int, device: torch.device, dtype: torch.dtype, consts: DeviceConstants
    ) -> None:
        self.n = n_layers
        self._dtype = dtype
        self._consts = consts
        # Rows (_SUM_ROWS): total, total of squares, saturated count, the squared per-unit
        # and overall means (stats.Moments; _PER_SOURCE rows), for RAW then ACT; then the
        # out-grad sum of squares. Made at the first read, from the contributions below.
        self._sums: torch.Tensor | None = None
        # (row, layers, scale) and the vector, for norms (squared when added) and for sums.
        self._norms: list[tuple[tuple[int, tuple[int, ...], float], torch.Tensor]] = []
        self._plain: list[tuple[tuple[int, tuple[int, ...], float], torch.Tensor]] = []
        self.count = np.zeros((2, n_layers))
        self.has_sat = np.zeros((2, n_layers), dtype=bool)
        self.has_og = np.zeros(n_layers, dtype=bool)
        self.alive: dict[tuple[int, int], torch.Tensor] = {}
        # Outputs reduced per unit in their hooks (accelerators), per source: folded into
        # the contributions above together, at the next read (_fold_units).
        self._units: tuple[list[tuple[int, UnitMoments]], ...] = ([], [])

    def _add(
        self,
        row: int,
        layers: tuple[int, ...],
        values: torch.Tensor,
        *,
        norm: bool = False,
        scale: float = 1.0,
    ) -> None:
        """Add ``scale * values`` (``scale * values**2`` for a ``norm``) to ``row`` of
        ``layers``, at the next read."""
        (self._norms if norm else self._plain).append(((row, layers, scale), values))

    def add_batch(
        self,
        src: int,
        layers: tuple[int, ...],
        m: Moments,
        *,
        count: int,
    ) -> None:
        """Add the reductions of k outputs of ``count`` elements, one per entry of ``layers``."""
        base = _PER_SOURCE * src
        self._add(base, layers, m.total)
        self._add(base + 1, layers, m.total_sq, norm=m.rooted)
        if m.saturated is not None:
            self._add(base + 2, layers, m.saturated)
            self.has_sat[src, list(layers)] = True
        if m.varies:
            assert m.unit_norm is not None
            self._add(base + 3, layers, m.unit_norm, norm=True, scale=1.0 / m.inputs)
            self._add(base + 4, layers, m.total, norm=True, scale=1.0 / m.numel)
        else:  # nothing varies between inputs: both differences are 0
            self._add(base + 3, layers, m.total_sq, norm=m.rooted)
            self._add(base + 4, layers, m.total_sq, norm=m.rooted)
        np.add.at(self.count[src], list(layers), count)
        if m.alive is not None:
            for j, i in enumerate(layers):
                self._add_alive(src, i, m.alive[j])

    def add_out_grads(
        self, layers: tuple[int, ...], values: torch.Tensor, *, norm: bool = False
    ) -> None:
        """Add sum((dL/d output)**2) of outputs of ``layers`` (given as the norms, ``norm``)."""
        self._add(OUT_GRAD_ROW, layers, values, norm=norm)
        self.has_og[list(layers)] = True

    def add_accumulator(self, src: int, i: int, acc: ActivationAccumulator) -> None:
        """Add what was reduced in a hook (outputs over the stash budget)."""
        for m in acc.outputs:
            self.add_batch(src, (i,), m, count=m.numel)
        self._units[src].extend((i, u) for u in acc.units)
        for value, norm in acc.out_grads:
            self.add_out_grads((i,), value, norm=norm)

    def _add_alive(self, src: int, i: int, alive: torch.Tensor) -> None:
        prev = self.alive.get((src, i))
        same = prev is not None and prev.shape == alive.shape
        self.alive[(src, i)] = prev | alive if same else alive  # type: ignore[operator]

    def _fold_units(self) -> None:
        """Turn the step's outputs reduced per unit (:class:`~.stats.UnitMoments`) into
        contributions, all of a source at once (~12 kernels however many outputs; as
        :class:`~.stats.Moments` they were 5 each): per unit the sum ``N * mean``, the sum of
        squares ``N * (var + mean**2)`` and the square of the sum over N (``N * mean**2``,
        the part common to all inputs), added per output by one ``index_add``; the offset
        ``total**2 / numel``; the alive flags ``mean > 0``, one comparison sliced per
        output."""
        for src, items in enumerate(self._units):
            if not items:
                continue
            layers = tuple(i for i, _ in items)
            sizes = tuple(u.mean.numel() for _, u in items)
            mean = torch.cat([u.mean for _, u in items])
            var = torch.cat([u.var for _, u in items])
            inputs = self._consts.repeat(tuple(u.inputs for _, u in items), sizes, mean.dtype)
            sq_mean = mean.square()
            per_unit = torch.stack(
                [mean * inputs, torch.add(var, sq_mean).mul_(inputs), sq_mean.mul_(inputs)]
            )
            at = self._consts.segments(tuple(range(len(items))), sizes)
            folded = per_unit.new_zeros(3, len(items)).index_add_(1, at, per_unit)
            numel = np.array([u.numel for _, u in items], dtype=np.float64)
            offset = folded[0].square() * self._consts.array(1.0 / numel, folded.dtype)
            base = _PER_SOURCE * src
            for row, values in ((0, folded[0]), (1, folded[1]), (3, folded[2]), (4, offset)):
                self._add(base + row, layers, values)
            np.add.at(self.count[src], list(layers), numel)
            if any(u.alive for _, u in items):
                for (i, u), positive in zip(items, (mean > 0).split(sizes), strict=True):
                    if u.alive:
                        self._add_alive(src, i, positive)
            items.clear()

    def sums(self) -> torch.Tensor:
        """(_SUM_ROWS, layers): the contributions so far, added (once; later ones after)."""
        self._fold_units()
        if self._norms or self._plain:
            entries = self._norms + self._plain
            parts = [v if v.dim() == 1 else v.reshape(-1) for _, v in entries]
            keys = tuple(k for k, _ in entries)
            index, scale = self._consts.layout(keys, len(self._norms), self.n, self._dtype)
            added = torch.cat(parts) if len(parts) > 1 else parts[0]
            added = added * scale  # (a new tensor in the sums' dtype: squared in place below)
            rooted = sum(len(layers) for (_, layers, _), _ in self._norms)
            if rooted:
                added[:rooted].square_()
            base = self._sums if self._sums is not None else self._zeros()
            self._sums = base.view(-1).index_add(0, index, added).view(_SUM_ROWS, self.n)
            self._norms, self._plain = [], []
        return self._sums if self._sums is not None else self._zeros()

    def _zeros(self) -> torch.Tensor:
        return self._consts.array(np.zeros((_SUM_ROWS, self.n)), self._dtype)

    def raw(self) -> torch.Tensor:
        """(RAW_ROWS, layers): the step's sums and counts, which add up across processes.

        Rows: total, total of squares, saturated count, the squared per-unit and overall means
        (``stats.Moments``), for RAW then ACT, out-grad sum of squares, then the
        element counts (RAW, ACT) and the flags has_sat (RAW, ACT) and has_og as 0/1. The
        host-side bookkeeping goes to the device once per distinct value.
        """
        return torch.cat([self.sums(), self._host()])

    def _host(self, units: np.ndarray | None = None) -> torch.Tensor:
        """The host rows of :meth:`raw` (then ``units`` when given), on the device."""
        rows = [self.count, self.has_sat, self.has_og[None]]
        host = np.concatenate(rows if units is None else [*rows, units[None]])
        return self._consts.array(host, self._dtype)

    def alive_units(self) -> dict[int, torch.Tensor]:
        """Per layer, its "positive at least once" units from the source its metrics use."""
        self._fold_units()  # (the alive flags of outputs reduced per unit)
        use_act = self.count[ACT] > 0
        out = {}
        for i in range(self.n):
            a = self.alive.get((int(use_act[i]), i))
            if a is not None:
                out[i] = a
        return out

    def all_sums(self) -> torch.Tensor:
        """(WINDOW_ROWS, layers): :meth:`raw`, the units per layer and the units alive, what
        :func:`combine` needs, in one tensor."""
        alive_sum, units = count_alive(self.alive_units(), self.n, self._dtype, self._consts)
        return torch.cat([self.sums(), self._host(units), alive_sum[None]])


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
            stacked[:, :RAW_ROWS], stacked[:, RAW_ROWS + 1], stacked[:, RAW_ROWS]
        )

    @staticmethod
    def bytes_per_step(n_layers: int, dtype: torch.dtype) -> int:
        """Bytes kept per sampled step (a window's worth when every step is sampled)."""
        return WINDOW_ROWS * max(n_layers, 1) * dtype.itemsize


#: Sum rows per source (RAW, ACT) in :meth:`StepSums.raw`, then the out-grad row.
_PER_SOURCE = 5
OUT_GRAD_ROW = 2 * _PER_SOURCE
_SUM_ROWS = OUT_GRAD_ROW + 1
#: Rows of :meth:`StepSums.raw`, and of :meth:`StepSums.all_sums` (then units, units alive).
RAW_ROWS = _SUM_ROWS + 5
WINDOW_ROWS = RAW_ROWS + 2
_COUNT, _HAS_SAT, _HAS_OG = _SUM_ROWS, _SUM_ROWS + 2, _SUM_ROWS + 4


def count_alive(
    alive: dict[int, torch.Tensor], n: int, dtype: torch.dtype, consts: DeviceConstants
) -> tuple[torch.Tensor, np.ndarray]:
    """(units alive per layer, on the device; units per layer, on the host, NaN where none
    were seen) from per-unit flags (bool, or 0/1 sums over ranks).

    The flags of every layer are concatenated and counted by one ``index_add``: a count per
    layer was three kernels each (ResNet-50: ~150 of a sampled step's ~630 operators).
    """
    units = np.full(n, math.nan)
    if not alive:
        return consts.array(np.zeros(n), dtype), units
    layers = tuple(sorted(alive))
    sizes = tuple(alive[i].numel() for i in layers)
    units[list(layers)] = sizes
    parts = [alive[i].reshape(-1) for i in layers]
    flags = torch.cat(parts) if len(parts) > 1 else parts[0]
    ones = flags.to(dtype) if flags.dtype == torch.bool else (flags > 0).to(dtype)
    counts = consts.array(np.zeros(n), dtype).index_add(0, consts.segments(layers, sizes), ones)
    return counts, units


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
