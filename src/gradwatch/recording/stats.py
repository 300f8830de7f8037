"""On-device statistic kernels: few fused kernels, no host synchronisation.

Everything here returns device tensors. The caller writes them into the step buffer; the
only transfer to the host happens when the buffer is flushed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import NamedTuple

import torch

from .._ops import foreach_norms, stack_float32

_INF = math.inf

#: Activations whose outputs are never negative (batch_moments reads their alive units off
#: per-unit sums).
NONNEGATIVE = frozenset({"ReLU", "ReLU6"})

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


# Per-tensor reductions on CPU go through BLAS ``dot`` when they can: over the 98 gradients
# of benchmark W1 a ``dot`` loop took 0.45-0.50 ms where ``torch._foreach_norm`` (a per-tensor
# loop on CPU) took 0.92 ms. Accelerators keep the fused multi-tensor ``_foreach_norm``.
_DOT_DTYPES = (torch.float32, torch.float64)

# Below this many elements a reduction finishes faster on one thread than on several: with 2
# threads, the sum of a 128x256 activation took 11.8 us against 3.6 us on one, and W1's 50
# layers of activation statistics 3.1 ms against 1.7 ms.
SMALL_NUMEL = 1 << 18


def _dot_able(t: torch.Tensor) -> bool:
    return t.device.type == "cpu" and t.dtype in _DOT_DTYPES and t.is_contiguous()


def sum_squares(t: torch.Tensor) -> torch.Tensor:
    """sum(t**2) as a 0-d tensor (float32 for half-precision inputs, else t's dtype)."""
    if _dot_able(t):
        v = t if t.dim() == 1 else t.view(-1)  # a view is one more dispatcher call
        return torch.dot(v, v)
    return torch.linalg.vector_norm(t, dtype=accumulation_dtype(t)).square()


def sums_of_squares(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """sum(t**2) of each tensor, as one float32 vector on their common device.

    No host sync. On CPU one BLAS ``dot`` per tensor; elsewhere one fused
    ``torch._foreach_norm`` per dtype group (the approach of ``clip_grad_norm_``).
    """
    if not tensors:
        return torch.zeros(0)
    if tensors[0].device.type == "cpu":
        return stack_float32([sum_squares(t) for t in tensors])
    return foreach_norms(tensors).square()


def sums_of_squares_and_max_abs(
    tensors: Sequence[torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum(t**2), max|t|) of each tensor as two float32 vectors; max is NaN where t has a NaN.

    On CPU both reductions of a tensor run back to back, while it is still in cache.
    ``aminmax`` takes max |t| in one pass: ``torch._foreach_norm(ord=inf)`` is ~10x slower on
    CPU (measured: 11 ms vs 1.2 ms over the 50x256x256 gradients of benchmark W1).
    """
    if not tensors:
        return torch.zeros(0), torch.zeros(0)
    if tensors[0].device.type != "cpu":
        return foreach_norms(tensors).square(), foreach_norms(tensors, _INF)
    sq, lows, highs = [], [], []
    for t in tensors:
        sq.append(sum_squares(t))
        lo, hi = torch.aminmax(t) if t.numel() else (t.new_zeros(()), t.new_zeros(()))
        lows.append(lo)
        highs.append(hi)
    return stack_float32(sq), torch.maximum(stack_float32(highs), -stack_float32(lows))


class OneThread:
    """Run a few small reductions on one intra-op thread, then restore the thread count.

    Only with the OpenMP backend, where switching costs ~0.5 us; PyTorch's native thread pool
    refuses a new thread count once parallel work has started, so there this does nothing.
    """

    _usable: bool | None = None

    def __init__(self) -> None:
        self._restore = 0

    @classmethod
    def usable(cls) -> bool:
        if cls._usable is None:
            cls._usable = "parallel backend: OpenMP" in torch.__config__.parallel_info()
        return cls._usable

    def __enter__(self) -> OneThread:
        n = torch.get_num_threads()
        if n > 1 and self.usable():
            torch.set_num_threads(1)
            self._restore = n
        return self

    def __exit__(self, *exc: object) -> None:
        if self._restore:
            torch.set_num_threads(self._restore)
            self._restore = 0


def count_nonfinite(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """Exact count of non-finite entries of each tensor (float32 vector)."""
    return torch.stack([(~torch.isfinite(t)).sum().to(torch.float32) for t in tensors])


def count_below(
    tensors: Sequence[torch.Tensor],
    thresholds: Sequence[torch.Tensor | float],
    scratch: Scratch,
) -> torch.Tensor:
    """Count of entries with ``|t| < threshold`` of each tensor (float32 vector), no sync.

    ``|t|`` goes into a reused buffer and is compared in place: half the time of
    ``(t.abs() < thr).sum()``, which allocates two temporaries (measured over W1's gradients
    on CPU: 5.8 ms against 10.4 ms; a sum of squares of the same gradients takes 1.9 ms).
    """
    counts = []
    for t, thr in zip(tensors, thresholds, strict=True):
        exact = torch.float32 if t.numel() < 2**24 else torch.float64
        if not t.is_contiguous():
            counts.append((t.abs() < thr).sum(dtype=exact))
            continue
        tmp = scratch.like(t)
        torch.abs(t.view(-1), out=tmp)
        counts.append(tmp.lt_(thr).sum(dtype=exact))
    return stack_float32(counts)


def accumulation_dtype(t: torch.Tensor) -> torch.dtype | None:
    """float32 for half-precision tensors (3 significant digits would not do), else None."""
    return torch.float32 if t.dtype in (torch.float16, torch.bfloat16) else None


class Scratch:
    """One reusable flat buffer for temporaries, grown on demand up to ``max_numel`` elements.

    A fresh 128 KB temporary per activation cost ~40 us on CPU (glibc hands blocks of that
    size out with mmap, so every one page-faults), and a fresh multi-MB stack of W1's 49
    activations took ~18 ms against ~2 ms in a reused buffer. Requests above ``max_numel``
    get a fresh tensor, so what stays allocated between steps is bounded.
    """

    def __init__(self, max_numel: int = SMALL_NUMEL) -> None:
        self._max_numel = max_numel
        self._buf: torch.Tensor | None = None
        self._slices: dict[int, torch.Tensor] = {}  # buf[:n], made once per n

    def get(self, n: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """A flat tensor of n elements whose contents are undefined."""
        if n > self._max_numel:
            return torch.empty(n, dtype=dtype, device=device)
        buf = self._buf
        if buf is None or buf.numel() < n or buf.dtype != dtype or buf.device != device:
            buf = torch.empty(max(n, 4096), dtype=dtype, device=device)
            self._buf = buf
            self._slices = {}
        view = self._slices.get(n)
        if view is None:
            view = self._slices[n] = buf[:n]
        return view

    def like(self, y: torch.Tensor) -> torch.Tensor:
        """A flat tensor with y's numel, dtype and device whose contents are undefined."""
        return self.get(y.numel(), y.dtype, y.device)


class FlatViews:
    """1-D views of a list of tensors (parameters), remade only when one's storage moved.

    A sampled step reads each weight twice (its norm, then the update) and each view is one
    more dispatcher call (~1-2 us on CPU): W1's 98 weights cost ~400 of them per sampled
    step. ``data_ptr()`` is a host read, no dispatch; a parameter whose ``.data`` was
    replaced gets a new view.
    """

    def __init__(self) -> None:
        self._ptrs: list[int] = []
        self._views: list[torch.Tensor] = []

    def __call__(self, tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        ptrs = [t.data_ptr() for t in tensors]
        if ptrs != self._ptrs or any(
            v.numel() != t.numel() for v, t in zip(self._views, tensors, strict=True)
        ):
            self._views = [t.view(-1) if t.is_contiguous() else t for t in tensors]
            self._ptrs = ptrs
        return self._views


@dataclass
class ActivationAccumulator:
    """Running sums over every forward of one layer within one sampled step.

    Mean and std come from sum and sum of squares (about 20x cheaper on CPU than
    ``torch.std_mean``). Small tensors are reduced on one thread (see ``SMALL_NUMEL``).
    """

    total: torch.Tensor | None = None
    total_sq: torch.Tensor | None = None
    count: int = 0
    saturated: torch.Tensor | None = None
    alive: torch.Tensor | None = None  # bool per unit: positive at least once
    common: torch.Tensor | None = None  # Moments.common, added over forwards
    offset: torch.Tensor | None = None  # Moments.offset, added over forwards
    out_grad_sq: torch.Tensor | None = None

    def add_output(
        self,
        y: torch.Tensor,
        act_type: str | None,
        kind: str | None,
        unit_dim: int,
        scratch: Scratch | None = None,
    ) -> None:
        """Reduce one output now (the path for a tensor that is not stashed)."""
        y = y.detach()
        n = y.numel()
        if n == 0:
            return
        with OneThread() if n <= SMALL_NUMEL else nullcontext():
            ys = y.unsqueeze(0)  # a batch of one: the same reductions as for stacked outputs
            tmp = scratch.like(y).view(ys.shape) if scratch is not None else None
            m = batch_moments(ys, act_type, kind, unit_dim, tmp)
            self.add_moments(m.first(), n)

    def add_moments(self, m: Moments, count: int) -> None:
        """Add the reductions of one output (computed alone or in a batch)."""
        self.total = _add(self.total, m.total)
        self.total_sq = _add(self.total_sq, m.total_sq)
        self.count += count
        self.saturated = _add(self.saturated, m.saturated)
        self.common = _add(self.common, m.common)
        self.offset = _add(self.offset, m.offset)
        if m.alive is not None:
            if self.alive is None or self.alive.shape != m.alive.shape:
                self.alive = m.alive
            else:
                self.alive = self.alive | m.alive

    def add_out_grad(self, g: torch.Tensor) -> None:
        g = g.detach()
        with OneThread() if g.numel() <= SMALL_NUMEL else nullcontext():
            self.out_grad_sq = _add(self.out_grad_sq, sum_squares(g))


def _add(a: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor | None:
    """a + b where both are measured, else whichever is."""
    return b if a is None else a if b is None else a + b


class Moments(NamedTuple):
    """The reductions of k stacked outputs (each a vector over the k outputs).

    ``common`` is ``N * |m|**2`` for the per-unit means ``m`` over the output's N inputs
    (the positions of every dimension but the unit's: samples, tokens, pixels), ``offset``
    ``numel * mean**2``. ``total_sq - common`` sums each unit's squared deviations from its
    mean over the inputs, ``total_sq - offset`` the squared deviations from the output's
    mean; their ratio is the share of the output's variance that differs from input to
    input (the rest is a pattern over the units that every input shares): 0 when every
    input gives the same output. An output with fewer than 2 dimensions or one input per
    unit has nothing to vary: both are its ``total_sq``, so it adds 0 to either sum. All
    three are sums over outputs and ranks; the differences are taken once, at the flush
    (``sampled.combine``).
    """

    total: torch.Tensor
    total_sq: torch.Tensor
    saturated: torch.Tensor | None  # count of saturated entries (saturating activations)
    alive: torch.Tensor | None  # per unit, positive at least once (ReLU-like)
    common: torch.Tensor
    offset: torch.Tensor

    def first(self) -> Moments:
        """The reductions of the first output alone."""
        return Moments(
            self.total[0],
            self.total_sq[0],
            None if self.saturated is None else self.saturated[0],
            None if self.alive is None else self.alive[0],
            self.common[0],
            self.offset[0],
        )


def batch_moments(
    ys: torch.Tensor,
    act_type: str | None,
    kind: str | None,
    unit_dim: int,
    tmp: torch.Tensor | None = None,
) -> Moments:
    """Reductions of k same-shaped outputs stacked as ``ys`` (k, ...), in a few kernels.

    Returns per output: sum, sum of squares, saturated count (saturating activations),
    per-unit "positive at least once" (ReLU-like) and the sums of squares of the per-unit
    and overall means (:class:`Moments`), as :meth:`ActivationAccumulator.add_output`
    computes for one.
    ``tmp``, shaped like ``ys``, takes the one elementwise temporary. The sum is read off
    the per-unit sums, which the between-inputs part needs: summing to one value per unit
    costs as much as summing to one value per output (16 x 128 x 256 floats on this CPU:
    0.020 ms against 0.018 ms).
    """
    rest = tuple(range(1, ys.dim()))
    acc = accumulation_dtype(ys)
    unit = unit_dim % (ys.dim() - 1) + 1 if ys.dim() >= 3 else None
    over = tuple(d for d in rest if d != unit)
    per_unit = ys.sum(dim=over, dtype=acc) if unit is not None else None
    total = per_unit.sum(dim=-1) if per_unit is not None else ys.sum(dim=rest, dtype=acc)
    bounds = SATURATION_BOUNDS.get(act_type or "") if kind == "saturating" else None
    sat = alive = None
    if bounds is not None:
        lo, hi = bounds
        mid, half = (lo + hi) / 2, (hi - lo) / 2
        if tmp is None:
            tmp = torch.empty_like(ys)
        exact = torch.float32 if ys[0].numel() < 2**24 else torch.float64
        if not mid and acc is None:
            # Symmetric bounds (tanh): y**2 gives the sum of squares and, compared in place
            # with half**2, the saturated units: one pass over the outputs fewer than a norm
            # and |y| (W1's 49 tanh outputs: 1.37 ms against 1.73 ms, cold caches).
            sq = torch.square(ys, out=tmp)
            total_sq = sq.sum(dim=rest)
            sat = sq.gt_(half * half).sum(dim=rest, dtype=exact)
        else:
            total_sq = torch.linalg.vector_norm(ys, dim=rest, dtype=acc).square()
            src = torch.sub(ys, mid, out=tmp) if mid else ys
            # |y - mid| > half as 0/1 in place, then a float sum (exact below 2^24 per
            # output): count_nonzero along dims measured ~10x slower on CPU.
            sat = torch.abs(src, out=tmp).gt_(half).sum(dim=rest, dtype=exact)
    else:
        total_sq = torch.linalg.vector_norm(ys, dim=rest, dtype=acc).square()
        if kind == "relu_like" and per_unit is not None:
            # Outputs >= 0: a unit is positive at least once exactly when its sum is
            # positive (a sum of non-negative floats is 0 only if all are), so the per-unit
            # sums give the alive flags: one pass fewer than sum + amax (ResNet-50's ReLU
            # outputs, 8 x 256 x 56 x 56: 0.30 ms against 0.45 + 0.42 ms on this CPU).
            alive = per_unit > 0 if act_type in NONNEGATIVE else ys.amax(dim=over) > 0
        elif kind == "relu_like":
            alive = ys > 0
    numel = ys[0].numel()
    inputs = numel // per_unit.shape[-1] if per_unit is not None and per_unit.shape[-1] else 0
    if per_unit is None or inputs < 2:
        return Moments(total, total_sq, sat, alive, total_sq, total_sq)
    # Five small ops on k-vectors; the differences wait for the flush (one op for the window).
    common = per_unit.square().sum(dim=-1).div_(inputs)
    return Moments(total, total_sq, sat, alive, common, total.square().div_(numel))


# Same-shaped outputs are stacked in chunks of at most this many bytes.
STACK_BYTES = 8 * 2**20
