"""Learning-rate warm-up: the rate raised linearly from a small value to its peak.

At initialisation the weights are far from where training takes them and an adaptive
optimizer's second-moment estimate rests on a handful of gradients, so the first steps are
the largest relative to the weights: they can erase what the initialisation built (the
``unstable_updates`` rule measures this as a step that moves a layer by more than its own
norm). A warm-up keeps those steps small while the optimizer's statistics settle; it is the
standard fix for large-batch ResNets (Goyal et al. 2017, "gradual warmup" over 5 epochs) and
for post-LN transformers, which often fail to train without one at their usual rates
(Vaswani et al. 2017, 4000 steps; Xiong et al. 2020).

The schedule is torch's own ``LinearLR``: chainable, so it composes with the run's decay
(``torch.optim.lr_scheduler.ChainedScheduler([warmup, cosine])``), and it keeps no state of
its own beyond torch's.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.optim.lr_scheduler import LinearLR

from ._common import check_optimizer

__all__ = ["lr_warmup", "optimizes", "untuned_warmup_steps"]


def untuned_warmup_steps(optimizer: torch.optim.Optimizer) -> int:
    """``2 / (1 - beta2)`` steps, the warm-up length for Adam-type optimizers that needs no
    tuning (Ma & Yarats 2021: over those steps Adam's second-moment estimate becomes
    reliable); the largest ``beta2`` over the parameter groups.

    Raises:
        ValueError: The optimizer has no ``betas`` (SGD, Adagrad ...): the message says to
            pass ``steps``.

    Example:
        >>> w = nn.Parameter(torch.zeros(1))
        >>> untuned_warmup_steps(torch.optim.AdamW([w], betas=(0.9, 0.999)))
        2000
        >>> untuned_warmup_steps(torch.optim.Adam([w], betas=(0.9, 0.95)))
        40
    """
    betas = [g["betas"][1] for g in optimizer.param_groups if "betas" in g]
    if not betas:
        raise ValueError(
            f"lr_warmup: steps=None picks 2/(1 - beta2) steps for Adam-type optimizers, but "
            f"{type(optimizer).__name__} has no betas; pass steps=<warm-up length>, e.g. "
            "steps=100 (a few percent of the run)"
        )
    beta2 = max(float(b) for b in betas)
    if not 0.0 <= beta2 < 1.0:
        raise ValueError(f"lr_warmup: expected beta2 in [0, 1) but the optimizer has {beta2!r}")
    return max(1, math.ceil(2.0 / (1.0 - beta2) - 1e-9))


def lr_warmup(optimizer: torch.optim.Optimizer, steps: int | None = None) -> LinearLR:
    """A scheduler that raises every parameter group's learning rate linearly to its
    current value over the first ``steps`` optimizer steps; call its ``step()`` after each
    ``optimizer.step()``.

    The first step runs at ``lr / steps``, step ``k`` at ``(k + 1) / steps * lr``, and step
    ``steps - 1`` and every later one at ``lr``. The optimizer's rates are lowered at once
    (that is the first step's rate); nothing else of the optimizer changes.

    Args:
        optimizer: The optimizer whose rates to warm up, before its first step.
        steps: Warm-up length in optimizer steps (>= 1; 1 = no warm-up). None:
            :func:`untuned_warmup_steps` (Adam-type optimizers only).

    Raises:
        TypeError: ``optimizer`` is not a ``torch.optim.Optimizer``.
        ValueError: ``steps`` is not an int >= 1, or None for an optimizer without betas.

    Example:
        >>> w = nn.Parameter(torch.zeros(1))
        >>> opt = torch.optim.SGD([w], lr=1.0)
        >>> warmup = lr_warmup(opt, steps=4)
        >>> rates = []
        >>> for _ in range(6):
        ...     rates.append(round(opt.param_groups[0]["lr"], 4))
        ...     opt.step()
        ...     warmup.step()
        >>> rates
        [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    """
    check_optimizer("lr_warmup", optimizer)
    if steps is None:
        steps = untuned_warmup_steps(optimizer)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(
            f"lr_warmup: expected `steps` to be an int >= 1 but got {steps!r}; it is the "
            "number of optimizer steps over which the rate rises to its peak"
        )
    # LinearLR's factor at its k-th step() is start + (1 - start) * min(k, total) / total
    return LinearLR(
        optimizer, start_factor=1.0 / steps, end_factor=1.0, total_iters=max(1, steps - 1)
    )


def optimizes(optimizer: torch.optim.Optimizer, model: nn.Module) -> bool:
    """Whether ``optimizer`` updates at least one parameter of ``model``."""
    mine = {id(p) for p in model.parameters()}
    return any(id(p) in mine for g in optimizer.param_groups for p in g["params"])
