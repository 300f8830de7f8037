"""On-device statistic kernels: few fused kernels, no host synchronisation.

Everything here returns device tensors. The caller writes them into the step buffer; the
only transfer to the host happens when the buffer is flushed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

_INF = math.inf

# A unit is "saturated" when the activation's derivative there is below ~12% of its maximum:
# sigmoid y(1-y) < 0.03*0.97 (y outside [0.03, 0.97]); tanh 1-y^2 < 1-0.97^2 (|y| > 0.97).
# The 0.97 bound follows SageMaker Debugger's tanh/sigmoid saturation rules.
SATURATION_BOUNDS: dict[str, tuple[float, float]] = {
    "Sigmoid": (0.03, 0.97),
    "Hardsigmoid": (1e-6, 1.0 - 1e-6),
    "Tanh": (-0.97, 0.97),
    "Softsign": (-0.97, 0.97),
    "Hardtanh": (-1.0 + 1e-6, 1.0 - 1e-6),
    "LogSigmoid": (-4.0, -0.02),  # log(sigmoid): derivative 1 - sigmoid(x) < 0.02 or > 0.98
}


def foreach_norms(tensors: Sequence[torch.Tensor], ord: float = 2.0) -> torch.Tensor:
    """Norm of each tensor, as one float32 (or float64) vector on their common device.

    One ``torch._foreach_norm`` per dtype group: one pass over memory, one result tensor,
    no host sync (the approach of ``torch.nn.utils.clip_grad_norm_``).
    """
    if not tensors:
        return torch.zeros(0)
    dtype = tensors[0].dtype
    if all(t.dtype == dtype for t in tensors):
        return torch.stack(list(_foreach_norm(list(tensors), ord, dtype)))
    out: list[torch.Tensor | None] = [None] * len(tensors)
    groups: dict[torch.dtype, list[int]] = {}
    for i, t in enumerate(tensors):
        groups.setdefault(t.dtype, []).append(i)
    for dt, idx in groups.items():
        norms = _foreach_norm([tensors[i] for i in idx], ord, dt)
        for i, n in zip(idx, norms, strict=True):
            out[i] = n.to(torch.float64 if dt == torch.float64 else torch.float32)
    return torch.stack([o for o in out if o is not None])


def _foreach_norm(
    tensors: list[torch.Tensor], ord: float, dtype: torch.dtype
) -> Sequence[torch.Tensor]:
    # Half-precision norms accumulate in float32: a bf16 result has 3 significant digits.
    if dtype in (torch.float16, torch.bfloat16):
        return torch._foreach_norm(tensors, ord, dtype=torch.float32)
    return torch._foreach_norm(tensors, ord)


def max_abs(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """max |t| of each tensor as a float32 vector (NaN if the tensor holds a NaN).

    One ``aminmax`` pass per tensor: on CPU ``torch._foreach_norm(ord=inf)`` is ~10x slower
    (measured: 11 ms vs 1.2 ms over the 50x256x256 gradients of benchmark W1).
    """
    pairs = [torch.aminmax(t) if t.numel() else (t.new_zeros(()), t.new_zeros(())) for t in tensors]
    lows = torch.stack([lo for lo, _ in pairs]).to(torch.float32)
    highs = torch.stack([hi for _, hi in pairs]).to(torch.float32)
    return torch.maximum(highs, -lows)


def count_nonfinite(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """Exact count of non-finite entries of each tensor (float32 vector)."""
    return torch.stack([(~torch.isfinite(t)).sum().to(torch.float32) for t in tensors])


def units_ever_positive(y: torch.Tensor, unit_dim: int) -> torch.Tensor:
    """Per unit (index along ``unit_dim``), whether any entry is positive over the batch.

    ``amax`` over the other dimensions reads the activation once and writes one value per
    unit; comparing the whole tensor first would write a bool copy of it.
    """
    if y.dim() < 2:
        return y > 0
    dim = unit_dim % y.dim()
    other = tuple(d for d in range(y.dim()) if d != dim)
    return y.amax(dim=other) > 0


def count_saturated(y: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """Number of entries outside the open interval (lo, hi), as a 0-d tensor."""
    mid, half = (lo + hi) / 2, (hi - lo) / 2
    # |y - mid| >= half, computed in place on one temporary: 3-4 kernels, one allocation.
    dist = y.abs() if mid == 0 else (y - mid).abs_()
    return torch.count_nonzero(dist.ge_(half))


@dataclass
class ActivationAccumulator:
    """Running sums over every forward of one layer within one sampled step.

    Mean and std come from sum and sum of squares (about 20x cheaper on CPU than
    ``torch.std_mean``); counts use ``count_nonzero`` (about 3x cheaper than ``.float().mean()``).
    """

    total: torch.Tensor | None = None
    total_sq: torch.Tensor | None = None
    count: int = 0
    saturated: torch.Tensor | None = None
    alive: torch.Tensor | None = None  # bool per unit: positive at least once
    kind: str | None = None
    out_grad_sq: torch.Tensor | None = None

    def add_output(
        self, y: torch.Tensor, act_type: str | None, kind: str | None, unit_dim: int
    ) -> None:
        y = y.detach()
        if y.numel() == 0:
            return
        s = y.sum(dtype=torch.float32)
        ss = torch.linalg.vector_norm(y, dtype=torch.float32).square()
        self.total = s if self.total is None else self.total + s
        self.total_sq = ss if self.total_sq is None else self.total_sq + ss
        self.count += y.numel()
        self.kind = kind
        if kind == "saturating" and act_type in SATURATION_BOUNDS:
            lo, hi = SATURATION_BOUNDS[act_type]
            sat = count_saturated(y, lo, hi)
            self.saturated = sat if self.saturated is None else self.saturated + sat
        elif kind == "relu_like":
            alive = units_ever_positive(y, unit_dim)
            if self.alive is None or self.alive.shape != alive.shape:
                self.alive = alive
            else:
                self.alive = self.alive | alive

    def add_out_grad(self, g: torch.Tensor) -> None:
        sq = torch.linalg.vector_norm(g.detach(), dtype=torch.float32).square()
        self.out_grad_sq = sq if self.out_grad_sq is None else self.out_grad_sq + sq
