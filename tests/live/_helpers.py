"""Small training runs for the live tests: healthy, or with a NaN at a known step."""

from __future__ import annotations

import json
import math
from typing import Any

import torch
from torch import nn

import gradwatch as gw
from gradwatch.diagnosis import Finding


def small_model(seed: int = 0) -> tuple[nn.Module, torch.optim.Optimizer]:
    """A 2-layer tanh MLP that trains cleanly (no finding) with SGD."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1))
    return model, torch.optim.SGD(model.parameters(), lr=0.05)


def deep_sigmoid(seed: int = 0, depth: int = 12) -> tuple[nn.Module, torch.optim.Optimizer]:
    """A deep sigmoid MLP: vanishing gradients and saturation, findings from the start."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Linear(16, 16), nn.Sigmoid()]
    model = nn.Sequential(*layers, nn.Linear(16, 1))
    return model, torch.optim.SGD(model.parameters(), lr=0.5)


def train(
    w: gw.Watch,
    model: nn.Module,
    opt: torch.optim.Optimizer,
    steps: int,
    *,
    nan_at: int | None = None,
    stop: bool = False,
) -> int:
    """Train ``steps`` steps (a NaN put in one gradient at step ``nan_at``); steps taken.

    With ``stop`` the loop ends when ``w.should_stop`` becomes true, as a user's loop would.
    """
    gen = torch.Generator().manual_seed(1)
    width = next(model.parameters()).shape[1]  # the first Linear's in_features
    taken = 0
    for step in range(steps):
        x = torch.randn(32, width, generator=gen)
        loss = (model(x) - x[:, :1]).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        if step == nan_at:
            first = next(model.parameters())
            assert first.grad is not None
            first.grad[0, 0] = math.nan
        opt.step()
        w.log(loss=loss)
        taken += 1
        if stop and w.should_stop:
            break
    return taken


def as_json(findings: list[Finding]) -> list[str]:
    """Findings as canonical JSON text (NaN evidence compares equal as text)."""
    return [json.dumps(f.to_json(), sort_keys=True) for f in findings]


def record_json(record: dict[str, Any]) -> str:
    """A findings.jsonl record's finding part, as :func:`as_json` writes it."""
    keep = {k: v for k, v in record.items() if k not in ("seen_at_step", "change")}
    return json.dumps(keep, sort_keys=True)
