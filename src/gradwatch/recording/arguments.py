"""The recorder's argument checks: each names the argument, the value and the fix.

``Watch`` runs all of them before it makes a directory or attaches a hook, so a bad argument
leaves nothing behind.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

from .buffer import buffer_bytes_per_step, scalar_dtype
from .layers import LayerSpec, find_layers
from .sampled import WindowSums


def check_int(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(
            f"Expected argument `{name}` to be an integer >= {minimum} but got {value!r}. "
            f"Pass e.g. `{name}=1` to record every step."
        )
    return value


#: The most memory a flush window's buffers may take (on the model's device, so on a GPU it
#: is GPU memory): 256 MiB holds ~27,000 steps of a 50-layer model when every step is
#: sampled, far past any useful window; the automatic window stays under 80 MB.
MAX_WINDOW_BYTES = 256 * 2**20


def check_flush_window(flush_every: int, n_layers: int, device: torch.device) -> None:
    """Refuse a window whose buffers would be huge: the step buffer is allocated up front
    (``flush_every=10**6`` on ResNet-50's 107 layers would be 5.2 GiB at once) and the
    activation sums grow to a window's worth when every step is sampled."""
    per_step = buffer_bytes_per_step(n_layers, device)
    per_step += WindowSums.bytes_per_step(n_layers, scalar_dtype(device))
    nbytes = flush_every * per_step
    if nbytes > MAX_WINDOW_BYTES:
        raise ValueError(
            f"Argument `flush_every`={flush_every} would keep the statistics of {flush_every} "
            f"steps x {n_layers} layers on {device}: up to {nbytes / 2**30:.1f} GiB. Pass "
            f"`flush_every` <= {MAX_WINDOW_BYTES // per_step}, or leave it None to let "
            "gradwatch choose the window."
        )


def check_optimizer(optimizer: torch.optim.Optimizer, model: nn.Module) -> None:
    model_ids = {id(p) for p in model.parameters()}
    foreign = [
        p for group in optimizer.param_groups for p in group["params"] if id(p) not in model_ids
    ]
    if foreign:
        shapes = ", ".join(str(tuple(p.shape)) for p in foreign[:3])
        raise ValueError(
            f"Argument `optimizer` updates {len(foreign)} parameter(s) that are not in "
            f"`model` ({type(model).__name__}), with shapes {shapes}. Pass the optimizer "
            "built from this model's parameters, e.g. `torch.optim.SGD(model.parameters())`."
        )


def check_scaler(scaler: Any, optimizer: torch.optim.Optimizer | None) -> None:
    """Refuse anything but a GradScaler instance, before the recorder wraps its ``step``."""
    if scaler is None:
        return
    if isinstance(scaler, type):
        # Wrapping `step` on a class would patch it for every scaler in the process.
        raise TypeError(
            f"Expected argument `scaler` to be a GradScaler instance but got the class "
            f"{scaler.__module__}.{scaler.__qualname__} itself. Pass the instance you call "
            "`scaler.step(optimizer)` on, e.g. `scaler = torch.amp.GradScaler()` then "
            "`gw.watch(model, opt, scaler=scaler)`."
        )
    if not all(callable(getattr(scaler, name, None)) for name in ("scale", "step", "update")):
        raise TypeError(
            f"Expected argument `scaler` to be a torch.amp.GradScaler (with `scale`, `step` "
            f"and `update` methods) but got {type(scaler).__name__}. Pass the GradScaler you "
            "train with, or leave `scaler` out."
        )
    if optimizer is None:
        raise ValueError(
            "Argument `scaler` needs the `optimizer` it steps (skipped steps are the "
            "optimizer steps the scaler did not take). Pass both: "
            "`gw.watch(model, opt, scaler=scaler)`."
        )


def check_model(model: Any) -> nn.Module:
    """``model`` must be an ``nn.Module`` whose parameters hold data (not on ``meta``)."""
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"Expected argument `model` to be a torch.nn.Module but got "
            f"{type(model).__name__}. Pass the model you train, e.g. `gw.watch(model, opt)`."
        )
    # A model built on the meta device (deferred initialisation) has shapes but no values:
    # the recorder's buffers would be meta too, and its first forward would fail inside a hook.
    meta = next((name for name, p in model.named_parameters() if p.device.type == "meta"), None)
    if meta is not None:
        raise ValueError(
            f"Expected argument `model` to hold its parameters' values, but parameter "
            f"'{meta}' is on the meta device (no data). Materialise the model first, e.g. "
            f"`model.to_empty(device='cuda')` and initialise it, then call `gw.watch(model, opt)`."
        )
    return model


def check_layers(model: nn.Module) -> list[LayerSpec]:
    """The layers of ``model`` with trainable parameters: an error when it has no parameters,
    a warning when every one is frozen (nothing to record, training goes on)."""
    specs, frozen = find_layers(model)
    if not specs and frozen == 0:
        raise ValueError(
            f"Argument `model` ({type(model).__name__}) has no parameters, so there are no "
            "gradients to watch. Pass the model that owns the trainable parameters."
        )
    if not specs:
        warnings.warn(
            f"every parameter of {type(model).__name__} is frozen (requires_grad=False): "
            "gradwatch records nothing. Unfreeze the layers you train.",
            UserWarning,
            stacklevel=4,
        )
    return specs


def check_dense_steps(dense_steps: Any) -> int:
    """``dense_steps`` must be an integer >= 0."""
    if isinstance(dense_steps, bool) or not isinstance(dense_steps, int) or dense_steps < 0:
        raise ValueError(
            f"Expected argument `dense_steps` to be an integer >= 0 but got {dense_steps!r}."
            " Pass e.g. `dense_steps=20` to sample each of the first 20 steps, or 0 to "
            "sample only every `sample_every` steps."
        )
    return dense_steps


def check_step_begin(step_begin: Any, optimizer: torch.optim.Optimizer | None) -> str:
    """``step_begin`` is "optimizer", or "caller" when there is an optimizer to end the step."""
    if step_begin not in ("optimizer", "caller") or (step_begin == "caller" and optimizer is None):
        raise ValueError(
            f"Expected argument `step_begin` to be 'optimizer' or 'caller' (with an "
            f"optimizer) but got {step_begin!r} with optimizer={optimizer!r}. Leave it out "
            "unless a framework callback calls `w.begin_step()` itself."
        )
    return str(step_begin)
