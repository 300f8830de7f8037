"""Finding the blocks of sequential stacks: the shared analysis of residual, depth,
normalisation and pretraining.

A *unit* is a weight layer (``nn.Linear``, ``nn.Conv*d`` or a nested ``nn.Sequential`` that
composes to one) followed by the element-wise modules after it (activations, norms,
dropout) inside one ``nn.Sequential``. A unit is *shape-preserving* when its output has the
shape of its input (``Linear(d, d)``; a stride-1 "same"-padded ``Conv(c, c)``), which is
what a residual connection ``x + f(x)`` and dropping the unit both need.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from ._common import is_elementwise

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class ShapeMap:
    """How a weight layer maps feature/channel counts; ``same_spatial`` for convolutions."""

    n_in: int
    n_out: int
    same_spatial: bool = True

    @property
    def preserving(self) -> bool:
        return self.n_in == self.n_out and self.same_spatial


#: "same" = element-wise (shape kept), None = opaque (shape unknown or changed).
MapKind = ShapeMap | Literal["same"] | None


@dataclass(frozen=True)
class Unit:
    """Children ``start:stop`` of a Sequential: one weight layer and its element-wise tail."""

    start: int
    stop: int
    shape: ShapeMap

    @property
    def preserving(self) -> bool:
        return self.shape.preserving


@dataclass(frozen=True)
class Stack:
    """One ``nn.Sequential`` of the model (``name`` as in ``named_modules``) and its units."""

    name: str
    module: nn.Sequential
    units: tuple[Unit, ...]

    @property
    def preserving_units(self) -> list[Unit]:
        return [u for u in self.units if u.preserving]


def _conv_same(conv: nn.Conv1d | nn.Conv2d | nn.Conv3d) -> bool:
    """True when a convolution keeps the spatial size (stride 1, 'same' padding)."""
    stride = tuple(conv.stride)
    if any(s != 1 for s in stride):
        return False
    padding = conv.padding
    if padding == "same":
        return True
    if isinstance(padding, str):
        return False
    kernel = tuple(conv.kernel_size)
    dilation = tuple(conv.dilation)
    return all(2 * p == d * (k - 1) for p, k, d in zip(padding, kernel, dilation, strict=True))


def shape_map(module: nn.Module) -> MapKind:
    """The shape map of one module: a :class:`ShapeMap`, ``"same"`` or ``None`` (opaque)."""
    from torch import nn

    if isinstance(module, nn.Linear):
        return ShapeMap(module.in_features, module.out_features)
    if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        return ShapeMap(module.in_channels, module.out_channels, _conv_same(module))
    if is_elementwise(module):
        return "same"
    if isinstance(module, nn.Sequential):
        maps = [shape_map(child) for child in module]
        if any(m is None for m in maps):
            return None
        weights = [m for m in maps if isinstance(m, ShapeMap)]
        if not weights:
            return "same"
        if any(a.n_out != b.n_in for a, b in itertools.pairwise(weights)):
            return None
        return ShapeMap(weights[0].n_in, weights[-1].n_out, all(w.same_spatial for w in weights))
    return None


def segment(seq: nn.Sequential) -> tuple[Unit, ...]:
    """Split the children of ``seq`` into units (see the module docstring)."""
    units: list[Unit] = []
    start: int | None = None
    current: ShapeMap | None = None
    for i, child in enumerate(seq):
        m = shape_map(child)
        if m == "same":
            continue  # joins the open unit, or is a leading element-wise module
        if start is not None and current is not None:
            units.append(Unit(start, i, current))
        start, current = (i, m) if isinstance(m, ShapeMap) else (None, None)
    if start is not None and current is not None:
        units.append(Unit(start, len(seq), current))
    return tuple(units)


def find_stacks(model: nn.Module) -> list[Stack]:
    """Every ``nn.Sequential`` of ``model`` that is not itself inside a unit, outermost first."""
    from torch import nn

    stacks: list[Stack] = []

    def visit(module: nn.Module, name: str) -> None:
        if isinstance(module, nn.Sequential):
            units = segment(module)
            stacks.append(Stack(name, module, units))
            consumed = {i for u in units for i in range(u.start, u.stop)}
            for i, (child_name, child) in enumerate(module.named_children()):
                if i not in consumed:
                    visit(child, f"{name}.{child_name}" if name else child_name)
            return
        for child_name, child in module.named_children():
            visit(child, f"{name}.{child_name}" if name else child_name)

    visit(model, "")
    return stacks


def describe_children(model: nn.Module) -> str:
    """A short list of the module types of ``model`` for error messages."""
    names: list[str] = []
    for _, m in model.named_modules():
        if not list(m.children()):
            n = type(m).__name__
            if n not in names:
                names.append(n)
    return ", ".join(names) if names else type(model).__name__
