"""Find the torch optimizer inside a framework's wrapper, so its step hooks can be used.

Frameworks hand callbacks a wrapper, not the optimizer: accelerate's ``AcceleratedOptimizer``
(which subclasses ``torch.optim.Optimizer`` without running its ``__init__``, so it has no
step hooks of its own), Lightning's ``LightningOptimizer``. Each keeps the optimizer it wraps
in ``.optimizer``; the optimizer that really steps is at the end of that chain, and its step
hooks fire whichever wrapper calls it. Also: the learning rate a step uses.
"""

from __future__ import annotations

import math
from typing import Any

import torch

# A chain longer than this is a cycle (a wrapper whose `.optimizer` leads back to itself).
_MAX_DEPTH = 8


def _has_step_hooks(optimizer: Any) -> bool:
    # Optimizer.__init__ creates these; a subclass that skipped it cannot take step hooks.
    return isinstance(optimizer, torch.optim.Optimizer) and hasattr(
        optimizer, "_optimizer_step_pre_hooks"
    )


def unwrap_optimizer(optimizer: Any) -> torch.optim.Optimizer:
    """The ``torch.optim.Optimizer`` that ``optimizer`` is or wraps (through ``.optimizer``).

    Args:
        optimizer: A torch optimizer, or a wrapper such as accelerate's
            ``AcceleratedOptimizer`` or Lightning's ``LightningOptimizer``.

    Raises:
        TypeError: When no torch optimizer with step hooks is found, naming the type met.

    Example:
        >>> import torch
        >>> opt = torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=0.1)
        >>> class Wrapper:
        ...     def __init__(self, optimizer): self.optimizer = optimizer
        >>> unwrap_optimizer(Wrapper(opt)) is opt
        True
    """
    seen = [type(optimizer).__name__]
    current = optimizer
    # Innermost first: LightningOptimizer is itself an instance of the optimizer's class
    # (sharing its hook dicts), yet the optimizer that steps is the one it holds.
    for _ in range(_MAX_DEPTH):
        inner = getattr(current, "optimizer", None)
        if inner is None or inner is current:
            break
        if not (isinstance(inner, torch.optim.Optimizer) or hasattr(inner, "optimizer")):
            break  # an attribute that happens to be called `optimizer`
        current = inner
        seen.append(type(current).__name__)
    if _has_step_hooks(current):
        return current
    chain = " -> ".join(seen)
    raise TypeError(
        f"Expected argument `optimizer` to be a torch.optim.Optimizer, or a wrapper that keeps "
        f"one in `.optimizer` (accelerate's AcceleratedOptimizer, Lightning's "
        f"LightningOptimizer), but got {type(optimizer).__name__} (followed: {chain}). Pass "
        "the torch optimizer that steps the model's parameters."
    )


def group_rate(group: dict[str, Any]) -> float | torch.Tensor | None:
    """One parameter group's learning rate: a float, a one-element tensor on an accelerator
    as it is (reading it would sync; a CPU one is read), or None where the group holds no
    number (HF's Adafactor with ``relative_step`` computes its own)."""
    lr = group.get("lr")
    if type(lr) is float:  # (the usual case first: ~0.2 us a group)
        return lr
    if isinstance(lr, torch.Tensor):
        if lr.numel() != 1:
            return None
        if lr.device.type != "cpu":
            return lr
        lr = lr.item()
    if not isinstance(lr, (int, float)) or isinstance(lr, bool):
        return None
    return float(lr)


def learning_rate(optimizer: Any) -> float | torch.Tensor | None:
    """The largest learning rate over ``optimizer``'s parameter groups, as its next step uses it.

    The largest, since groups scheduled together (weight decay or not, layer-wise decay) keep
    their ratios. A one-element tensor on an accelerator (a ``capturable`` optimizer's) is
    returned as it is, to be read at the flush: reading it now would sync. ``None`` when no
    group holds a number (:func:`group_rate`) or there is no optimizer.
    """
    best: float | None = None
    for group in getattr(optimizer, "param_groups", ()):  # (None: a watch stepped by hand)
        lr = group_rate(group)
        if isinstance(lr, torch.Tensor):
            return lr
        if lr is not None and math.isfinite(lr) and (best is None or lr > best):
            best = lr
    return best
