"""Pieces shared by the lab models: activation modules, norms and initialisation by name.

The activation names and their modules come from the one activation table
(``gradwatch._activations``), initialisation by scheme name from
``gradwatch.remedies.init.init_layer_``, and skip connections are
``gradwatch.remedies.residual.Residual``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from torch import nn

from ..._activations import ACTIVATION_IDS, module_class
from ...remedies.init import INIT_SCHEMES, InitScheme
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

# Initialisation schemes by name: the library's per-layer entry point, init_layer_, owns them.
Init = InitScheme
INITS: tuple[str, ...] = tuple(INIT_SCHEMES)

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
    "make_activation",
    "make_norm",
]
