"""Reduce depth: drop shape-preserving blocks from the middle of a sequential stack.

Fewer layers means fewer factors in the chain-rule product that shrinks (or grows) the
gradient on its way back to the first layer. Only shape-preserving blocks are dropped, so
the model still maps the same inputs to the same output shape; the input and output
layers and the blocks nearest to them are kept.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from ._blocks import describe_children, find_stacks
from ._common import UnsupportedModelError, copy_model

__all__ = ["reduce_depth"]


def reduce_depth(
    model: nn.Module, *, keep: int | None = None, drop: int | None = None
) -> nn.Module:
    """A copy of ``model`` with the middle shape-preserving blocks of its deepest stack dropped.

    The stack (``nn.Sequential``) with the most shape-preserving units (``Linear(d, d)`` +
    activation [+ norm, dropout]; see :func:`gradwatch.remedies.add_residual`) is chosen.
    Of its ``n`` such units, the first ``ceil(keep / 2)`` and the last ``floor(keep / 2)``
    stay and the ones in between go. The remaining weights are copied unchanged.

    Args:
        model: The model; it is not modified.
        keep: Shape-preserving units to keep (default ``n // 2``: half the depth).
        drop: Units to drop instead (``keep = n - drop``); give ``keep`` or ``drop``.

    Raises:
        UnsupportedModelError: No stack has a shape-preserving unit.
        ValueError: ``keep``/``drop`` out of range or both given.

    Example:
        >>> blocks = [m for _ in range(4) for m in (nn.Linear(8, 8), nn.Tanh())]
        >>> m = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), *blocks, nn.Linear(8, 1))
        >>> len(reduce_depth(m, keep=2))  # 11 modules, two Linear+Tanh blocks dropped
        7
    """
    if keep is not None and drop is not None:
        raise ValueError(f"give `keep` or `drop`, not both (got keep={keep}, drop={drop})")
    new = copy_model(model)
    stacks = [s for s in find_stacks(new) if s.preserving_units]
    if not stacks:
        raise UnsupportedModelError(
            f"no shape-preserving block to drop in {type(model).__name__} (modules: "
            f"{describe_children(model)}). Supported: nn.Linear(d, d) / same-padded "
            "nn.Conv(c, c) blocks inside an nn.Sequential."
        )
    stack = max(stacks, key=lambda s: len(s.preserving_units))
    units = stack.preserving_units
    n = len(units)
    if drop is not None:
        if not (isinstance(drop, int) and 1 <= drop <= n):
            raise ValueError(
                f"expected `drop` to be an int in [1, {n}] (the stack {stack.name or '<root>'!r}"
                f" has {n} shape-preserving blocks) but got {drop!r}"
            )
        keep = n - drop
    if keep is None:
        keep = n // 2
    if not (isinstance(keep, int) and 0 <= keep < n):
        raise ValueError(
            f"expected `keep` to be an int in [0, {n - 1}] (the stack "
            f"{stack.name or '<root>'!r} has {n} shape-preserving blocks) but got {keep!r}"
        )
    head = (keep + 1) // 2
    dropped = units[head : n - (keep - head)]
    gone = {i for u in dropped for i in range(u.start, u.stop)}
    stack.module._modules = OrderedDict(
        (name, child)
        for i, (name, child) in enumerate(stack.module.named_children())
        if i not in gone
    )
    return new
