"""Per-layer sums of one sampled step, combined into the activation metrics in a few kernels.

Outputs come from two sources per layer: the layer's own output ("raw") and the output of the
activation that follows it ("act"); a layer's activation statistics describe the activation
when it has one, else its own output. Contributions arrive as vectors over a batch of layers
(``add_batch``, ``add_out_grads``) or one layer at a time (``add_accumulator``, for outputs
reduced in their hook), and ``metrics`` turns them into act_mean, act_std, act_saturated,
act_dead and out_grad_norm for every layer at once.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .stats import ActivationAccumulator

RAW, ACT = 0, 1


class LayerIndex:
    """Device tensors of layer indices, built once per distinct list and reused.

    ``torch.tensor(..., device="cuda")`` synchronises with the host; the lists of layers in a
    batch repeat from one sampled step to the next, so each is copied to the device once.
    """

    def __init__(self, device: torch.device) -> None:
        self._device = device
        self._cache: dict[tuple[int, ...], torch.Tensor] = {}

    def __call__(self, layers: tuple[int, ...]) -> torch.Tensor:
        idx = self._cache.get(layers)
        if idx is None:
            idx = torch.tensor(layers, dtype=torch.long).to(self._device)
            self._cache[layers] = idx
        return idx


class StepSums:
    """Running sums over every forward of a sampled step, per layer and source."""

    def __init__(
        self, n_layers: int, device: torch.device, dtype: torch.dtype, index: LayerIndex
    ) -> None:
        self.n = n_layers
        self._dtype = dtype
        self._index = index
        # rows: total, total of squares, saturated count, for RAW then ACT; then out-grad sq.
        self._sums = torch.zeros(7, n_layers, dtype=dtype, device=device)
        self.count = np.zeros((2, n_layers))
        self.has_sat = np.zeros((2, n_layers), dtype=bool)
        self.has_og = np.zeros(n_layers, dtype=bool)
        self.alive: dict[tuple[int, int], torch.Tensor] = {}

    def _row(self, src: int, k: int) -> torch.Tensor:
        return self._sums[3 * src + k]

    def add_batch(
        self,
        src: int,
        layers: tuple[int, ...],
        total: torch.Tensor,
        total_sq: torch.Tensor,
        *,
        count: int,
        saturated: torch.Tensor | None,
        alive: torch.Tensor | None,
    ) -> None:
        """Add the reductions of k outputs of equal size, one per entry of ``layers``."""
        idx = self._index(layers)
        self._row(src, 0).index_add_(0, idx, total.to(self._dtype))
        self._row(src, 1).index_add_(0, idx, total_sq.to(self._dtype))
        np.add.at(self.count[src], list(layers), count)
        if saturated is not None:
            self._row(src, 2).index_add_(0, idx, saturated.to(self._dtype))
            self.has_sat[src, list(layers)] = True
        if alive is not None:
            for j, i in enumerate(layers):
                self._add_alive(src, i, alive[j])

    def add_out_grads(self, layers: tuple[int, ...], sq: torch.Tensor) -> None:
        """Add sum((dL/d output)**2) of outputs of ``layers``."""
        self._sums[6].index_add_(0, self._index(layers), sq.to(self._dtype))
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
            if acc.alive is not None:
                self._add_alive(src, i, acc.alive)
        if acc.out_grad_sq is not None:
            self._sums[6, i] += acc.out_grad_sq.to(self._dtype)
            self.has_og[i] = True

    def _add_alive(self, src: int, i: int, alive: torch.Tensor) -> None:
        prev = self.alive.get((src, i))
        same = prev is not None and prev.shape == alive.shape
        self.alive[(src, i)] = prev | alive if same else alive  # type: ignore[operator]

    def metrics(self) -> torch.Tensor:
        """(5, layers): act_mean, act_std, act_saturated, act_dead, out_grad_norm (NaN where
        not measured), from the activation's outputs where a layer has one."""
        n = self.n
        use_act = self.count[ACT] > 0
        src = use_act.astype(int)
        count = np.where(use_act, self.count[ACT], self.count[RAW])
        has_sat = np.where(use_act, self.has_sat[ACT], self.has_sat[RAW])
        alive_sums: list[torch.Tensor] = []
        units = np.full(n, math.nan)
        if self.alive:
            zero = self._sums.new_zeros(())
            for i in range(n):
                a = self.alive.get((int(src[i]), i))
                alive_sums.append(zero if a is None else a.sum().to(self._dtype))
                if a is not None:
                    units[i] = a.numel()
        # The host-side bookkeeping goes to the device in one non-blocking copy.
        host = torch.tensor(
            np.stack([np.where(count > 0, count, math.nan), has_sat, units, self.has_og, use_act]),
            dtype=self._dtype,
        )
        cnt, has_sat_t, units_t, has_og_t, use_act_t = host.to(self._sums.device, non_blocking=True)
        act_rows = use_act_t > 0
        total = torch.where(act_rows, self._row(ACT, 0), self._row(RAW, 0))
        total_sq = torch.where(act_rows, self._row(ACT, 1), self._row(RAW, 1))
        sat = torch.where(act_rows, self._row(ACT, 2), self._row(RAW, 2))
        mean = total / cnt
        std = (total_sq / cnt - mean.square()).clamp_min(0).sqrt()
        nan = torch.full_like(mean, math.nan)
        saturated = torch.where(has_sat_t > 0, sat / cnt, nan)
        dead = 1.0 - torch.stack(alive_sums) / units_t if alive_sums else nan
        out_grad = torch.where(has_og_t > 0, self._sums[6].sqrt(), nan)
        return torch.stack([mean, std, saturated, dead, out_grad])
