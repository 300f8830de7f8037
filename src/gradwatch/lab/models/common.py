"""Pieces shared by the lab models: activation modules, norms and initialisation by name.

The activation names and their modules come from the one activation table
(``gradwatch._activations``), the initialisation gains from ``gradwatch.remedies.init``, and
skip connections are ``gradwatch.remedies.residual.Residual``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Literal

import torch
from torch import nn

from ..._activations import ACTIVATION_IDS, module_class
from ...remedies.init import activation_gain
from ...remedies.residual import Residual


@dataclass(frozen=True)
class OneOf:
    """Marks a ``str`` config field whose value must be one of ``choices``.

    The config parser (``gradwatch.lab.config``) reads it, as it reads a ``Literal``; unlike a
    ``Literal`` the choices can be computed from a table.
    """

    choices: tuple[str, ...]


#: The activation names a lab model accepts: the swappable ids of the one activation table,
#: and "identity" (the table's alias of its "linear" id: no activation).
ACTIVATIONS: tuple[str, ...] = (*ACTIVATION_IDS, "identity")
Activation = Annotated[str, OneOf(ACTIVATIONS)]

Init = Literal["default", "standard", "xavier", "he", "lecun", "orthogonal"]
INITS: tuple[str, ...] = Init.__args__  # type: ignore[attr-defined]

Norm = Literal["none", "batchnorm", "layernorm"]
NORMS: tuple[str, ...] = Norm.__args__  # type: ignore[attr-defined]


def make_activation(name: str) -> nn.Module:
    """A fresh activation *module* (not a function), so hooks and module swaps can see it.

    Example:
        >>> make_activation("relu"), make_activation("identity")
        (ReLU(), Identity())
    """
    if name not in ACTIVATIONS:
        raise ValueError(f"activation={name!r} is not known; use one of {sorted(ACTIVATIONS)}")
    return module_class(name)()


def init_linear_(layer: nn.Linear | nn.Conv2d, init: str, activation: str) -> None:
    """Initialise one layer's weight in place by scheme name; biases become zero (except default).

    ``standard`` is the heuristic Glorot & Bengio (2010) call standard: U[-1/sqrt(n), 1/sqrt(n)]
    with n = fan-in (weight variance 1/(3 n)). ``default`` leaves PyTorch's own initialisation.
    The gains are ``gradwatch.remedies.init.activation_gain``'s.

    Args:
        layer: Initialised in place.
        init: One of :data:`INITS`.
        activation: The activation after the layer. No lab scheme depends on it today
            (``"he"`` is the ReLU scale for every activation, as the lab has always used it);
            it is the argument a per-layer library entry point takes.
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
            # He et al. (2015): Var(W) = 2 / fan_in, the ReLU gain whatever the activation
            # ("he" in a lab config names that scale; the lab's leaky ReLU has slope 0.01,
            # whose gain differs from ReLU's by 5e-5).
            nn.init.normal_(weight, 0.0, activation_gain("relu") / math.sqrt(fan_in))
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


__all__ = [
    "ACTIVATIONS",
    "INITS",
    "NORMS",
    "Activation",
    "Init",
    "Norm",
    "OneOf",
    "Residual",
    "init_linear_",
    "make_activation",
    "make_norm",
]
