"""Tensor kernels shared by recording and the remedies: norms of many tensors at once.

A leaf module (it imports nothing of gradwatch), so both the recorder and the clippers use
one definition of "the norm of each tensor" with the same grouping and the same precision.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

_HALF = (torch.float16, torch.bfloat16)


def group_by_device_dtype(
    tensors: Sequence[torch.Tensor],
) -> dict[tuple[torch.device, torch.dtype], list[int]]:
    """Indices of ``tensors`` grouped by (device, dtype): the unit a ``torch._foreach_*``
    kernel accepts. Groups keep the order of first appearance."""
    groups: dict[tuple[torch.device, torch.dtype], list[int]] = {}
    for i, t in enumerate(tensors):
        groups.setdefault((t.device, t.dtype), []).append(i)
    return groups


def stack_float32(values: Sequence[torch.Tensor]) -> torch.Tensor:
    """Stack 0-d tensors into one float32 vector (casting only when needed)."""
    if all(v.dtype == torch.float32 for v in values):
        return torch.stack(list(values))
    return torch.stack([v.to(torch.float32) for v in values])


def _foreach_norm(tensors: list[torch.Tensor], ord: float) -> Sequence[torch.Tensor]:
    # Half-precision norms accumulate in float32: a bf16 result has 3 significant digits.
    if tensors[0].dtype in _HALF:
        return torch._foreach_norm(tensors, ord, dtype=torch.float32)
    return torch._foreach_norm(tensors, ord)


def foreach_norms(
    tensors: Sequence[torch.Tensor], ord: float = 2.0, *, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """The ``ord``-norm of each tensor, as one vector of ``dtype`` on the first tensor's device.

    One ``torch._foreach_norm`` per (device, dtype) group, as ``clip_grad_norm_`` does: one
    fused kernel per group on accelerators, one result tensor, no host sync. Half-precision
    tensors are reduced in float32.

    Example:
        >>> foreach_norms([torch.ones(4), torch.full((2,), 3.0)]).tolist()
        [2.0, 4.242640495300293]
    """
    if not tensors:
        return torch.zeros(0, dtype=dtype)
    return torch.stack(_norm_list(tensors, (ord,), dtype)).to(dtype)


def foreach_norm_rows(
    tensors: Sequence[torch.Tensor],
    ords: Sequence[float],
    *,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """``(len(ords), len(tensors))``: row ``r`` holds the ``ords[r]``-norm of each tensor, as
    :func:`foreach_norms` computes it; one stack for every row (a kernel per row fewer).

    Example:
        >>> rows = foreach_norm_rows([torch.ones(4), torch.full((2,), -3.0)], (2.0, float("inf")))
        >>> rows.tolist()
        [[2.0, 4.242640495300293], [1.0, 3.0]]
    """
    if not tensors:
        return torch.zeros(len(ords), 0, dtype=dtype)
    rows = torch.stack(_norm_list(tensors, ords, dtype)).to(dtype)
    return rows.view(len(ords), len(tensors))


def _norm_list(
    tensors: Sequence[torch.Tensor], ords: Sequence[float], dtype: torch.dtype
) -> list[torch.Tensor]:
    """The 0-d norms of every tensor for each of ``ords`` in turn, on the first tensor's
    device: in ``dtype`` where the tensors are of several groups, else as the kernel gives
    them (the caller casts the stacked vector: one kernel, not one per tensor)."""
    first = tensors[0]
    if all(t.dtype == first.dtype and t.device == first.device for t in tensors):
        return [v for o in ords for v in _foreach_norm(list(tensors), o)]  # (cast stacked)
    n = len(tensors)
    out: list[torch.Tensor] = [first] * (len(ords) * n)  # placeholders, all overwritten
    for idx in group_by_device_dtype(tensors).values():
        for r, o in enumerate(ords):
            for i, v in zip(idx, _foreach_norm([tensors[i] for i in idx], o), strict=True):
                out[r * n + i] = v.to(first.device, dtype)
    return out
