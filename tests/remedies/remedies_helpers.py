"""Small models and state helpers shared by the remedies tests."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


def make_mlp(
    depth: int = 6,
    width: int = 16,
    d_in: int = 5,
    d_out: int = 3,
    act: Callable[[], nn.Module] = nn.Sigmoid,
) -> nn.Sequential:
    """``depth`` Linear layers: d_in -> width -> ... -> width -> d_out, ``act`` between."""
    layers: list[nn.Module] = [nn.Linear(d_in, width), act()]
    for _ in range(depth - 2):
        layers += [nn.Linear(width, width), act()]
    layers.append(nn.Linear(width, d_out))
    return nn.Sequential(*layers)


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of every parameter and buffer."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same_state(model: nn.Module, saved: dict[str, torch.Tensor]) -> bool:
    now = model.state_dict()
    return now.keys() == saved.keys() and all(torch.equal(now[k], saved[k]) for k in now)
