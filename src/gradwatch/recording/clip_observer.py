"""Pre-clipping gradient statistics when the user clips with ``clip_grad_norm_``.

The recorder reads gradients in the optimizer's step pre-hook, after the user's
``torch.nn.utils.clip_grad_norm_``: without help it would record the clipped norm (sitting
exactly at ``max_norm``), and exploding gradients would be invisible exactly where users
clip. While a watch is open, ``torch.nn.utils.clip_grad_norm_`` and
``torch.nn.utils.clip_grad.clip_grad_norm_`` (the attribute lookups Hugging Face, Lightning
and accelerate make at call time) are wrapped: the wrapper calls the original and hands its
returned total norm (a device tensor, never read on the host) and ``max_norm`` to every open
watch. At the step the watch divides each clipped layer's gradient statistics by the clip
coefficient ``min(1, max_norm / (total + 1e-6))`` (torch's formula): norm clipping scales all
gradients by that one coefficient, so the division recovers the pre-clip values exactly.

Nested watches share one wrapper; the original functions are put back when the last watch
closes (unless someone wrapped them again meanwhile: then our wrapper stays under theirs and
passes calls straight through).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.utils
import torch.nn.utils.clip_grad

from .distributed import whole
from .shared_patch import SharedPatch

_EPS = 1e-6  # torch.nn.utils.clip_grad_norm_'s: coefficient = max_norm / (total + 1e-6)


@dataclass
class ClipSeen:
    """The clipping of one step: the per-layer coefficient and how to check it is current."""

    coef: torch.Tensor  # (layers,) on the device, 1 for layers that were not clipped
    clipped: torch.Tensor  # (layers,) bool on the device: the layers clip_grad_norm_ saw
    grad: torch.Tensor  # one clipped gradient, to tell that the step's gradients are these
    version: int  # its version after the clipping


class ClipObserver:
    """The clippings of one watch's parameters since its last step.

    Args:
        params: The watched parameters, in layer order.
        param_layer: The layer of each (host list).
        n_layers: Number of layers.
        device: Where the layers' statistics live.
    """

    def __init__(
        self,
        params: list[torch.nn.Parameter],
        param_layer: list[int],
        n_layers: int,
        device: torch.device,
    ) -> None:
        self._layer_of = {id(p): i for p, i in zip(params, param_layer, strict=True)}
        self._n = n_layers
        self._device = device
        self._masks: dict[tuple[int, ...], torch.Tensor] = {}
        self.seen: ClipSeen | None = None
        #: Called with the parameters of each ``torch.nn.utils.clip_grad_norm_`` of this
        #: watch's gradients, which scales every gradient in place once (even by 1): the
        #: zeroing probe allows for the write. A clipper reporting through
        #: ``Watch.observe_clip`` may skip the write below ``max_norm``: not told.
        self.listeners: list[Callable[[list[torch.Tensor]], None]] = []

    def open(self) -> None:
        _PATCH.add(self)

    def close(self) -> None:
        _PATCH.discard(self)
        self.seen = None

    def observe(
        self,
        params: list[torch.Tensor],
        total: torch.Tensor,
        max_norm: float,
        *,
        scaled_all: bool = False,
    ) -> None:
        """Record one ``clip_grad_norm_`` call (no host sync); ``scaled_all``: every
        gradient was scaled in place (torch's), which the listeners are told."""
        layers = tuple(sorted({self._layer_of[id(p)] for p in params if id(p) in self._layer_of}))
        grads = [p.grad for p in params if id(p) in self._layer_of and p.grad is not None]
        if not layers or not grads:
            return  # another model's parameters
        for listener in self.listeners if scaled_all else ():
            listener(params)
        mask = self._masks.get(layers)
        if mask is None:
            mask = torch.zeros(self._n, dtype=torch.bool)
            mask[list(layers)] = True
            mask = mask.to(self._device)
            self._masks[layers] = mask
        # Under FSDP2 the total is a DTensor, which cannot mix with the mask below.
        total = whole(total.detach()).to(self._device, torch.float32)
        coef = (float(max_norm) / (total + _EPS)).clamp(max=1.0)
        # A non-finite total leaves the gradients non-finite whatever the coefficient: keep
        # them as seen (coefficient 1) so the non-finite checks still count them.
        coef = torch.where(torch.isfinite(coef) & (coef > 0), coef, torch.ones_like(coef))
        per_layer = torch.where(mask, coef, torch.ones((), device=self._device))
        prev = self.seen
        if prev is not None and _current(prev, grads[0]):
            per_layer = per_layer * prev.coef  # clipped twice: the coefficients multiply
            mask = mask | prev.clipped
        self.seen = ClipSeen(per_layer, mask, grads[0], grads[0]._version)

    def take(self, params: list[torch.nn.Parameter]) -> ClipSeen | None:
        """The clipping of the gradients about to be recorded, if they are the clipped ones
        (a later ``zero_grad`` or backward makes an observation stale)."""
        seen, self.seen = self.seen, None
        if seen is None:
            return None
        return seen if _current(seen, None, params) else None


def _current(
    seen: ClipSeen, grad: torch.Tensor | None, params: Iterable[torch.Tensor] = ()
) -> bool:
    """Whether ``seen.grad`` is still a gradient of the model, unchanged since the clip."""
    if grad is not None:
        return grad is seen.grad and grad._version == seen.version
    return seen.grad._version == seen.version and any(p.grad is seen.grad for p in params)


class _Patch(SharedPatch["ClipObserver"]):
    """The one wrapper around ``clip_grad_norm_``, installed while any watch is open."""

    def __init__(self) -> None:
        super().__init__()
        self.original: Callable[..., torch.Tensor] | None = None
        self.wrapper: Callable[..., torch.Tensor] | None = None

    def _install(self) -> bool:
        original = torch.nn.utils.clip_grad.clip_grad_norm_
        observers = self.users
        patch = self

        @functools.wraps(original)
        def clip_grad_norm_(
            parameters: torch.Tensor | Iterable[torch.Tensor],
            max_norm: float,
            *args: Any,
            **kwargs: Any,
        ) -> torch.Tensor:
            if not observers or patch.wrapper is not clip_grad_norm_:
                # No watch open, or this wrapper was uninstalled but is still called from
                # under someone else's wrapper: pass straight through.
                return original(parameters, max_norm, *args, **kwargs)
            # A generator can be read once: keep the list for the observers.
            params = [parameters] if isinstance(parameters, torch.Tensor) else list(parameters)
            total = original(params, max_norm, *args, **kwargs)
            for observer in list(observers):
                observer.observe(params, total, max_norm, scaled_all=True)
            return total

        self.original, self.wrapper = original, clip_grad_norm_
        torch.nn.utils.clip_grad.clip_grad_norm_ = clip_grad_norm_
        torch.nn.utils.clip_grad_norm_ = clip_grad_norm_
        return True

    def _uninstall(self) -> None:
        for holder in (torch.nn.utils.clip_grad, torch.nn.utils):
            if getattr(holder, "clip_grad_norm_", None) is self.wrapper:
                holder.clip_grad_norm_ = self.original  # type: ignore[attr-defined]
        self.wrapper = None
        self.original = None


_PATCH = _Patch()
