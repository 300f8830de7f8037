"""Two interleaved spirals (Lang & Witbrock, 1988): a small, hard 2-D classification task."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .base import Task, generator


@dataclass(frozen=True)
class SpiralsConfig:
    """Size and difficulty of the spirals."""

    n_train: int = 1000
    n_test: int = 1000
    # Turns of each spiral: 1.5 needs a few hidden layers, not a deep net.
    turns: float = 1.5
    # Gaussian jitter on each point, relative to the outer radius 1.
    noise: float = 0.03
    seed: int = 0


def _sample(n: int, config: SpiralsConfig, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    y = torch.randint(0, 2, (n,), generator=g)
    t = torch.rand(n, generator=g)  # position along the spiral, 0 = centre
    angle = t * config.turns * 2 * math.pi + y * math.pi  # class 1 is class 0 turned by pi
    radius = 0.1 + 0.9 * t
    x = torch.stack([radius * torch.cos(angle), radius * torch.sin(angle)], dim=1)  # (n, 2)
    x = x + config.noise * torch.randn(n, 2, generator=g)
    return x.float(), y


def spirals(config: SpiralsConfig | None = None) -> Task:
    """Two spirals: inputs (N, 2), two classes, balanced in expectation.

    Example:
        >>> spirals(SpiralsConfig(n_train=10, n_test=5)).x_train.shape
        torch.Size([10, 2])
    """
    config = config or SpiralsConfig()
    g = generator(config.seed)
    x_train, y_train = _sample(config.n_train, config, g)
    x_test, y_test = _sample(config.n_test, config, g)
    majority = int(torch.bincount(y_train, minlength=2).argmax())
    return Task(
        "spirals", x_train, y_train, x_test, y_test, "classification", "flat", 2, 2, classes=2,
        baseline=float((y_test == majority).double().mean()),
    )  # fmt: skip
