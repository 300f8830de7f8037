"""The training dtype under mixed precision, and the gradient magnitude that underflows it.

``grad_underflow`` is the fraction of a layer's gradient entries whose magnitude, *as the
backward pass held it*, is below the smallest normal number of the training dtype: zero or
subnormal (fp16: ``2**-14``; bf16: ``2**-126``, the range of float32). Such an entry lost its
value (flushed to zero) or most of its precision (a subnormal keeps fewer bits).

Which dtype, in this order:

1. The gradients' own dtype when it is float16 or bfloat16 (a model cast with ``.half()``).
2. Else the autocast dtype of the model's forward (``torch.autocast``), read by forward
   pre-hooks on the model and its first layer (:func:`autocast_readers`): fp32 parameters
   then get fp32 gradients, but the matmuls of the backward ran in the autocast dtype, where
   small values underflowed.
3. Else the ``param_dtype`` of an FSDP2 ``MixedPrecisionPolicy`` on the model
   (``fully_shard(module, mp_policy=...)``): the sharded parameters and their gradients stay
   float32, but forward and backward ran on parameters cast to that dtype.
4. Else float16 when a ``GradScaler`` was passed (it exists for fp16).
5. Else float32 training: the metric is not measured (NaN).

Under ``GradScaler`` the backward held ``S * g`` (the loss was scaled by ``S``) and the
optimizer's step sees the unscaled ``g``: so an entry counts when ``|g| * S < tiny``. That is
the meaningful question ("did the loss scale keep this layer's gradient representable?"): the
unscaled fp32 ``g`` alone would count entries that the scale in fact rescued. The entries are
counted on the gradient the optimizer receives (an exact zero, e.g. a dead unit's, counts: after
the fact it cannot be told from an underflow), on sampled steps only: one more pass over the
gradients, like ``grad_max``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

_HALF = (torch.float16, torch.bfloat16)


class Precision:
    """What the recorder knows of the training dtype (see the module docstring).

    Attributes:
        scaler: The ``GradScaler`` passed to ``gw.watch``, if any.
        autocast: The autocast dtype of the last forward, None outside autocast.
    """

    def __init__(self) -> None:
        self.scaler: Any | None = None
        self.autocast: torch.dtype | None = None
        #: The half-precision param_dtype of an FSDP2 MixedPrecisionPolicy on the model.
        self.fsdp: torch.dtype | None = None
        self._device_type = "cpu"

    def forward_pre_hook(self, device: torch.device) -> Callable[[nn.Module, Any], None]:
        """The model's forward pre-hook that reads the autocast state of ``device``'s type.

        Only sampled steps read it (the underflow count), so the recorder attaches it with
        the sampled step's hooks: on every forward it cost ~6 us a step inside a CPU training
        loop, half of an unrecorded step's cost (a root hook makes every call of the model
        take ``nn.Module``'s hooked path).
        """
        self._device_type = device.type

        def hook(module: nn.Module, args: Any) -> None:
            dev = self._device_type
            on = torch.is_autocast_enabled(dev)
            self.autocast = torch.get_autocast_dtype(dev) if on else None

        return hook

    def attach(self, modules: list[nn.Module], device: torch.device) -> list[RemovableHandle]:
        """Watch every forward of ``modules`` (:func:`autocast_readers`) for autocast (when
        no sampled-step hooks are)."""
        hook = self.forward_pre_hook(device)
        return [m.register_forward_pre_hook(hook) for m in modules]

    def _scaler_on(self) -> bool:
        return _scaler_enabled(self.scaler)

    def dtype(self, grad_dtype: torch.dtype) -> torch.dtype | None:
        """The training dtype for gradients of ``grad_dtype``; None for float32 training."""
        if grad_dtype in _HALF:
            return grad_dtype
        if self.autocast in _HALF:
            return self.autocast
        if self.fsdp is not None:
            return self.fsdp
        if self._scaler_on():
            return torch.float16
        return None

    def thresholds(
        self, grads: list[torch.Tensor], *, scaled: bool = False
    ) -> list[torch.Tensor | float] | None:
        """Per gradient, the magnitude below which an entry underflowed; None: not measured.

        A threshold is a device tensor (``tiny / scale``, no host sync) where a GradScaler
        scaled the loss and the gradients were unscaled since, else a number (``scaled``:
        they still carry the scale, as the backward held them).
        """
        if not grads:
            return None
        out: list[torch.Tensor | float] = []
        scale = getattr(self.scaler, "_scale", None) if self._scaler_on() and not scaled else None
        per_device: dict[tuple[torch.dtype, torch.device], torch.Tensor] = {}  # a kernel each
        any_measured = False
        for g in grads:
            dtype = self.dtype(g.dtype)
            if dtype is None:
                out.append(0.0)  # nothing is below 0: counts 0 (a float32 parameter)
                continue
            any_measured = True
            tiny = torch.finfo(dtype).tiny
            if scale is not None and g.dtype not in _HALF:
                key = (dtype, g.device)
                if key not in per_device:
                    per_device[key] = tiny / scale.to(g.device, torch.float32)
                out.append(per_device[key])
            else:
                out.append(tiny)
        return out if any_measured else None


def _scaler_enabled(scaler: Any | None) -> bool:
    """Whether ``scaler`` is a GradScaler that scales (``GradScaler(enabled=False)`` does not)."""
    return scaler is not None and bool(getattr(scaler, "is_enabled", lambda: True)())


def autocast_readers(model: nn.Module, layers: list[nn.Module]) -> list[nn.Module]:
    """The modules whose forward pre-hook reads the autocast state: the model, and its first
    layer that is not the model itself.

    The model's own pre-hook runs before its ``forward``, so it misses an autocast that a
    wrapper enters inside ``forward`` (accelerate's ``prepare`` and so the Hugging Face
    Trainer wrap ``model.forward`` in one); a layer's runs inside it, later, and its reading
    wins. The model's covers a model whose first layer is not called.
    """
    first = next((m for m in layers if m is not model), None)
    return [model] if first is None else [model, first]


def fsdp_param_dtype(model: nn.Module) -> torch.dtype | None:
    """The half-precision ``param_dtype`` of an FSDP2 ``MixedPrecisionPolicy`` on ``model``.

    The first ``fully_shard``-ed module that has one decides (a policy is usually given once,
    to every ``fully_shard`` call). FSDP2 keeps the policy in its private state: a torch that
    moves it makes this None, the float32 answer, never an error.
    """
    for module in model.modules():
        get_state = getattr(module, "_get_fsdp_state", None)
        if get_state is None:
            continue
        try:
            policy = get_state()._mp_policy
        except Exception:  # private FSDP2 state: absent means no policy
            continue
        dtype = getattr(policy, "param_dtype", None)
        if dtype in _HALF:
            return dtype
    return None


# A fused optimizer under GradScaler (``AdamW(fused=True)``: Hugging Face's default optimizer
# from torch 2.8, ``adamw_torch_fused``) sets ``_step_supports_amp_scaling``. GradScaler then
# neither unscales its gradients nor skips its step: it hands the optimizer the loss scale
# and the inf flag as the attributes ``grad_scale`` and ``found_inf`` for the duration of
# ``optimizer.step()``, and the fused kernel divides by the one and, when the other is set,
# leaves the weights as they were. So the step hooks see gradients still multiplied by the
# loss scale, and a step that GradScaler in effect skipped.


def still_scaled(optimizer: Any, scaler: Any | None) -> torch.Tensor | None:
    """The loss scale the optimizer's gradients still carry as its step begins, or None.

    Inside ``GradScaler.step`` (the optimizer's step pre-hook) the scaler's own attribute says
    (None once ``unscale_`` ran, e.g. for clipping). Before it (a step begun by its caller,
    as Lightning's callback does) the scaler's state for this optimizer does: scaled unless
    ``unscale_`` ran. Only for optimizers that unscale in their own kernel; None otherwise.
    """
    if not getattr(optimizer, "_step_supports_amp_scaling", False):
        return None
    if hasattr(optimizer, "found_inf"):
        scale = getattr(optimizer, "grad_scale", None)
        return scale if isinstance(scale, torch.Tensor) else None
    if not _scaler_enabled(scaler):
        return None
    states = getattr(scaler, "_per_optimizer_states", None)  # GradScaler's private state
    state = states.get(id(optimizer)) if isinstance(states, dict) else None
    stage = state.get("stage") if isinstance(state, dict) else None
    if getattr(stage, "name", None) == "UNSCALED":
        return None
    scale = getattr(scaler, "_scale", None)
    return scale if isinstance(scale, torch.Tensor) else None


def fused_found_inf(optimizer: Any) -> torch.Tensor | None:
    """GradScaler's inf flag as the fused optimizer's step in progress got it (nonzero: the
    step left the weights as they were), read in its step post-hook; None elsewhere."""
    if not getattr(optimizer, "_step_supports_amp_scaling", False):
        return None
    found = getattr(optimizer, "found_inf", None)
    return found if isinstance(found, torch.Tensor) else None
