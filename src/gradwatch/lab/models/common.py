"""Pieces shared by the lab models: activation modules and weight initialisation by name."""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

from ...remedies.activations import make_activation as remedy_activation

Activation = Literal[
    "sigmoid", "tanh", "relu", "leaky_relu", "prelu", "elu", "selu", "gelu", "swish", "identity"
]
ACTIVATIONS: tuple[str, ...] = Activation.__args__  # type: ignore[attr-defined]

Init = Literal["default", "standard", "xavier", "he", "lecun", "orthogonal"]
INITS: tuple[str, ...] = Init.__args__  # type: ignore[attr-defined]

Norm = Literal["none", "batchnorm", "layernorm"]
NORMS: tuple[str, ...] = Norm.__args__  # type: ignore[attr-defined]


def make_activation(name: str) -> nn.Module:
    """A fresh activation *module* (not a function), so hooks and module swaps can see it.

    Example:
        >>> make_activation("relu")
        ReLU()
    """
    if name == "identity":
        return nn.Identity()
    if name not in ACTIVATIONS:
        raise ValueError(f"activation={name!r} is not known; use one of {sorted(ACTIVATIONS)}")
    # One name -> module table for the whole library: the remedies' (swap targets).
    return remedy_activation(name)


def init_linear_(layer: nn.Linear | nn.Conv2d, init: str, activation: str) -> None:
    """Initialise one layer's weight in place by scheme name; biases become zero (except default).

    ``standard`` is the heuristic Glorot & Bengio (2010) call standard: U[-1/sqrt(n), 1/sqrt(n)]
    with n = fan-in (weight variance 1/(3 n)). ``default`` leaves PyTorch's own initialisation.
    """
    if init == "default":
        return
    weight = layer.weight
    fan_in = weight[0].numel()
    with torch.no_grad():
        if init == "standard":
            bound = 1.0 / math.sqrt(fan_in)
            nn.init.uniform_(weight, -bound, bound)
        elif init == "xavier":
            nn.init.xavier_uniform_(weight)
        elif init == "he":
            # He et al. (2015): Var(W) = 2 / fan_in for ReLU; other activations use their gain.
            if activation == "leaky_relu":
                nn.init.kaiming_normal_(weight, nonlinearity="leaky_relu")
            else:
                nn.init.kaiming_normal_(weight, nonlinearity="relu")
        elif init == "lecun":
            nn.init.normal_(weight, 0.0, 1.0 / math.sqrt(fan_in))
        elif init == "orthogonal":
            nn.init.orthogonal_(weight)
        else:
            raise ValueError(f"init={init!r} is not known; use one of {list(INITS)}")
        if layer.bias is not None:
            layer.bias.zero_()


def make_norm(norm: str, width: int) -> nn.Module | None:
    """A normalisation module over ``width`` features, or None for ``"none"``."""
    if norm == "none":
        return None
    if norm == "batchnorm":
        return nn.BatchNorm1d(width)
    if norm == "layernorm":
        return nn.LayerNorm(width)
    raise ValueError(f"norm={norm!r} is not known; use one of {list(NORMS)}")


class Residual(nn.Module):
    """``x + body(x)``: a skip connection around a shape-preserving block (He et al., 2016)."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)
