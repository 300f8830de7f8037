"""Gradient clipping by global norm, by value, and adaptive (AGC), with on-device analytics.

The functions ``clip_grad_norm_``, ``clip_grad_value_`` and ``clip_grad_adaptive_`` clip in
place and return a :class:`ClipResult` of 0-dim device tensors; :class:`GradientClipper`
attaches one of them to any optimizer through ``optimizer.register_step_pre_hook`` and keeps
per-step statistics (total norm, clip coefficient, clipped flag, non-finite flag) in a
device buffer, read back to the host only when :meth:`GradientClipper.stats` is called.

Unlike ``torch.nn.utils.clip_grad_norm_`` (whose ``max_norm / (inf + 1e-6)`` coefficient
turns an inf gradient into NaNs when the norm is inf), a step whose gradients are not all
finite is left unchanged and recorded as non-finite (or raises with
``error_if_nonfinite=True``), so the recorder and the rules still see the inf/NaN where it
arose. The choice is made with ``torch.where`` on the device: no host sync per step.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import numpy as np
import torch
from torch import nn

from .._ops import foreach_norms, group_by_device_dtype

if TYPE_CHECKING:
    from gradwatch.trace import Trace

__all__ = [
    "ClipResult",
    "ClipStats",
    "GradientClipper",
    "MaxNormSuggestion",
    "NonFiniteGradientError",
    "clip_grad_adaptive_",
    "clip_grad_norm_",
    "clip_grad_value_",
    "suggest_max_norm",
]

ClipMode = Literal["norm", "value", "adaptive"]
Params = Iterable[torch.Tensor] | torch.Tensor | nn.Module


class NonFiniteGradientError(RuntimeError):
    """Raised with ``error_if_nonfinite=True`` when a gradient holds inf or NaN."""


class ClipResult(NamedTuple):
    """One clipping call, as 0-dim tensors on the gradients' device (no host sync).

    Attributes:
        total_norm: Global norm of the gradients before clipping (inf/NaN if non-finite).
        clip_coef: Factor applied: the global one for ``norm``; for ``value``
            ``clip_value / max|g|``; for ``adaptive`` the smallest per-unit factor. 1 when
            nothing was clipped or the gradients were not finite.
        clipped: True when some gradient was changed.
        nonfinite: True when some gradient held inf/NaN (then nothing was changed).
    """

    total_norm: torch.Tensor
    clip_coef: torch.Tensor
    clipped: torch.Tensor
    nonfinite: torch.Tensor


def _params(parameters: Params) -> list[torch.Tensor]:
    if isinstance(parameters, nn.Module):
        return list(parameters.parameters())
    if isinstance(parameters, torch.Tensor):
        return [parameters]
    return list(parameters)


def _grads(params: list[torch.Tensor]) -> list[torch.Tensor]:
    return [p.grad for p in params if p.grad is not None]


def _total_norm(grads: list[torch.Tensor], norm_type: float) -> torch.Tensor:
    """Norm of all gradients together, computed as torch's clip_grad_norm_ does: one
    ``_foreach_norm`` per (device, dtype) group (half precision accumulated in float32), then
    the norm of the stacked norms, in the widest gradient dtype (at least float32)."""
    dtype = functools.reduce(torch.promote_types, (g.dtype for g in grads), torch.float32)
    return torch.linalg.vector_norm(foreach_norms(grads, norm_type, dtype=dtype), norm_type)


def _empty_result(device: torch.device | None = None) -> ClipResult:
    zero = torch.zeros((), device=device)
    return ClipResult(zero, torch.ones((), device=device), zero.bool(), zero.bool())


def _check_finite(total: torch.Tensor, error_if_nonfinite: bool, what: str) -> torch.Tensor:
    finite = torch.isfinite(total)
    # only with error_if_nonfinite: this reads a device value on the host (a sync)
    if error_if_nonfinite and not bool(finite):
        raise NonFiniteGradientError(
            f"{what}: the gradients hold inf or NaN (total norm {float(total)}); nothing was "
            "clipped. Find the layer with the recorder's `nonfinite` metric, or pass "
            "error_if_nonfinite=False to skip clipping on such steps."
        )
    return finite


def clip_grad_norm_(
    parameters: Params,
    max_norm: float,
    norm_type: float = 2.0,
    *,
    error_if_nonfinite: bool = False,
) -> ClipResult:
    """Scale all gradients in place so that their global norm is at most ``max_norm``.

    Same coefficient as ``torch.nn.utils.clip_grad_norm_`` (``max_norm / (norm + 1e-6)``,
    capped at 1), but when the norm is inf/NaN the gradients are left as they are (torch
    would multiply them by 0 and make NaNs from infs) and ``nonfinite`` is set.

    Args:
        parameters: Tensors (or a module) whose ``.grad`` are clipped.
        max_norm: Largest allowed global norm (> 0).
        norm_type: p of the p-norm (``math.inf`` for the max norm).
        error_if_nonfinite: Raise :class:`NonFiniteGradientError` instead (syncs the host).

    Example:
        >>> p = torch.nn.Parameter(torch.zeros(2)); p.grad = torch.tensor([3.0, 4.0])
        >>> r = clip_grad_norm_([p], max_norm=1.0)
        >>> [round(v, 3) for v in p.grad.tolist()], round(float(r.total_norm), 3)
        ([0.6, 0.8], 5.0)
    """
    if not (isinstance(max_norm, (int, float)) and max_norm > 0):
        raise ValueError(f"expected `max_norm` > 0 but got {max_norm!r}")
    grads = _grads(_params(parameters))
    if not grads:
        return _empty_result()
    total = _total_norm(grads, float(norm_type))
    finite = _check_finite(total, error_if_nonfinite, "clip_grad_norm_")
    raw = max_norm / (total + 1e-6)
    # multiplying by a clamped coefficient (1 when not finite) avoids a data-dependent
    # `if`, which would cost a host <-> device sync every step
    coef = torch.where(finite, torch.clamp(raw, max=1.0), torch.ones_like(raw))
    for (device, _), idx in group_by_device_dtype(grads).items():
        torch._foreach_mul_([grads[i] for i in idx], coef.to(device))
    return ClipResult(total, coef, finite & (raw < 1.0), ~finite)


def clip_grad_value_(
    parameters: Params, clip_value: float, *, error_if_nonfinite: bool = False
) -> ClipResult:
    """Clamp every gradient entry in place to ``[-clip_value, clip_value]``.

    Equal to ``torch.nn.utils.clip_grad_value_`` on finite gradients; when some entry is
    inf/NaN nothing is changed (clamping would hide an inf as ``clip_value``) and
    ``nonfinite`` is set. ``clip_coef`` is ``clip_value / max|g|`` capped at 1.

    Example:
        >>> p = torch.nn.Parameter(torch.zeros(2)); p.grad = torch.tensor([3.0, -0.5])
        >>> _ = clip_grad_value_([p], 1.0); p.grad.tolist()
        [1.0, -0.5]
    """
    if not (isinstance(clip_value, (int, float)) and clip_value > 0):
        raise ValueError(f"expected `clip_value` > 0 but got {clip_value!r}")
    grads = _grads(_params(parameters))
    if not grads:
        return _empty_result()
    total = _total_norm(grads, 2.0)
    finite = _check_finite(total, error_if_nonfinite, "clip_grad_value_")
    max_abs = _total_norm(grads, math.inf)
    # bound = clip_value where finite, +inf (clamp is the identity) where not
    bound = torch.where(
        finite, torch.full_like(total, clip_value), torch.full_like(total, math.inf)
    )
    for (device, dtype), idx in group_by_device_dtype(grads).items():
        group = [grads[i] for i in idx]
        b = bound.to(device, dtype)
        torch._foreach_clamp_max_(group, [b] * len(group))
        torch._foreach_clamp_min_(group, [-b] * len(group))
    coef = torch.where(finite, torch.clamp(clip_value / max_abs, max=1.0), torch.ones_like(total))
    return ClipResult(total, coef, finite & (max_abs > clip_value), ~finite)


def _unitwise_norm(x: torch.Tensor) -> torch.Tensor:
    """Norm per output unit: over all dims but the first (a row of a Linear weight, a
    filter of a conv); vectors and scalars (biases, gains) count as one unit (as in
    Brock et al.'s reference code)."""
    if x.ndim <= 1:
        return torch.linalg.vector_norm(x)
    return torch.linalg.vector_norm(x, dim=tuple(range(1, x.ndim)), keepdim=True)


def clip_grad_adaptive_(
    parameters: Params,
    clip_factor: float = 0.01,
    eps: float = 1e-3,
    *,
    error_if_nonfinite: bool = False,
) -> ClipResult:
    """Adaptive gradient clipping (AGC, Brock et al. 2021), in place.

    For each unit (output row of a weight; a whole bias vector),
    if ``||g|| / max(||w||, eps) > clip_factor`` the unit's gradient is rescaled to
    ``g * clip_factor * max(||w||, eps) / ||g||``. The paper advises not clipping the
    final classifier layer: pass the parameters to clip.

    Args:
        parameters: Tensors (or a module) whose ``.grad`` are clipped.
        clip_factor: lambda, the largest allowed gradient-to-weight norm ratio per unit.
        eps: Floor of the weight norm (so zero-initialised units can still move).
        error_if_nonfinite: Raise :class:`NonFiniteGradientError` on inf/NaN (syncs).

    Example:
        >>> p = torch.nn.Parameter(torch.ones(1, 2)); p.grad = torch.ones(1, 2)
        >>> _ = clip_grad_adaptive_([p], clip_factor=0.1)
        >>> [round(v, 4) for v in p.grad.flatten().tolist()]
        [0.1, 0.1]
    """
    if not (isinstance(clip_factor, (int, float)) and clip_factor > 0):
        raise ValueError(f"expected `clip_factor` > 0 but got {clip_factor!r}")
    if not (isinstance(eps, (int, float)) and eps > 0):
        raise ValueError(f"expected `eps` > 0 but got {eps!r}")
    params = [p for p in _params(parameters) if p.grad is not None]
    if not params:
        return _empty_result()
    grads = [p.grad for p in params]
    total = _total_norm(grads, 2.0)  # type: ignore[arg-type]
    finite = _check_finite(total, error_if_nonfinite, "clip_grad_adaptive_")
    device = total.device
    min_scale = torch.ones((), device=device, dtype=total.dtype)
    for p in params:
        g = p.grad
        assert g is not None
        max_norm = _unitwise_norm(p.detach()).clamp(min=eps) * clip_factor
        g_norm = _unitwise_norm(g)
        trigger = (g_norm > max_norm) & finite.to(g.device)
        scale = torch.where(trigger, max_norm / g_norm.clamp(min=1e-6), torch.ones_like(g_norm))
        g.mul_(scale)
        min_scale = torch.minimum(min_scale, scale.min().to(device, total.dtype))
    return ClipResult(total, min_scale, min_scale < 1.0, ~finite)


# ---------------------------------------------------------------------- the clipper
@dataclass(frozen=True)
class ClipStats:
    """Per-step clipping statistics on the host (see :meth:`GradientClipper.stats`).

    Attributes:
        total_norm: Global gradient norm before clipping, per step.
        clip_coef: Coefficient applied per step (1 = untouched).
        clipped: Whether the step was clipped.
        nonfinite: Whether the step's gradients held inf/NaN (left unchanged).
    """

    total_norm: np.ndarray
    clip_coef: np.ndarray
    clipped: np.ndarray
    nonfinite: np.ndarray

    @property
    def steps(self) -> int:
        return len(self.clip_coef)

    @property
    def fraction_clipped(self) -> float:
        """Fraction of steps clipped (NaN before the first step)."""
        return float(self.clipped.mean()) if self.steps else math.nan

    @property
    def nonfinite_steps(self) -> int:
        return int(self.nonfinite.sum())

    def summary(self) -> str:
        return (
            f"{self.steps} steps, {self.fraction_clipped:.1%} clipped, "
            f"{self.nonfinite_steps} with non-finite gradients (left unchanged)"
        )


class GradientClipper:
    """Clip gradients before every optimizer step and record what was done.

    Attach it to any optimizer; it runs in the optimizer's step pre-hook, i.e. on the final
    (accumulated, and with ``GradScaler.step`` unscaled) gradients. Statistics stay in a
    device buffer; :meth:`stats` reads them back once.

    Args:
        parameters: Tensors or a module whose gradients are clipped.
        mode: ``"norm"`` (global norm), ``"value"`` or ``"adaptive"`` (AGC).
        max_norm: For ``"norm"``.
        norm_type: For ``"norm"``.
        clip_value: For ``"value"``.
        clip_factor: For ``"adaptive"`` (lambda, default 0.01 as in Brock et al.).
        eps: For ``"adaptive"``.
        error_if_nonfinite: Raise instead of skipping a step with inf/NaN gradients.
        watch: A gradwatch ``Watch``; ``clip_coef`` and ``clipped`` are logged into it with
            ``watch.log`` for every step (device tensors, no sync). Create the watch before
            attaching the clipper so each step's values are logged in the same step.
            In ``"norm"`` mode the clipper also tells the watch the coefficient it applied
            (``Watch.observe_clip``), so the watch's gradient statistics are the pre-clip
            ones whichever of the two reads the gradients first.

    Example:
        >>> model = torch.nn.Linear(3, 1)
        >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
        >>> clipper = GradientClipper(model, mode="norm", max_norm=1.0).attach(opt)
        >>> model(torch.randn(4, 3)).pow(2).sum().backward(); opt.step()
        >>> clipper.stats().steps
        1
        >>> clipper.remove()
    """

    def __init__(
        self,
        parameters: Params,
        *,
        mode: ClipMode = "norm",
        max_norm: float | None = None,
        norm_type: float = 2.0,
        clip_value: float | None = None,
        clip_factor: float = 0.01,
        eps: float = 1e-3,
        error_if_nonfinite: bool = False,
        watch: Any | None = None,
    ) -> None:
        if mode not in ("norm", "value", "adaptive"):
            raise ValueError(
                f"expected `mode` to be 'norm', 'value' or 'adaptive' but got {mode!r}"
            )
        if mode == "norm" and max_norm is None:
            raise ValueError(
                "GradientClipper(mode='norm') needs `max_norm`, e.g. max_norm=1.0"
                " (see suggest_max_norm(trace))"
            )
        if mode == "value" and clip_value is None:
            raise ValueError("GradientClipper(mode='value') needs `clip_value`, e.g. 1.0")
        if watch is not None and not (
            callable(getattr(watch, "log", None)) and hasattr(watch, "num_steps")
        ):
            raise TypeError(
                f"expected `watch` to be a gradwatch Watch (with .log) but got "
                f"{type(watch).__name__}"
            )
        self.params = _params(parameters)
        if not self.params:
            raise ValueError("GradientClipper got no parameters to clip")
        self.mode: ClipMode = mode
        self.max_norm, self.norm_type, self.clip_value = max_norm, norm_type, clip_value
        self.clip_factor, self.eps = clip_factor, eps
        self.error_if_nonfinite = error_if_nonfinite
        self.watch = watch
        self._device = self.params[0].device
        self._buf = torch.zeros((64, 4), device=self._device)  # total, coef, clipped, nonfinite
        self._n = 0
        self._handles: list[Any] = []
        self._pending: tuple[int, ClipResult] | None = None
        # validate the mode's arguments once, on no gradients
        self._clip_once(validate_only=True)

    def _clip_once(self, validate_only: bool = False) -> ClipResult:
        params = [] if validate_only else self.params
        if self.mode == "norm":
            assert self.max_norm is not None
            return clip_grad_norm_(
                params, self.max_norm, self.norm_type, error_if_nonfinite=self.error_if_nonfinite
            )
        if self.mode == "value":
            assert self.clip_value is not None
            return clip_grad_value_(
                params, self.clip_value, error_if_nonfinite=self.error_if_nonfinite
            )
        return clip_grad_adaptive_(
            params, self.clip_factor, self.eps, error_if_nonfinite=self.error_if_nonfinite
        )

    def clip_(self) -> ClipResult:
        """Clip the current gradients in place once and record the step."""
        self._log_pending()
        res = self._clip_once()
        if self._n == len(self._buf):
            self._buf = torch.cat([self._buf, torch.zeros_like(self._buf)])
        row = torch.stack(
            [
                res.total_norm.float(),
                res.clip_coef.float(),
                res.clipped.float(),
                res.nonfinite.float(),
            ]
        ).to(self._device)
        self._buf[self._n] = row  # python index, device values: no sync
        self._n += 1
        if self.watch is not None:
            self._pending = (self.watch.num_steps, res)
            # Norm clipping scales every gradient by one coefficient: a watch that has not
            # yet read this step's gradients undoes it, so it records the pre-clip norms
            # (a watch that already read them finds the note stale and ignores it).
            observe = getattr(self.watch, "observe_clip", None)
            if self.mode == "norm" and observe is not None:
                assert self.max_norm is not None
                observe(self.params, res.total_norm, self.max_norm)
        return res

    def _log_pending(self) -> None:
        """Log the last clip into the watch once the watch has counted its step.

        ``Watch.log`` writes to the last step the watch completed; the step in progress
        completes in the watch's own step post-hook. When the watch's hooks were attached
        first, that hook has run by the time ours does; otherwise the values are logged at
        the next step (or on :meth:`remove`).
        """
        if self._pending is None or self.watch is None:
            return
        step, res = self._pending
        if self.watch.num_steps > step:
            self._pending = None
            try:
                self.watch.log(clip_coef=res.clip_coef, clipped=res.clipped)
            except RuntimeError as exc:  # the watch was closed before our last step's log
                warnings.warn(
                    f"clip statistics of step {step} were not logged into the watch ({exc}); "
                    "create the watch before attaching the clipper, or remove the clipper "
                    "before closing the watch. They are still in clipper.stats().",
                    RuntimeWarning,
                    stacklevel=3,
                )

    def attach(self, optimizer: torch.optim.Optimizer) -> GradientClipper:
        """Clip before every ``optimizer.step()``; returns ``self`` (call :meth:`remove`)."""
        if not hasattr(optimizer, "register_step_pre_hook"):
            raise TypeError(f"expected a torch.optim.Optimizer but got {type(optimizer).__name__}")
        self._handles.append(optimizer.register_step_pre_hook(self._hook))
        self._handles.append(optimizer.register_step_post_hook(self._post_hook))
        return self

    def _hook(self, _opt: torch.optim.Optimizer, _args: Any, _kwargs: Any) -> None:
        self.clip_()

    def _post_hook(self, _opt: torch.optim.Optimizer, _args: Any, _kwargs: Any) -> None:
        self._log_pending()

    def remove(self) -> None:
        """Detach from every optimizer (the statistics are kept)."""
        self._log_pending()
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def __enter__(self) -> GradientClipper:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    @property
    def fraction_clipped(self) -> torch.Tensor:
        """Fraction of recorded steps that were clipped, as a device tensor (no sync)."""
        if self._n == 0:
            return torch.full((), math.nan, device=self._device)
        return self._buf[: self._n, 2].mean()

    def stats(self) -> ClipStats:
        """All recorded steps, copied to the host in one transfer."""
        data = self._buf[: self._n].cpu().numpy().astype(np.float64)
        return ClipStats(
            total_norm=data[:, 0],
            clip_coef=data[:, 1],
            clipped=data[:, 2] > 0.5,
            nonfinite=data[:, 3] > 0.5,
        )

    def __repr__(self) -> str:
        arg = {
            "norm": f"max_norm={self.max_norm}",
            "value": f"clip_value={self.clip_value}",
            "adaptive": f"clip_factor={self.clip_factor}",
        }[self.mode]
        return f"GradientClipper(mode={self.mode!r}, {arg}, steps={self._n})"


# ---------------------------------------------------------------------- suggesting max_norm
@dataclass(frozen=True)
class MaxNormSuggestion:
    """A ``max_norm`` for global-norm clipping and the evidence behind it.

    ``float(s)`` is the value, so ``clip_grad_norm_(params, suggest_max_norm(trace))`` works.
    """

    max_norm: float
    method: str
    reason: str
    median: float
    q90: float
    q99: float
    finite_steps: int
    nonfinite_steps: int

    def __float__(self) -> float:
        return self.max_norm


def suggest_max_norm(
    trace: Trace,
    *,
    method: Literal["quantile", "median"] = "quantile",
    q: float = 0.9,
    k: float = 3.0,
) -> MaxNormSuggestion:
    """Suggest a global-norm clipping threshold from the recorded ``global_grad_norm``.

    ``"quantile"`` (default, q = 0.9): the q-quantile of the finite norms, so only the
    largest 10% of steps (the spikes) are clipped and the typical step keeps its size and
    direction; clipping most steps would instead act as a smaller, norm-dependent learning
    rate. ``q = 0.1`` gives AutoClip's (Seetharaman et al. 2020) aggressive 10th
    percentile. ``"median"``: ``k`` times the median, robust when spikes are more than
    10% of the steps. Non-finite norms and steps marked ``skipped`` are left out (and
    counted).

    Raises:
        KeyError: The trace has no ``global_grad_norm``.
        ValueError: Fewer than 5 finite norms, or a bad ``q``/``k``/``method``.

    Example:
        >>> import numpy as np
        >>> from gradwatch.trace import Trace
        >>> t = Trace.from_arrays(["l0"], range(10), {"grad_rms": np.ones((10, 1))},
        ...                       scalars={"global_grad_norm": np.arange(1.0, 11.0)})
        >>> round(float(suggest_max_norm(t)), 2)
        9.1
    """
    if method not in ("quantile", "median"):
        raise ValueError(f"expected `method` to be 'quantile' or 'median' but got {method!r}")
    if not 0.0 < q < 1.0:
        raise ValueError(f"expected `q` in (0, 1) but got {q}")
    if not k > 0:
        raise ValueError(f"expected `k` > 0 but got {k}")
    norms = np.asarray(trace.scalar("global_grad_norm"), dtype=np.float64)
    keep = ~np.isnan(norms)  # NaN = not measured at that step
    if trace.has_scalar("skipped"):
        keep &= ~(np.nan_to_num(trace.scalar("skipped")) > 0.5)
    norms = norms[keep]
    finite = norms[np.isfinite(norms)]
    n_bad = int(len(norms) - len(finite))
    if len(finite) < 5:
        raise ValueError(
            f"only {len(finite)} finite global_grad_norm values in the trace; need at least 5 "
            "steps to suggest a max_norm. Record more steps first."
        )
    med, q90, q99 = (float(np.quantile(finite, x)) for x in (0.5, 0.9, 0.99))
    if method == "quantile":
        value = float(np.quantile(finite, q))
        reason = (
            f"{q:.0%} quantile of {len(finite)} finite global gradient norms: steps above it "
            f"(about {1 - q:.0%}) are clipped, the others are left as they are"
        )
    else:
        value = k * med
        reason = f"{k:g} x the median ({med:.3g}) of {len(finite)} finite global gradient norms"
    if n_bad:
        reason += f"; {n_bad} non-finite norm(s) ignored (clipping cannot fix those)"
    return MaxNormSuggestion(value, method, reason, med, q90, q99, len(finite), n_bad)
