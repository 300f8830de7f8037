"""Residual (skip) connections around the shape-preserving blocks of sequential stacks.

A block ``f`` (e.g. ``Linear(d, d) -> activation [-> norm]``) becomes ``x + scale * f(x)``
(He et al. 2016). The identity path carries the gradient past every block unchanged, so
the gradient reaching the first layers no longer is a product of many small factors.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from ._blocks import Unit, describe_children, find_stacks
from ._common import UnsupportedModelError, copy_model

__all__ = ["Residual", "add_residual"]


class Residual(nn.Module):
    """``x + scale * block(x)``; ``block`` must keep the shape of its input.

    Example:
        >>> r = Residual(nn.Sequential(nn.Linear(3, 3), nn.Tanh()), scale=0.5)
        >>> r(torch.zeros(2, 3)).shape
        torch.Size([2, 3])
    """

    def __init__(self, block: nn.Module, scale: float = 1.0) -> None:
        super().__init__()
        self.block = block
        self.scale = float(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.scale * self.block(x)

    def extra_repr(self) -> str:
        return f"scale={self.scale}"


def _groups(units: list[Unit], block_size: int) -> list[list[Unit]]:
    """Consecutive preserving units, cut into groups of at most ``block_size``."""
    groups: list[list[Unit]] = []
    for u in units:
        if groups and groups[-1][-1].stop == u.start and len(groups[-1]) < block_size:
            groups[-1].append(u)
        else:
            groups.append([u])
    return groups


def add_residual(model: nn.Module, *, scale: float = 1.0, block_size: int = 1) -> nn.Module:
    """A copy of ``model`` whose shape-preserving blocks are wrapped as residual blocks.

    In every ``nn.Sequential`` (nested ones included), each run of shape-preserving units
    (a ``Linear(d, d)`` or stride-1 same-padded ``Conv(c, c)`` with the activations, norms
    and dropout after it) is cut into groups of ``block_size`` units, and each group
    ``f`` becomes ``Residual(f, scale)``: ``x + scale * f(x)``. Weights are copied
    unchanged and no parameter is added; state-dict keys of wrapped layers move
    under the block (``2.weight`` becomes ``2.block.2.weight``; a unit that is a single
    nested Sequential ``2.0.weight`` becomes ``2.block.0.weight``).

    Args:
        model: The model; it is not modified.
        scale: Weight of the residual branch (below 1, e.g. ``1/sqrt(depth)``, keeps the
            forward signal from growing with depth).
        block_size: Units per residual block (2 gives the two-layer blocks of ResNets).

    Raises:
        UnsupportedModelError: No shape-preserving block in any ``nn.Sequential``.

    Example:
        >>> m = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(),
        ...                   nn.Linear(8, 1))
        >>> type(add_residual(m)[2]).__name__
        'Residual'
    """
    if not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"expected `block_size` to be an int >= 1 but got {block_size!r}")
    if not isinstance(scale, (int, float)):
        raise TypeError(f"expected `scale` to be a number but got {type(scale).__name__}")
    new = copy_model(model)
    wrapped = 0
    for stack in find_stacks(new):
        groups = _groups(stack.preserving_units, block_size)
        if not groups:
            continue
        children = list(stack.module.named_children())
        starts = {g[0].start: g for g in groups}
        out: OrderedDict[str, nn.Module] = OrderedDict()
        i = 0
        while i < len(children):
            if i in starts:
                g = starts[i]
                stop = g[-1].stop
                members = children[i:stop]
                inner = members[0][1] if len(members) == 1 else nn.Sequential(OrderedDict(members))
                out[members[0][0]] = Residual(inner, scale)
                wrapped += 1
                i = stop
            else:
                out[children[i][0]] = children[i][1]
                i += 1
        stack.module._modules = out
    if wrapped == 0:
        raise UnsupportedModelError(
            f"no shape-preserving block to wrap in {type(model).__name__} (modules: "
            f"{describe_children(model)}). A residual connection x + f(x) needs f to keep the "
            "shape: supported are nn.Linear(d, d) and stride-1 'same'-padded nn.Conv(c, c) "
            "(with the activations/norms/dropout after them) inside an nn.Sequential."
        )
    return new
