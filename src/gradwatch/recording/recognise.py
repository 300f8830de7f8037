"""Recognising activations by behaviour: the class table, a probe, and functional calls.

Three sources, tried in this order, each recorded as ``LayerInfo.activation_source``:

* ``"class"``: the class name is in the one activation table (torch's own, and Hugging Face
  and timm classes by name, nothing imported: ``_activations.EQUIVALENT``).
* ``"probe"``: an unknown module without parameters, buffers or children is applied once to
  a fixed probe input (``linspace(-6, 6)``, under ``no_grad``, with the random state kept):
  when its response is elementwise (same shape, the same values whatever the input's layout
  and order) and matches a reference function within ``_PROBE_TOL``, it computes that
  function.
* ``"functional"``: ``torch.fx.symbolic_trace`` of the model finds ``F.gelu(self.fc(x))``
  style calls; models that do not trace (most Hugging Face models) are said so in
  ``meta["activations"]["fx"]``, and their layers rely on the first two sources. Tracing
  runs each ``forward``'s Python once: what it assigns to a module is put back after.
"""

from __future__ import annotations

import math
import operator
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .._activations import KINDS, torch_equivalent

# Modules that are never activations, skipped without a probe (dropout would also draw from
# the random stream, and the probe must not change what the model computes).
_NOT_ACTIVATIONS = ("Dropout", "Identity", "Flatten", "Unflatten", "Softmax", "Pool", "Upsample")

#: Largest |f(x) - reference(x)| over the probe for a match: tight enough to tell GELU from
#: its sigmoid approximation (max difference 0.02), loose enough for GELU's tanh form (4e-4).
_PROBE_TOL = 2e-3

#: Reference functions of the probe -> the torch class they are (identity is left out on
#: purpose: a pass-through module is not an activation).
_REFERENCES: dict[str, tuple[str, Callable[[torch.Tensor], torch.Tensor]]] = {
    "sigmoid": ("Sigmoid", torch.sigmoid),
    "tanh": ("Tanh", torch.tanh),
    "relu": ("ReLU", F.relu),
    "relu6": ("ReLU6", F.relu6),
    "relu_squared": ("ReLU", lambda x: F.relu(x).square()),
    "leaky_relu": ("LeakyReLU", F.leaky_relu),
    "elu": ("ELU", F.elu),
    "selu": ("SELU", F.selu),
    "celu": ("CELU", F.celu),
    "gelu": ("GELU", F.gelu),
    "gelu_tanh": ("GELU", lambda x: F.gelu(x, approximate="tanh")),
    "quick_gelu": ("GELU", lambda x: x * torch.sigmoid(1.702 * x)),
    "silu": ("SiLU", F.silu),
    "mish": ("Mish", F.mish),
    "hardswish": ("Hardswish", F.hardswish),
    "hardsigmoid": ("Hardsigmoid", F.hardsigmoid),
    "hardtanh": ("Hardtanh", F.hardtanh),
    "softsign": ("Softsign", F.softsign),
    "softplus": ("Softplus", F.softplus),
    "logsigmoid": ("LogSigmoid", F.logsigmoid),
}

#: Function names of functional calls (``F.gelu``, ``torch.tanh``, ``x.relu()``, in-place
#: ``relu_``) -> the torch class.
FUNCTIONS: dict[str, str] = {
    "relu": "ReLU",
    "relu6": "ReLU6",
    "leaky_relu": "LeakyReLU",
    "elu": "ELU",
    "selu": "SELU",
    "celu": "CELU",
    "gelu": "GELU",
    "silu": "SiLU",
    "mish": "Mish",
    "hardswish": "Hardswish",
    "hardsigmoid": "Hardsigmoid",
    "hardtanh": "Hardtanh",
    "sigmoid": "Sigmoid",
    "tanh": "Tanh",
    "softsign": "Softsign",
    "softplus": "Softplus",
    "logsigmoid": "LogSigmoid",
}
# Ops that pass a layer's output on unchanged in value (between the layer and its call).
_PASS_METHODS = frozenset({"view", "reshape", "flatten", "contiguous", "transpose", "permute"})


@dataclass(frozen=True)
class Recognised:
    """An activation module recognised: its class, the torch class it computes, and how."""

    cls: str
    like: str
    source: str  # "class" or "probe"

    @property
    def kind(self) -> str:
        """``"saturating"``, ``"relu_like"`` or ``"other"`` (identity: ``"other"``)."""
        return KINDS.get(self.like, "other")


@dataclass
class Recognition:
    """Everything recognised in one model, and what it cost."""

    modules: dict[int, Recognised] = field(default_factory=dict)  # id(module) -> what it is
    probed: dict[str, str | None] = field(default_factory=dict)  # class -> like (None: no)
    functional: dict[str, str] = field(default_factory=dict)  # layer -> function name
    fx: str = "not tried"
    cost_ms: float = 0.0


