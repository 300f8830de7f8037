"""Which modules are layers, and what kind of activation a module is.

A *layer* is a module that directly owns at least one trainable parameter (Linear, Conv,
RNN/LSTM/GRU, norms, embeddings). A parameter shared by several modules (tied weights)
belongs to the first module that owns it in ``named_modules()`` order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

# The one activation table says which classes saturate or die.
from .._activations import kind_of
from ..trace import LayerInfo
from ..trace.layers import Role
from .recognise import FUNCTIONS, Recognised
from .structure import attention_of, layer_class, layer_role

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
    role: Role = "weight"
    attention: str | None = None

    @property
    def numel(self) -> int:
        return sum(p.numel() for p in self.params)


def find_layers(model: nn.Module) -> tuple[list[LayerSpec], int]:
    """Layers of ``model`` in ``named_modules()`` order, and the count of frozen parameters."""
    seen: set[int] = set()
    modules = dict(model.named_modules())
    layers: list[LayerSpec] = []
    frozen = 0
    for name, module in model.named_modules():
        params: list[nn.Parameter] = []
        names: list[str] = []
        for pname, p in _owned_parameters(module):
            if id(p) in seen:
                continue
            seen.add(id(p))
            if not p.requires_grad:
                frozen += 1
                continue
            params.append(p)
            names.append(pname)
        if params:
            layers.append(
                LayerSpec(
                    name=name,
                    module=module,
                    params=params,
                    param_names=names,
                    role=layer_role(name, module, names),
                    attention=attention_of(name, modules),
                )
            )
    return layers, frozen


def _owned_parameters(module: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """The parameters ``module`` owns directly; a parametrized module (``weight_norm``,
    ``spectral_norm``) also owns its tensors' originals, kept in child modules under
    ``parametrizations.<tensor>``: its weight is computed from them in its own forward, so
    they are that layer's, not a layer of their own."""
    owned = list(module.named_parameters(recurse=False))
    if parametrize.is_parametrized(module):
        owned += [
            (f"parametrizations.{n}", p)
            for n, p in module.parametrizations.named_parameters()  # type: ignore[union-attr]
        ]
    return owned


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
        #: The layer of each parameter, and the same on the device (for per-layer index_add).
        self.param_owner = [i for i, spec in enumerate(specs) for _ in spec.params]
        self.param_layer = torch.tensor(self.param_owner, dtype=torch.long, device=self.device)
        self.order: list[int] = []  # layer indices in order of first use
        self.ordered = False
        self.depth = list(range(self.n))  # index -> depth, final once ordered
        # index -> the activation module that follows the layer (claimed at the first step)
        self.activation_of: dict[int, Recognised] = {}
        self.recognised: dict[int, Recognised] = {}  # id(module) -> activation it computes
        self.functional: dict[int, str] = {}  # index -> functional activation (torch.fx)
        self.branch_of: dict[int, str] = {}  # index -> innermost residual branch
        # Layers that end a projection shortcut: the activation after the residual addition
        # belongs to the main branch's last layer, not to them (ResNet's downsample).
        self.no_claim: set[int] = set()
        self.out_numel: dict[int, int] = {}  # index -> output-gradient elements (first step)

    @property
    def numel(self) -> int:
        """Trainable scalar parameters over all layers."""
        return sum(spec.numel for spec in self.specs)

    def model_summary(self, module: nn.Module) -> dict[str, Any]:
        """``meta.json``'s ``model``: the class of ``module`` (the model the user wrote), its
        parameter count, the trainable count, and the trainable count per dtype
        (``{"bfloat16": 1234}``: a half-precision model's steps can round away, which
        ``unstable_updates`` reads)."""
        dtypes: dict[str, int] = {}
        for p in self.params:
            name = str(p.dtype).removeprefix("torch.")
            dtypes[name] = dtypes.get(name, 0) + p.numel()
        return {
            "class": type(module).__name__,
            "num_params": sum(p.numel() for p in module.parameters()),
            "num_trainable": self.numel,
            "param_dtypes": dtypes,
        }

    def finalize_order(self) -> None:
        """Fix the depths: layers in order of first use, then those the forward never ran."""
        order = list(self.order) + [i for i in range(self.n) if i not in self.order]
        for depth, i in enumerate(order):
            self.depth[i] = depth
        self.ordered = True

    def infos(self) -> list[LayerInfo]:
        """The layer table of the trace, one entry per layer (in index order)."""
        return [self._info(i, spec) for i, spec in enumerate(self.specs)]

    def _info(self, i: int, spec: LayerSpec) -> LayerInfo:
        act = self.activation_of.get(i)
        name, like, source = (act.cls, act.like, act.source) if act else (None, None, None)
        if act is None and i in self.functional:
            name = self.functional[i]
            like, source = FUNCTIONS[name], "functional"
        return LayerInfo(
            name=spec.name,
            type=layer_class(spec.module),
            depth=self.depth[i],
            num_params=spec.numel,
            shapes=_shapes(spec),
            activation=name,
            recurrent=isinstance(spec.module, RECURRENT_TYPES),
            role=spec.role,
            attention=spec.attention,
            branch=self.branch_of.get(i),
            activation_like=like,
            activation_source=source,
            out_numel=self.out_numel.get(i),
        )

    def unrecognised(self) -> list[str]:
        """Weight layers with no activation recognised after them, in depth order."""
        missing = [
            i
            for i, spec in enumerate(self.specs)
            if spec.role == "weight" and i not in self.activation_of and i not in self.functional
        ]
        return [self.specs[i].name for i in sorted(missing, key=lambda i: self.depth[i])]


def _shapes(spec: LayerSpec) -> dict[str, list[int]]:
    """Parameter name -> shape; a parametrized tensor is also listed under its own name with
    the shape of its largest original (the direction ``v`` of ``weight_norm``, the
    ``original`` of ``spectral_norm``), as computing it could step a power iteration."""
    shapes = {n: list(p.shape) for n, p in zip(spec.param_names, spec.params, strict=True)}
    originals: dict[str, list[int]] = {}
    for n, shape in shapes.items():
        if n.startswith("parametrizations."):
            tensor = n.split(".")[1]
            best = originals.get(tensor)
            if best is None or math.prod(shape) > math.prod(best):
                originals[tensor] = shape
    return {**originals, **shapes}
