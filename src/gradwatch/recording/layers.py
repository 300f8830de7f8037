"""Which modules are layers, and what kind of activation a module is.

A *layer* is a module that directly owns at least one trainable parameter (Linear, Conv,
RNN/LSTM/GRU, norms, embeddings). A parameter shared by several modules (tied weights)
belongs to the first module that owns it in ``named_modules()`` order.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

# The one activation table says which classes saturate or die.
from .._activations import kind_of

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
