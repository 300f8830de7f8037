"""Which modules are layers, and what kind of activation a module is.

A *layer* is a module that directly owns at least one trainable parameter (Linear, Conv,
RNN/LSTM/GRU, norms, embeddings). A parameter shared by several modules (tied weights)
belongs to the first module that owns it in ``named_modules()`` order.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

# The one activation table says which classes saturate or die.
from .._activations import kind_of
from ..trace import LayerInfo

RECURRENT_TYPES = (nn.RNN, nn.LSTM, nn.GRU)


def activation_kind(module: nn.Module) -> str | None:
    """``"saturating"``, ``"relu_like"``, ``"other"`` or None if not an activation module.

    PReLU owns a parameter but is still an activation (it is also recorded as a layer).
    """
    return kind_of(type(module).__name__)


@dataclass
class LayerSpec:
    """A layer found in the model, before the forward pass has ordered it."""

    name: str
    module: nn.Module
    params: list[nn.Parameter]  # trainable, owned directly, deduplicated
    param_names: list[str]

    @property
    def numel(self) -> int:
        return sum(p.numel() for p in self.params)


def find_layers(model: nn.Module) -> tuple[list[LayerSpec], int]:
    """Layers of ``model`` in ``named_modules()`` order, and the count of frozen parameters."""
    seen: set[int] = set()
    layers: list[LayerSpec] = []
    frozen = 0
    for name, module in model.named_modules():
        params: list[nn.Parameter] = []
        names: list[str] = []
        for pname, p in module.named_parameters(recurse=False):
            if id(p) in seen:
                continue
            seen.add(id(p))
            if not p.requires_grad:
                frozen += 1
                continue
            params.append(p)
            names.append(pname)
        if params:
            layers.append(LayerSpec(name=name, module=module, params=params, param_names=names))
    return layers, frozen


class LayerSet:
    """The watched layers, their parameters in layer order, and the order of the forward pass.

    A layer's index (its position in ``named_modules()``) addresses it in every buffer; its
    depth (first use in the forward pass) is what the trace calls it. The forward order is
    discovered by the sampling pre-hooks of the first step and fixed when that step is taken.
    """

    def __init__(self, specs: list[LayerSpec]) -> None:
        self.specs = specs
        self.n = len(specs)
        self.params: list[nn.Parameter] = [p for spec in specs for p in spec.params]
        self.device = self.params[0].device if self.params else torch.device("cpu")
        # The layer of each parameter, on the device, for per-layer index_add of statistics.
        self.param_layer = torch.tensor(
            [i for i, spec in enumerate(specs) for _ in spec.params],
            dtype=torch.long,
            device=self.device,
        )
        self.order: list[int] = []  # layer indices in order of first use
        self.ordered = False
        self.depth = list(range(self.n))  # index -> depth, final once ordered
        self.activation_of: dict[int, str] = {}  # index -> class of the activation after it

    @property
    def numel(self) -> int:
        """Trainable scalar parameters over all layers."""
        return sum(spec.numel for spec in self.specs)

    def finalize_order(self) -> None:
        """Fix the depths: layers in order of first use, then those the forward never ran."""
        order = list(self.order) + [i for i in range(self.n) if i not in self.order]
        for depth, i in enumerate(order):
            self.depth[i] = depth
        self.ordered = True

    def infos(self) -> list[LayerInfo]:
        """The layer table of the trace, one entry per layer (in index order)."""
        return [
            LayerInfo(
                name=spec.name,
                type=type(spec.module).__name__,
                depth=self.depth[i],
                num_params=spec.numel,
                shapes={
                    n: list(p.shape) for n, p in zip(spec.param_names, spec.params, strict=True)
                },
                activation=self.activation_of.get(i),
                recurrent=isinstance(spec.module, RECURRENT_TYPES),
            )
            for i, spec in enumerate(self.specs)
        ]
