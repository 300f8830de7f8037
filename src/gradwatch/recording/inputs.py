"""The scale of what the model is fed, read once at its first training forward.

Initialisations assume inputs of about unit scale (He, Xavier and PyTorch's defaults keep a
unit-variance input at unit variance); features in raw units or pixels in 0-255 are tens or
hundreds of times that, which scales the first layer's outputs and its weights' gradients
alike. A forward pre-hook on the model takes the first floating-point tensor it is called with
(positional first, then keyword: ``pixel_values``, ``inputs_embeds``, ``input_values``) at
the first forward in training mode with gradients on, and removes itself: two reductions
once a run, read on the host when ``meta.json`` is written. Integer inputs (token ids) have no
scale to read and are skipped.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from .stats import accumulation_dtype


class InputProbe:
    """The RMS and mean of the model's first floating-point input, at its first training
    forward (``meta["model_input"]``)."""

    def __init__(self, model: nn.Module) -> None:
        self._model = model
        self._handle: RemovableHandle | None = None
        self._stats: tuple[torch.Tensor, torch.Tensor] | None = None
        self._shape: list[int] | None = None
        self._source: str | None = None

    def arm(self) -> None:
        """Hook the model's next training forward (removed after it, or by :meth:`disarm`)."""
        if self._handle is None and self._stats is None:
            self._handle = self._model.register_forward_pre_hook(self._on_call, with_kwargs=True)

    def disarm(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def _on_call(self, module: nn.Module, args: Any, kwargs: dict[str, Any]) -> None:
        if not (module.training and torch.is_grad_enabled()):
            return  # (a validation pass before training: not what is trained on)
        self.disarm()
        found = _first_float(args, kwargs)
        if found is None:
            return
        source, x = found
        with torch.no_grad():
            # Reductions over the tensor as it is, half precision accumulated in float32: no
            # float32 copy of a large (half-precision) batch is made.
            v = x.detach()
            dtype = accumulation_dtype(v)
            norm = torch.linalg.vector_norm(v, dtype=dtype)
            self._stats = (norm / math.sqrt(v.numel()), v.mean(dtype=dtype))
        self._shape, self._source = list(x.shape), source

    def meta(self) -> dict[str, Any] | None:
        """``{"source", "shape", "rms", "mean"}`` of the input read, or None (none yet, or
        no floating-point input)."""
        if self._stats is None:
            return None
        rms, mean = (float(t) for t in self._stats)
        return {"source": self._source, "shape": self._shape, "rms": rms, "mean": mean}


#: The floating-point dtypes read (float8 and other storage formats have no reductions). Only
#: plain dense tensors are read: the probe must never raise inside the user's forward.
_READ = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _first_float(args: Any, kwargs: dict[str, Any]) -> tuple[str, torch.Tensor] | None:
    """(where, tensor) of the first non-empty floating-point tensor among ``args`` then
    ``kwargs`` (a positional dict or sequence is looked into one level), else None."""
    candidates: list[tuple[str, Any]] = [(f"arg{i}", a) for i, a in enumerate(args)]
    candidates += list(kwargs.items())
    for name, value in candidates:
        inner = (
            list(value.items())
            if isinstance(value, dict)
            else [(f"{name}[{j}]", v) for j, v in enumerate(value)]
            if isinstance(value, (list, tuple))
            else [(name, value)]
        )
        for where, v in inner:
            if (
                type(v) is torch.Tensor  # (not a subclass: a DTensor's shard, a fake one)
                and v.layout == torch.strided  # (not sparse, not nested)
                and v.dtype in _READ
                and v.device.type != "meta"
                and v.numel()
            ):
                return str(where), v
    return None
