"""A learning rate multiplied by a factor: lower (``lower_lr``) or higher (``raise_lr``).

The step a rule finds too large (``unstable_updates``: a step that moves a layer by a large
share of its own norm; a loss that rises again after learning; a representation that
collapsed to one output for every input) shrinks with the rate: to first order SGD's step is
``lr * g`` and Adam's ``lr * m / sqrt(v)``, so the update ratio falls by the same factor.
A tenth is the classic first try (the step-decay factor of the ImageNet recipes, Krizhevsky
et al. 2012, He et al. 2016). Measured on the real corpus (one thread, seed 0): HF GPT-2 at
AdamW 0.1 ends at the unigram loss (3.23, broken by its own check); at 0.01 it reaches 2.74
and at 0.001 2.46, with no finding (docs/remedies.md).

A step too small to train (``loss_plateau``'s tiny steps, ``diagnosis/small_steps.py``:
even the layer that moves most moves under 1e-4 of its norm a step, where healthy training
sits near 1e-3) grows with the rate by the same token: ``raise_lr``, whose factor
:func:`suggest_raise` reads off the trace (the power of ten that brings the median step to
1e-2 of the weights or above, where the real corpus's healthy runs sit).

Both are one scheduler, :class:`ScaledLR`: the factor applied once and no end, so it chains
with the run's warm-up or decay (``ChainedScheduler([scaled, cosine])``), and it keeps no
state of its own beyond the factor.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.optim.lr_scheduler import LRScheduler

from ._common import check_optimizer

if TYPE_CHECKING:
    from ..trace import Trace

__all__ = ["RATE_FACTORS", "ScaledLR", "check_factor", "lower_lr", "raise_lr", "suggest_raise"]

#: The remedies that multiply the learning rate by their option ``factor``.
RATE_FACTORS = ("lower_lr", "raise_lr")

#: Where healthy training's update ratio starts (CS231n's rule of thumb; the loss_plateau
#: rule's tiny_update_ratio is a tenth of it): :func:`suggest_raise` suggests nothing above.
HEALTHY_UPDATE_RATIO = 1e-3
#: What :func:`suggest_raise` aims at: the real corpus's healthy runs read median update
#: ratios of 0.0047-0.16, and aiming at 1e-3 left HF GPT-2 raised from AdamW 1e-6 to 1e-4
#: at 3.76 after 200 steps (broken by its own check); at 1e-2 the factor takes it and HF
#: DeBERTa-v2 at 1e-7 back to their recipes' 1e-3, where both learn with no finding.
TARGET_UPDATE_RATIO = 1e-2


class ScaledLR(LRScheduler):
    """Every parameter group's rate multiplied by ``factor`` once, when made; each later
    ``step()`` keeps the rates as they are, so a schedule chained with it or made after it
    computes from the scaled rates."""

    def __init__(self, optimizer: torch.optim.Optimizer, factor: float) -> None:
        self.factor = float(factor)
        super().__init__(optimizer)

    def get_lr(self) -> list[float | torch.Tensor]:
        scale = self.factor if self.last_epoch == 0 else 1.0
        return [float(group["lr"]) * scale for group in self.optimizer.param_groups]


def check_factor(factor: object, name: str = "`factor`", *, remedy: str = "lower_lr") -> float:
    """``factor`` as a float when it is a number in (0, 1) (``lower_lr``) or above 1
    (``raise_lr``), else a ValueError that names it as ``name`` (the lab names its config
    field).

    Example:
        >>> check_factor(0.1), check_factor(100, remedy="raise_lr")
        (0.1, 100.0)
    """
    raising = remedy == "raise_lr"
    number = (
        not isinstance(factor, bool)
        and isinstance(factor, (int, float))
        and math.isfinite(factor)
        and (factor > 1.0 if raising else 0.0 < factor < 1.0)
    )
    if not number:
        span, example = ("above 1", "10 raises them a decade") if raising else (
            "in (0, 1)", "0.1 lowers them a decade"
        )  # fmt: skip
        raise ValueError(
            f"{remedy}: expected {name} to be a finite number {span} but got {factor!r}; it "
            f"multiplies every learning rate ({example})"
        )
    return float(factor)  # type: ignore[arg-type]


def lower_lr(optimizer: torch.optim.Optimizer, factor: float = 0.1) -> ScaledLR:
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
    return ScaledLR(optimizer, check_factor(factor))


def raise_lr(optimizer: torch.optim.Optimizer, factor: float = 10.0) -> ScaledLR:
    """A scheduler that multiplies every parameter group's learning rate by ``factor``
    (above 1) from now on; call its ``step()`` after each ``optimizer.step()``.

    For steps too small to train: the plateau the diagnosis reads as a rate too low
    (``loss_plateau``'s tiny steps). The rates are raised at once; a scheduler the run
    already steps keeps the raise as for :func:`lower_lr`. :func:`suggest_raise` gives the
    factor that brings a trace's steps to healthy sizes; ``gw.prescribe`` passes it.

    Args:
        optimizer: The optimizer whose rates to raise.
        factor: The multiplier, above 1: 10 takes every rate up a decade.

    Raises:
        TypeError: ``optimizer`` is not a ``torch.optim.Optimizer``.
        ValueError: ``factor`` is not a finite number above 1.

    Example:
        >>> w = torch.nn.Parameter(torch.zeros(1))
        >>> opt = torch.optim.SGD([w], lr=1e-4)
        >>> raised = raise_lr(opt, factor=100)
        >>> round(opt.param_groups[0]["lr"], 8)
        0.01
    """
    check_optimizer("raise_lr", optimizer)
    return ScaledLR(optimizer, check_factor(factor, remedy="raise_lr"))


def suggest_raise(trace: Trace) -> float | None:
    """The power of ten (at least 10) that brings the median update ratio of ``trace``'s
    weight layers over its last third of sampled steps to :data:`TARGET_UPDATE_RATIO` or
    above: under SGD and Adam alike the step grows in proportion to the rate. None where the
    trace has no update ratios there, or its steps are not under
    :data:`HEALTHY_UPDATE_RATIO`.

    Example:
        >>> from gradwatch.trace import Trace
        >>> ratios = np.full((9, 2), 4e-6)
        >>> suggest_raise(Trace.from_arrays(["a", "b"], range(9), {"update_ratio": ratios}))
        10000.0
    """
    if not trace.has_metric("update_ratio"):
        return None
    _, ratios = trace.measured("update_ratio")
    cols = trace.path_columns()
    rows = ratios[-max(1, len(ratios) // 3) :, cols] if len(cols) else ratios[:0]
    with np.errstate(all="ignore"):
        median = float(np.nanmedian(rows)) if np.isfinite(rows).any() else math.nan
    if not (math.isfinite(median) and 0.0 < median < HEALTHY_UPDATE_RATIO):
        return None
    # Up to the next power of ten: a rate raised too little still plateaus.
    return float(10 ** max(1, math.ceil(math.log10(TARGET_UPDATE_RATIO / median))))
