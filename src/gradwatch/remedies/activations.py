"""Swap the activations of a model: modules by replacement, functional calls via torch.fx.

Activation modules (``nn.Sigmoid``, ``nn.Tanh`` ...) are replaced in a copy of the model.
Activations called as functions inside ``forward`` (``torch.sigmoid(x)``, ``F.relu(x)``,
``x.tanh()``) cannot be reached by a module swap: they are found with
``torch.fx.symbolic_trace`` where the model traces, reported, and rewritten only when asked
(``rewrite_functional=True``, which returns a ``torch.fx.GraphModule``). The result says
exactly what was changed and what was not.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .._activations import ACTIVATION_IDS, module_class
from ._common import (
    UnsupportedModelError,
    activation_types,
    copy_model,
    set_submodule,
    weight_layer_types,
)

if TYPE_CHECKING:
    from torch import nn

__all__ = ["ACTIVATION_NAMES", "ActivationSwap", "make_activation", "swap_activations"]

#: Activations gradwatch can swap in, by remedy id (the swappable ids of the one activation
#: table, :mod:`gradwatch._activations`).
ACTIVATION_NAMES: tuple[str, ...] = ACTIVATION_IDS


def _module_class(name: str) -> type[nn.Module]:
    """The torch class of a swappable activation id. Only the ids themselves are accepted
    (not aliases or ``"linear"``): each is a remedy id, and a remedy swaps in an activation."""
    if name not in ACTIVATION_NAMES:
        raise ValueError(f"unknown activation {name!r}; expected one of {list(ACTIVATION_NAMES)}")
    return module_class(name)


def make_activation(name: str, **kwargs: Any) -> nn.Module:
    """A new activation module for a remedy id, e.g. ``make_activation("leaky_relu",
    negative_slope=0.1)``; ``kwargs`` go to the module's constructor.

    Example:
        >>> make_activation("swish")
        SiLU()
    """
    cls = _module_class(name)
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise TypeError(f"bad options for activation {name!r} (nn.{cls.__name__}): {exc}") from exc


def _functional(name: str) -> Callable[..., Any] | None:
    """The functional form of an activation, or None (PReLU owns a parameter)."""
    import torch
    import torch.nn.functional as F

    table: dict[str, Callable[..., Any]] = {
        "sigmoid": torch.sigmoid,
        "tanh": torch.tanh,
        "relu": F.relu,
        "leaky_relu": F.leaky_relu,
        "elu": F.elu,
        "selu": F.selu,
        "swish": F.silu,
        "gelu": F.gelu,
    }
    return table.get(name)


def _functional_targets() -> tuple[dict[Any, str], dict[str, str]]:
    """fx call targets of activations: functions -> label, and tensor method names."""
    import torch
    import torch.nn.functional as F

    funcs: dict[Any, str] = {}
    for fn, label in [
        (torch.sigmoid, "torch.sigmoid"),
        (torch.tanh, "torch.tanh"),
        (torch.relu, "torch.relu"),
        (torch.selu, "torch.selu"),
        (F.sigmoid, "F.sigmoid"),
        (F.tanh, "F.tanh"),
        (F.relu, "F.relu"),
        (F.relu6, "F.relu6"),
        (F.leaky_relu, "F.leaky_relu"),
        (F.elu, "F.elu"),
        (F.celu, "F.celu"),
        (F.selu, "F.selu"),
        (F.silu, "F.silu"),
        (F.gelu, "F.gelu"),
        (F.mish, "F.mish"),
        (F.softplus, "F.softplus"),
        (F.softsign, "F.softsign"),
        (F.hardtanh, "F.hardtanh"),
        (F.logsigmoid, "F.logsigmoid"),
    ]:
        funcs.setdefault(fn, label)
    methods = {m: f"Tensor.{m}" for m in ("sigmoid", "tanh", "relu", "sigmoid_", "tanh_", "relu_")}
    return funcs, methods


@dataclass
class ActivationSwap:
    """What :func:`swap_activations` changed.

    Attributes:
        model: The new model (the input model is untouched).
        to: The activation swapped in.
        swapped: ``(module name, old type)`` of each activation module replaced.
        kept: ``(module name, type, why)`` of each activation module left as it was.
        functional: Functional activation calls found in ``forward`` by torch.fx,
            e.g. ``"torch.sigmoid (node sigmoid_1)"``.
        rewritten: The functional calls that were rewritten (``rewrite_functional=True``).
        trace_error: Why torch.fx could not trace the model (then functional calls, if any,
            were not checked), or None.
    """

    model: nn.Module
    to: str
    swapped: list[tuple[str, str]] = field(default_factory=list)
    kept: list[tuple[str, str, str]] = field(default_factory=list)
    functional: list[str] = field(default_factory=list)
    rewritten: list[str] = field(default_factory=list)
    trace_error: str | None = None

    @property
    def unchanged_functional(self) -> list[str]:
        """Functional activation calls that still use the old activation."""
        return [f for f in self.functional if f not in self.rewritten]

    def summary(self) -> str:
        """A few plain lines: what was swapped, what was left and why."""
        lines = [f"swapped {len(self.swapped)} activation module(s) to {self.to}"]
        lines += [f"  {name or '<root>'}: {old} -> {self.to}" for name, old in self.swapped]
        lines += [f"  kept {name}: {typ} ({why})" for name, typ, why in self.kept]
        if self.rewritten:
            lines.append(
                f"rewrote {len(self.rewritten)} functional call(s): " + ", ".join(self.rewritten)
            )
        if self.unchanged_functional:
            lines.append(
                "NOT changed (functional calls in forward, a module swap cannot reach them; "
                "pass rewrite_functional=True or use nn modules): "
                + ", ".join(self.unchanged_functional)
            )
        if self.trace_error is not None:
            lines.append(
                "functional activations were not checked: torch.fx could not trace the model "
                f"({self.trace_error})"
            )
        return "\n".join(lines)


def _output_activations(model: nn.Module) -> set[str]:
    """Names of activation modules that come after the last weight layer (the output
    activation, e.g. a final Sigmoid giving probabilities): swapping those changes what the
    model means, not how its gradients flow."""
    from torch import nn

    weights = (*weight_layer_types(), nn.RNNBase)
    last_weight = -1
    acts: list[tuple[int, str]] = []
    for i, (name, m) in enumerate(model.named_modules()):
        if isinstance(m, weights):
            last_weight = i
        elif isinstance(m, activation_types()):
            acts.append((i, name))
    return {name for i, name in acts if i > last_weight}


def swap_activations(
    model: nn.Module,
    to: str,
    *,
    include_output: bool = False,
    rewrite_functional: bool = False,
    **options: Any,
) -> ActivationSwap:
    """Replace the activations of a copy of ``model`` by ``to``.

    Every hidden activation module (any of nn.Sigmoid, Tanh, ReLU, LeakyReLU, PReLU, ELU,
    SELU, SiLU, GELU, Mish, Softplus ...) becomes a new ``to`` module. Activation modules
    after the last weight layer (an output Sigmoid, say) are kept unless
    ``include_output=True``. Functional calls in ``forward`` are found with torch.fx and
    reported; with ``rewrite_functional=True`` they are rewritten too and the model returned
    is a ``torch.fx.GraphModule``.

    Args:
        model: The model; it is not modified.
        to: One of :data:`ACTIVATION_NAMES` (``"swish"`` is ``nn.SiLU``).
        include_output: Also swap activations after the last weight layer.
        rewrite_functional: Rewrite functional activation calls through torch.fx.
        **options: Constructor arguments of the new activation (``negative_slope=0.1``).

    Returns:
        An :class:`ActivationSwap` with the new model and what changed.

    Raises:
        ValueError: Unknown ``to``.
        UnsupportedModelError: Nothing could be swapped; the message says what was found.

    Example:
        >>> from torch import nn
        >>> res = swap_activations(nn.Sequential(nn.Linear(2, 2), nn.Sigmoid(),
        ...                                      nn.Linear(2, 1)), "relu")
        >>> res.model[1]
        ReLU()
    """
    cls = _module_class(to)
    make_activation(to, **options)  # validate the options before touching anything
    new = copy_model(model)
    result = ActivationSwap(model=new, to=to)
    outputs = _output_activations(new)
    targets = [(name, m) for name, m in new.named_modules() if isinstance(m, activation_types())]
    for name, m in targets:
        if type(m) is cls and not options:
            result.kept.append((name, type(m).__name__, f"already {to}"))
        elif name in outputs and not include_output:
            result.kept.append(
                (name, type(m).__name__, "output activation; pass include_output=True to swap")
            )
        elif name == "":
            result.kept.append((name, type(m).__name__, "the model itself is the activation"))
        else:
            set_submodule(new, name, make_activation(to, **options))
            result.swapped.append((name, type(m).__name__))
    result.model = _functional_pass(new, to, rewrite_functional, result, options)
    if not result.swapped and not result.rewritten:
        found = (
            f"activation modules {[f'{n}: {t} ({w})' for n, t, w in result.kept]}"
            if result.kept
            else "no activation modules"
        )
        if result.functional:
            found += (
                f" and functional calls {result.functional} (a module swap cannot change "
                "them; pass rewrite_functional=True)"
            )
        elif result.trace_error is not None:
            found += (
                "; torch.fx could not trace the model to look for functional calls "
                f"({result.trace_error})"
            )
        raise UnsupportedModelError(
            f"swap_activations(to={to!r}) changed nothing in {type(model).__name__}: found "
            f"{found}. Supported: activation modules "
            f"({', '.join(t.__name__ for t in activation_types())}) and, with "
            "rewrite_functional=True, functional calls in an fx-traceable forward."
        )
    return result


def _functional_pass(
    model: nn.Module, to: str, rewrite: bool, result: ActivationSwap, options: dict[str, Any]
) -> nn.Module:
    """Find (and optionally rewrite) functional activation calls; returns the model to use."""
    import torch.fx

    try:
        gm = torch.fx.symbolic_trace(model)
    except Exception as exc:  # fx raises many types (TraceError, TypeError, control flow)
        result.trace_error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        return model
    funcs, methods = _functional_targets()
    new_fn = _functional(to)
    changed = False
    for node in gm.graph.nodes:
        if node.op == "call_function" and node.target in funcs:
            label = f"{funcs[node.target]} (node {node.name})"
        elif node.op == "call_method" and node.target in methods:
            label = f"{methods[node.target]} (node {node.name})"
        else:
            continue
        result.functional.append(label)
        if rewrite and new_fn is not None:
            node.op, node.target = "call_function", new_fn
            node.args, node.kwargs = (node.args[0],), dict(options)
            result.rewritten.append(label)
            changed = True
    if rewrite and result.functional and new_fn is None:
        raise UnsupportedModelError(
            f"cannot rewrite functional activation calls to {to!r}: it owns a parameter "
            "(nn.PReLU) and has no functional form; use activation modules instead."
        )
    if changed:
        gm.graph.lint()
        gm.recompile()
        return gm
    return model
