"""A plain ``torch.optim.SGD`` step's update, read from the optimizer's own terms.

SGD moves each parameter by ``-lr * d``: ``d`` is the gradient when there is no momentum (and
no weight decay, which would add the old weights to it), and the momentum buffer after the
step otherwise (any weight decay and dampening; not Nesterov's, which adds the gradient
again). So ``||after - before||^2 = lr^2 ||d||^2``: one read of ``d`` after the step, and none
without momentum, where the sampled step's gradient pass has read it already. The general
way, a copy of the weights before the step compared with them after it, passes five times
over the parameters (copy, subtract, read; benchmark W1 on CPU: 1.3 ms of a 7.8 ms sampled
step, and a copy of every weight kept in memory).

The two agree up to the rounding of ``w - lr * d``: half a unit in the last place of each
weight, which float32 and float64 weights make negligible above an update ratio of ~1e-7
(what the snapshot measures below that is float32's resolution, not the step). Weights in a
lower precision keep the snapshot, since there rounding can swallow updates whole, which is
what the update ratio must show. One difference in a blow-up: ``||d||^2`` overflows float32
where ``||d|| > 1.8e19``, ``1/lr`` times sooner than the copy's ``||lr * d||^2``, so a step of
more than ``lr * 1.8e19`` reads infinite where the copy read it finite (the real corpus's
ResNet without normalisation, one step before its weights went NaN).

The copy is kept for optimizers of any other class (a subclass may change the step), Nesterov
momentum, weight decay without momentum, fused or differentiable SGD, groups that differ in
momentum, sharded parameters, and, on an accelerator, a learning rate held in a device tensor
(reading it would sync) or groups with different learning rates (their per-value factor would
be a host-to-device copy per sampled step).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .optimizers import group_rate

# The weights whose rounding the formula may ignore (above).
_EXACT_DTYPES = (torch.float32, torch.float64)


@dataclass(frozen=True)
class SgdStep:
    """How a plain SGD step moves the watched parameters."""

    momentum: bool  # d is the momentum buffer (else the gradient)
    lr: tuple[float, ...]  # per watched parameter (0: the optimizer does not hold it)

    def directions(
        self,
        optimizer: torch.optim.Optimizer,
        params: Sequence[torch.Tensor],
        positions: list[int],
    ) -> list[torch.Tensor]:
        """``d`` after the step of each parameter at ``positions`` (those with a gradient).

        Zeros for one the optimizer does not hold (it did not move), NaN for one it holds
        without a momentum buffer (its move is unknown: not after a real SGD step).
        """
        out = []
        for k in positions:
            p = params[k]
            if not self.momentum:
                d = p.grad if self.lr[k] else None
            else:
                d = optimizer.state.get(p, {}).get("momentum_buffer")
            if d is None:
                d = torch.zeros_like(p) if not self.lr[k] else torch.full_like(p, math.nan)
            out.append(d)
        return out

    def uniform_lr(self, positions: Iterable[int]) -> float | None:
        """The learning rate of every parameter at ``positions``, if they share one."""
        rates = {self.lr[k] for k in positions}
        return rates.pop() if len(rates) == 1 else None


def _group_momentum(group: dict[str, Any]) -> bool | None:
    """Whether the group's d is its momentum buffer; None where the formula does not hold."""
    if group.get("fused") or group.get("differentiable") or group.get("nesterov"):
        return None
    momentum, decay = group.get("momentum", 0), group.get("weight_decay", 0)
    if not isinstance(momentum, (int, float)) or not isinstance(decay, (int, float)):
        return None
    if momentum == 0 and decay != 0:
        return None  # d = g + decay * (old weights): the old weights would be needed
    return momentum != 0


def sgd_step(optimizer: Any, params: Sequence[torch.Tensor]) -> SgdStep | None:
    """How ``optimizer``'s next step moves ``params``, when it is a plain SGD step.

    None where the update must be measured from a copy of the weights (the module's
    docstring lists when).

    Example:
        >>> import torch
        >>> w = torch.nn.Parameter(torch.ones(3))
        >>> sgd_step(torch.optim.SGD([w], lr=0.1, momentum=0.9), [w])
        SgdStep(momentum=True, lr=(0.1,))
        >>> sgd_step(torch.optim.SGD([w], lr=0.1, weight_decay=1e-4), [w]) is None
        True
    """
    if type(optimizer) is not torch.optim.SGD:
        return None
    if any(p.dtype not in _EXACT_DTYPES for p in params):
        return None
    kinds: set[bool] = set()
    lr_of: dict[int, float] = {}
    for group in optimizer.param_groups:
        kind, lr = _group_momentum(group), group_rate(group)
        if kind is None or not isinstance(lr, float):
            return None  # (a rate in a device tensor is read on the host only at a flush)
        kinds.add(kind)
        for p in group["params"]:
            lr_of[id(p)] = lr
    if len(kinds) != 1:
        return None  # (groups with and without momentum: rare enough to copy)
    return SgdStep(momentum=kinds.pop(), lr=tuple(lr_of.get(id(p), 0.0) for p in params))
