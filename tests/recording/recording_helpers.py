"""What several recording tests share: a few recorded SGD steps of a model."""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

import gradwatch as gw
from gradwatch.trace import Trace


def record_sgd(model: nn.Module, batch: Any, steps: int = 2) -> Trace:
    """Train a few SGD steps under a watch; ``batch`` is a tensor (MSE to 0) or HF kwargs."""
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with gw.watch(model, opt) as w:
            for _ in range(steps):
                if isinstance(batch, dict):
                    loss = model(**batch).loss
                else:
                    loss = model(batch).float().pow(2).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
    return w.trace
