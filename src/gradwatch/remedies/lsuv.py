"""Layer-sequential unit-variance init (LSUV, Mishkin & Matas 2016): a data-driven init.

The one remedy of :mod:`.init`'s family that needs a batch of inputs: it runs the model
layer by layer and rescales each weight until the layer's output variance is 1.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
from torch import nn

from ._common import UnsupportedModelError, atomic_, type_names, weight_layer_types
from .init import found_types, module_tensor, reset_norms

__all__ = ["init_lsuv_"]


class _StopForwardError(Exception):
    """Raised by the LSUV hook once the layer being scaled has produced its output."""


def init_lsuv_(
    model: nn.Module,
    inputs: torch.Tensor | tuple[Any, ...],
    *,
    tol: float = 0.1,
    max_iter: int = 10,
) -> nn.Module:
    """Layer-sequential unit-variance init (LSUV, Mishkin & Matas 2016), in place.

    First torch's norm layers are reset to their own init (as by the other init remedies) and
    every Linear/Conv weight is set orthogonal and its bias to 0; then, layer by layer in
    forward order, the weight is divided by the standard deviation of the layer's output on
    ``inputs`` until that variance is within ``tol`` of 1 (at most ``max_iter`` passes per
    layer). The forward passes run in eval mode (dropout off, BatchNorm running statistics
    untouched by them) under ``torch.no_grad``.

    Args:
        model: Modified in place and returned.
        inputs: One batch of model inputs: a tensor (``model(inputs)``) or a tuple of
            positional arguments (``model(*inputs)``).
        tol: Accepted distance of the output variance from 1.
        max_iter: Most rescaling passes per layer; a warning names the layers that did not
            converge.

    Raises:
        ValueError: Bad ``tol``/``max_iter``, or a layer whose output variance is 0 or not
            finite on the batch (it cannot be rescaled); the model is then restored.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> m = nn.Sequential(nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 2))
        >>> m = init_lsuv_(m, torch.randn(64, 8))
    """
    if not (tol > 0):
        raise ValueError(f"expected `tol` > 0 but got {tol}")
    if not (isinstance(max_iter, int) and max_iter >= 1):
        raise ValueError(f"expected `max_iter` to be an int >= 1 but got {max_iter!r}")
    args = inputs if isinstance(inputs, tuple) else (inputs,)
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, weight_layer_types())]
    if not layers:
        raise UnsupportedModelError(
            f"LSUV needs Linear or Conv layers; {type(model).__name__} has "
            f"{found_types(model)}. Supported: {type_names(weight_layer_types())}"
        )
    was_training = model.training
    unconverged: list[str] = []
    try:
        with atomic_(model), torch.no_grad():
            model.eval()
            reset_norms(model)
            for _, m in layers:
                weight, bias = module_tensor(m, "weight"), module_tensor(m, "bias")
                assert weight is not None
                torch.nn.init.orthogonal_(weight)
                if bias is not None:
                    bias.zero_()
            for name in _forward_order(model, args, [n for n, _ in layers]):
                layer = model.get_submodule(name)
                for it in range(max_iter + 1):
                    var = _output_variance(model, layer, args)
                    if not math.isfinite(var) or var <= 0.0:
                        raise ValueError(
                            f"LSUV: output variance of layer {name!r} "
                            f"({type(layer).__name__}) is {var} on the batch, so it cannot "
                            "be rescaled to 1; check the inputs (constant? non-finite?) and "
                            "the layers before it."
                        )
                    if abs(var - 1.0) < tol:
                        break
                    if it == max_iter:
                        unconverged.append(f"{name} (variance {var:.3g})")
                        break
                    weight = module_tensor(layer, "weight")
                    assert weight is not None
                    weight.div_(math.sqrt(var))
    finally:
        model.train(was_training)
    if unconverged:
        warnings.warn(
            f"LSUV did not reach unit variance within tol={tol} in max_iter={max_iter} "
            f"passes for: {', '.join(unconverged)}",
            RuntimeWarning,
            stacklevel=2,
        )
    return model


def _forward_order(model: nn.Module, args: tuple[Any, ...], names: list[str]) -> list[str]:
    """Layer names in the order the forward pass first calls them (unused layers last)."""
    order: list[str] = []
    handles = []
    for name in names:

        def hook(_m: nn.Module, _i: Any, _o: Any, name: str = name) -> None:
            if name not in order:
                order.append(name)

        handles.append(model.get_submodule(name).register_forward_hook(hook))
    try:
        model(*args)
    finally:
        for h in handles:
            h.remove()
    return order + [n for n in names if n not in order]


def _output_variance(model: nn.Module, layer: nn.Module, args: tuple[Any, ...]) -> float:
    """Variance of ``layer``'s output on the batch; the forward stops right after it."""
    captured: list[torch.Tensor] = []

    def hook(_m: nn.Module, _i: Any, out: torch.Tensor) -> None:
        captured.append(out.detach())
        raise _StopForwardError

    handle = layer.register_forward_hook(hook)
    try:
        model(*args)
    except _StopForwardError:
        pass
    finally:
        handle.remove()
    if not captured:
        raise ValueError(f"LSUV: layer {type(layer).__name__} was not called by the forward pass")
    return float(captured[0].double().var())  # one host sync per pass: init, not training