def recognise(model: nn.Module, layer_names: set[str], *, use_fx: bool = True) -> Recognition:
    """The activation modules of ``model`` and the functional activations after its layers."""
    t0 = time.perf_counter()
    out = Recognition()
    for module in model.modules():
        cls = type(module).__name__
        like = torch_equivalent(cls)
        if like is not None:
            out.modules[id(module)] = Recognised(cls, like, "class")
        elif _probe_candidate(module):
            if cls not in out.probed:
                out.probed[cls] = probe(module)
            found = out.probed[cls]
            if found is not None:
                out.modules[id(module)] = Recognised(cls, found, "probe")
    if use_fx:
        out.functional, out.fx = functional_activations(model, layer_names)
    out.cost_ms = (time.perf_counter() - t0) * 1e3
    return out


def _probe_candidate(module: nn.Module) -> bool:
    cls = type(module).__name__
    if any(word in cls for word in _NOT_ACTIVATIONS):
        return False
    return not (
        any(True for _ in module.children())
        or any(True for _ in module.parameters(recurse=False))
        or any(True for _ in module.buffers(recurse=False))
    )


def probe(module: nn.Module) -> str | None:
    """The torch activation class ``module`` computes, judged by its response, or None.

    Example:
        >>> class Swishy(torch.nn.Module):
        ...     def forward(self, x): return x * torch.sigmoid(x)
        >>> probe(Swishy()), probe(torch.nn.Softmax(dim=-1))
        ('SiLU', None)
    """
    x = torch.linspace(-6.0, 6.0, 241).view(1, -1)  # (1, N)
    perm = torch.randperm(241, generator=torch.Generator().manual_seed(0))
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            y = module(x.clone())
            y_col = module(x.clone().view(-1, 1))  # a layout change
            y_perm = module(x[:, perm].clone())  # an order change
    except Exception:  # an unknown module may reject the probe in any way
        return None
    if not all(isinstance(t, torch.Tensor) for t in (y, y_col, y_perm)):
        return None
    if y.shape != x.shape or y_col.numel() != x.numel() or y_perm.shape != x.shape:
        return None
    y = y.float()
    if not bool(torch.isfinite(y).all()):
        return None
    elementwise = torch.allclose(y_col.float().view(1, -1), y, atol=1e-5) and torch.allclose(
        y_perm.float(), y[:, perm], atol=1e-5
    )
    if not elementwise:
        return None
    best, best_err = None, math.inf
    for like, ref in _REFERENCES.values():
        err = float((y - ref(x)).abs().max())
        if err < best_err:
            best, best_err = like, err
    return best if best_err <= _PROBE_TOL else None


def _fully_sharded(model: nn.Module) -> bool:
    """Whether ``model`` holds a module wrapped by FSDP2's ``fully_shard``."""
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # a build without torch.distributed
        return False
    return any(isinstance(m, FSDPModule) for m in model.modules())


@contextmanager
def _attributes_kept(model: nn.Module) -> Iterator[None]:
    """Put back every module's attributes as they were: tracing runs the Python of each
    ``forward``, and what it assigns there (a call counter, a cached proxy that would break
    the next real forward) must not outlive the trace. Tensors are proxies while tracing, so
    only such Python-level assignments can change anything."""
    saved = [(m, dict(m.__dict__)) for m in model.modules()]
    try:
        yield
    finally:
        for module, attributes in saved:
            module.__dict__.clear()
            module.__dict__.update(attributes)


def functional_activations(model: nn.Module, layer_names: set[str]) -> tuple[dict[str, str], str]:
    """Layer -> function name of the functional activation applied to its output, found by
    ``torch.fx``; and ``"ok"`` or why tracing failed."""
    if _fully_sharded(model):
        # Tracing calls the submodules, whose FSDP2 pre-forward hooks would then take the
        # first one for the root ("FSDP requires running forward through the root module
        # first" at the first real step).
        return {}, "skipped: FSDP2 (fully_shard) modules"
    try:
        with warnings.catch_warnings(), _attributes_kept(model):
            warnings.simplefilter("ignore")
            graph = torch.fx.symbolic_trace(model).graph
    except Exception as exc:  # fx fails on data-dependent control flow and more
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return {}, f"failed: {type(exc).__name__}: {reason[:200]}"
    found: dict[str, str] = {}
    for node in graph.nodes:
        fn = _function_name(node)
        if fn is None or not node.args:
            continue
        src = node.args[0]
        for _ in range(4):  # through views and tuple indexing, back to the layer
            if not isinstance(src, torch.fx.Node):
                break
            if src.op == "call_module":
                if src.target in layer_names:
                    found.setdefault(str(src.target), fn)
                break
            passes = (src.op == "call_method" and src.target in _PASS_METHODS) or (
                src.op == "call_function" and src.target is operator.getitem
            )
            if not passes or not src.args:
                break
            src = src.args[0]
    return found, "ok"


def _function_name(node: torch.fx.Node) -> str | None:
    if node.op == "call_function":
        name = getattr(node.target, "__name__", "")
    elif node.op == "call_method":
        name = str(node.target)
    else:
        return None
    name = name.rstrip("_")
    return name if name in FUNCTIONS else None


def describe(recognition: Recognition, unrecognised: list[str]) -> dict[str, Any]:
    """The ``meta["activations"]`` entry: what was recognised how, and what was not."""
    return {
        "unrecognised": unrecognised,
        "functional": dict(recognition.functional),
        "probed": dict(recognition.probed),
        "fx": recognition.fx,
        "cost_ms": round(recognition.cost_ms, 3),
    }
