"""Helpers of the fault suite."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

import gradwatch as gw


def train(
    run_dir: Path | None,
    steps: int = 30,
    *,
    model: nn.Module | None = None,
    **watch_kwargs: object,
) -> gw.Watch:
    """Record ``steps`` SGD steps of a small tanh MLP (or ``model``) into ``run_dir``."""
    torch.manual_seed(0)
    model = model or nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(),
                                   nn.Linear(8, 1))  # fmt: skip
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x = torch.randn(16, 4)
    with gw.watch(model, opt, run_dir, **watch_kwargs) as w:  # type: ignore[arg-type]
        for _ in range(steps):
            loss = model(x).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            w.log(loss=loss)
    return w
