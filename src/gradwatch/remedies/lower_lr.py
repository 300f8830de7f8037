"""A lower learning rate: every parameter group's rate multiplied by a factor below one.

The step a rule finds too large (``unstable_updates``: a step that moves a layer by a large
share of its own norm; a loss that rises again after learning; a representation that
collapsed to one output for every input) shrinks with the rate: to first order SGD's step is
``lr * g`` and Adam's ``lr * m / sqrt(v)``, so the update ratio falls by the same factor.
A tenth is the classic first try (the step-decay factor of the ImageNet recipes, Krizhevsky
et al. 2012, He et al. 2016). Measured on the real corpus (one thread, seed 0): HF GPT-2 at
AdamW 0.1 ends at the unigram loss (3.23, broken by its own check); at 0.01 it reaches 2.74
and at 0.001 2.46, with no finding (docs/remedies.md).

The schedule is torch's own ``ConstantLR`` with no end: chainable, so it composes with the
run's warm-up or decay (``ChainedScheduler([lowered, cosine])``), and it keeps no state of
its own beyond torch's.
"""

from __future__ import annotations

import math
import sys

import torch
from torch.optim.lr_scheduler import ConstantLR

from ._common import check_optimizer

__all__ = ["check_factor", "lower_lr"]


def check_factor(factor: object, name: str = "`factor`") -> float:
    """``factor`` as a float when it is a number in (0, 1), else a ValueError that names it
    as ``name`` (the lab names its config field).

    Example:
        >>> check_factor(0.1)
        0.1
    """
    if (
        isinstance(factor, bool)
        or not isinstance(factor, (int, float))
        or not math.isfinite(factor)
        or not 0.0 < factor < 1.0
    ):
        raise ValueError(
            f"lower_lr: expected {name} to be a number in (0, 1) but got {factor!r}; it "
            "multiplies every learning rate (0.1 lowers them a decade)"
        )
    return float(factor)


def lower_lr(optimizer: torch.optim.Optimizer, factor: float = 0.1) -> ConstantLR:
    """A scheduler that multiplies every parameter group's learning rate by ``factor`` from
    now on; call its ``step()`` after each ``optimizer.step()``, as for any scheduler.

    The optimizer's rates are lowered at once; nothing else of the optimizer changes. A
    scheduler the run already steps keeps the lowering where it computes each rate from the
    current one (``CosineAnnealingLR``, ``StepLR``, ``ExponentialLR``; or chain them,
    ``ChainedScheduler([lowered, cosine])``); one that sets the rate from its base every
    step (``LambdaLR``, ``OneCycleLR``) overwrites it: lower its base rate instead.

    Args:
        optimizer: The optimizer whose rates to lower.
        factor: The multiplier, in (0, 1): 0.1 takes every rate down a decade.

    Raises:
        TypeError: ``optimizer`` is not a ``torch.optim.Optimizer``.
        ValueError: ``factor`` is not a number in (0, 1).

    Example:
        >>> w = torch.nn.Parameter(torch.zeros(1))
        >>> opt = torch.optim.SGD([w], lr=0.5)
        >>> lowered = lower_lr(opt, factor=0.1)
        >>> rates = []
        >>> for _ in range(3):
        ...     rates.append(round(opt.param_groups[0]["lr"], 6))
        ...     opt.step()
        ...     lowered.step()
        >>> rates
        [0.05, 0.05, 0.05]
    """
    check_optimizer("lower_lr", optimizer)
    check_factor(factor)
    # ConstantLR applies its factor at once and lifts it only at step `total_iters`: with no
    # reachable end it is a lasting, chainable multiplier.
    return ConstantLR(optimizer, factor=float(factor), total_iters=sys.maxsize)
