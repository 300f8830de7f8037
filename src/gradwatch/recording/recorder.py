"""``gw.watch``: record per-layer statistics of a training run at near-zero cost.

How a step is recorded (DESIGN.md, "Recording"):

* With an optimizer, its step pre-hook reads the final, accumulated gradients and its post-hook
  the updated weights, so gradient accumulation counts optimizer steps, not backward calls.
* Gradient, weight and non-finite statistics come from a few fused ``torch._foreach_norm``
  kernels, reduced per layer on the device and written into a preallocated device buffer.
* Activation statistics, ``||dL/d output||`` per layer, recurrent input-gradient profiles and
  real update ratios are measured on sampled steps only (every ``sample_every``): the hooks that
  measure them are attached for those steps and removed after, so other steps pay nothing.
* The buffer goes to the host once per flush (one transfer), then to Parquet (or memory).
"""

from __future__ import annotations

import math
import os
import platform
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from .._ops import stack_float32
from ..trace import LAYER_METRICS, LayerInfo, RunWriter, Trace
from ..trace.store import FORMAT_VERSION
from ..trace.trace import trace_from_tables
from .layers import RECURRENT_TYPES, LayerSpec, activation_kind, find_layers
from .sampled import ACT, RAW, LayerIndex, StepSums
from .stats import (
    SMALL_NUMEL,
    STACK_BYTES,
    ActivationAccumulator,
    Scratch,
    batch_moments,
    count_nonfinite,
    sum_squares,
    sums_of_squares,
    sums_of_squares_and_max_abs,
)

_M = {name: i for i, name in enumerate(LAYER_METRICS)}
_GRAD_METRICS = ("grad_norm", "grad_rms", "grad_max", "weight_norm", "nonfinite")
_SAMPLED_METRICS = ("act_mean", "act_std", "act_saturated", "act_dead", "out_grad_norm")
_FIXED_SCALARS = ("global_grad_norm", "skipped")
_CONV_LIKE = ("Conv", "ConvTranspose", "BatchNorm2d", "BatchNorm3d", "GroupNorm", "Instance")


# Outputs and output gradients of a sampled step are kept (by reference) until the optimizer
# step and reduced there in batches, up to this many bytes; beyond, each is reduced in its hook.
# Most are held by autograd until their backward anyway (tanh, sigmoid and ReLU save their
# output, a linear layer its input), so this extends their life by one backward pass at most.
_STASH_BYTES = 128 * 2**20


@dataclass
class _Stashed:
    """An output kept for the step's batched activation statistics."""

    source: int  # RAW (the layer's own output) or ACT (the activation that follows it)
    layer: int
    y: torch.Tensor
    version: int  # y._version when kept: a later in-place change makes it unusable
    act_type: str | None
    kind: str | None
    unit_dim: int


# Gradients up to this many elements are concatenated and reduced together on CPU: one
# kernel per tiny bias would cost more than the whole concatenation.
_SMALL_GRAD = 4096
_SMALL_GRAD_TOTAL = 1 << 18


@dataclass
class _GradLayout:
    """Which parameters have a gradient this step, and how their reductions are batched.

    Built once per pattern of present gradients (usually one per run) on the host and moved
    to the device once: indexing on the device per step would be a sync on CUDA.
    """

    idx: list[int]  # parameters that have a gradient, in layer order
    layer_idx: torch.Tensor  # the layer of each of them (device, long)
    layers: torch.Tensor  # the layers that have any gradient (device, long)
    has_grad: np.ndarray  # per layer (host)
    has_grad_t: torch.Tensor  # per layer (device)
    numel: np.ndarray  # gradient elements per layer (host)
    big: list[int]  # positions in idx reduced with one kernel each
    small: list[int]  # positions in idx concatenated and reduced together (CPU only)
    vec_layer: torch.Tensor  # layer of each value that reduce() returns

    @classmethod
    def build(
        cls,
        params: list[nn.Parameter],
        layers: list[LayerSpec],
        present: tuple[bool, ...],
        device: torch.device,
    ) -> _GradLayout:
        owner = [i for i, spec in enumerate(layers) for _ in spec.params]
        idx = [k for k, has in enumerate(present) if has]
        numel = np.zeros(len(layers))
        for k in idx:
            numel[owner[k]] += params[k].numel()
        small: list[int] = []
        if device.type == "cpu":
            budget = _SMALL_GRAD_TOTAL
            for pos, k in enumerate(idx):
                n = params[k].numel()
                if n <= _SMALL_GRAD and params[k].dtype == torch.float32 and n <= budget:
                    small.append(pos)
                    budget -= n
        if len(small) < 2:
            small = []
        small_set = set(small)
        big = [pos for pos in range(len(idx)) if pos not in small_set]
        vec_layer = [owner[idx[pos]] for pos in big]
        for pos in small:
            vec_layer += [owner[idx[pos]]] * params[idx[pos]].numel()
        has_grad = numel > 0
        return cls(
            idx=idx,
            layer_idx=torch.tensor([owner[k] for k in idx], dtype=torch.long, device=device),
            layers=torch.tensor(np.flatnonzero(has_grad), dtype=torch.long, device=device),
            has_grad=has_grad,
            has_grad_t=torch.tensor(has_grad, device=device),
            numel=numel,
            big=big,
            small=small,
            vec_layer=torch.tensor(vec_layer, dtype=torch.long, device=device),
        )

    def reduce(self, grads: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Values whose sums per layer (``index_add`` by the second result) are the layers'
        gradient sums of squares: one per large tensor, one per element of the small ones."""
        if not self.small:
            return sums_of_squares(grads), self.layer_idx
        parts = []
        if self.big:
            parts.append(sums_of_squares([grads[pos] for pos in self.big]))
        parts.append(torch.cat([grads[pos].reshape(-1) for pos in self.small]).square_())
        return (torch.cat(parts) if len(parts) > 1 else parts[0]), self.vec_layer


def _check_int(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(
            f"Expected argument `{name}` to be an integer >= {minimum} but got {value!r}. "
            f"Pass e.g. `{name}=1` to record every step."
        )
    return value


class Watch:
    """A recording in progress. Create it with :func:`watch`.

    Use it as a context manager, or call :meth:`close` yourself; either way every hook is
    removed. After closing, :attr:`trace` holds everything that was recorded.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        run_dir: str | os.PathLike[str] | None = None,
        *,
        every: int = 1,
        sample_every: int = 10,
        flush_every: int = 100,
        overwrite: bool = False,
        scaler: Any | None = None,
        activations: bool = True,
        meta: dict[str, Any] | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(
                f"Expected argument `model` to be a torch.nn.Module but got "
                f"{type(model).__name__}. Pass the model you train, e.g. `gw.watch(model, opt)`."
            )
        self.every = _check_int("every", every)
        self.sample_every = _check_int("sample_every", sample_every)
        self.flush_every = _check_int("flush_every", flush_every)
        if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(
                f"Expected argument `optimizer` to be a torch.optim.Optimizer or None but got "
                f"{type(optimizer).__name__}."
            )
        self.model = model
        self.optimizer = optimizer
        self.scaler = scaler
        self._activations = bool(activations)
        self._user_meta = dict(meta or {})

        layers, frozen = find_layers(model)
        if not layers and frozen == 0:
            raise ValueError(
                f"Argument `model` ({type(model).__name__}) has no parameters, so there are no "
                "gradients to watch. Pass the model that owns the trainable parameters."
            )
        self._layers: list[LayerSpec] = layers
        if not layers:
            warnings.warn(
                f"every parameter of {type(model).__name__} is frozen (requires_grad=False): "
                "gradwatch records nothing. Unfreeze the layers you train.",
                UserWarning,
                stacklevel=3,
            )
        if optimizer is not None:
            self._check_optimizer(optimizer, model)

        # Flat parameter list in layer order, and the layer of each parameter.
        self._params: list[nn.Parameter] = [p for spec in layers for p in spec.params]
        n_layers = len(layers)
        self._n_layers = n_layers
        self._device = self._params[0].device if self._params else torch.device("cpu")
        self._exact_nonfinite = self._device.type == "cpu"
        self._param_layer = torch.tensor(
            [i for i, spec in enumerate(layers) for _ in spec.params],
            dtype=torch.long,
            device=self._device,
        )
        self._grad_cache: dict[tuple[bool, ...], _GradLayout] = {}

        # Device buffers for one flush window; NaN = not measured.
        self._buf = torch.full(
            (self.flush_every, len(LAYER_METRICS), n_layers), math.nan, device=self._device
        )
        self._row_used = np.zeros(self.flush_every, dtype=bool)
        self._row_layout: list[_GradLayout | None] = [None] * self.flush_every
        self._scalar_cols: dict[str, int] = {name: i for i, name in enumerate(_FIXED_SCALARS)}
        # Scalars (losses, user values) keep float64 where the device has it.
        self._sdtype = torch.float32 if self._device.type == "mps" else torch.float64
        self._sbuf = torch.full(
            (self.flush_every, 8), math.nan, device=self._device, dtype=self._sdtype
        )
        self._srow_used = np.zeros(self.flush_every, dtype=bool)
        self._late_scalars: list[tuple[int, dict[str, float]]] = []
        self._pending_recurrent: list[tuple[int, int, torch.Tensor]] = []
        self._window_start = 0
        self._step = 0  # index of the optimizer step in progress (= steps completed)

        # Forward-order discovery (first forward) and per-sampled-step accumulators.
        self._order: list[int] = []
        self._ordered = False
        self._depth = list(range(n_layers))  # internal index -> depth, final after 1st step
        self._activation_of: dict[int, str] = {}
        self._unit_dim = [-1] * n_layers
        self._raw: dict[int, ActivationAccumulator] = {}
        self._act: dict[int, ActivationAccumulator] = {}
        self._rec: dict[int, torch.Tensor] = {}
        self._last_layer: int | None = None
        self._claimable = False
        self._snapshot: list[torch.Tensor] | None = None
        self._snapshot_buf: list[torch.Tensor] | None = None
        self._scratch = Scratch()
        # Chunking keeps each stack within STACK_BYTES bytes, so these stay that small.
        self._stack = Scratch(STACK_BYTES)
        self._stack_tmp = Scratch(STACK_BYTES)
        self._layer_index = LayerIndex(self._device)
        self._pending: list[_Stashed] = []
        self._pending_og: list[tuple[int, torch.Tensor, int]] = []
        self._stashed_bytes = 0
        self._weight_sq_before: torch.Tensor | None = None
        self._step_began = False

        self._handles: list[RemovableHandle] = []
        self._scaler_wrapped = False
        self._sample_handles: list[RemovableHandle] = []
        self._closed = False
        self._failed = False
        self._tables: dict[str, list[pa.Table]] = {"layers": [], "scalars": [], "recurrent": []}
        self._started = time.time()

        rank0 = not (
            torch.distributed.is_available()
            and torch.distributed.is_initialized()
            and torch.distributed.get_rank() != 0
        )
        self._writer = (
            RunWriter(run_dir, overwrite=overwrite) if run_dir is not None and rank0 else None
        )
        self.run_dir = Path(run_dir) if run_dir is not None else None
        if self._writer is not None:
            self._writer.write_meta(self._meta("running"))

        if layers:
            self._attach()

    # ------------------------------------------------------------------ validation
    @staticmethod
    def _check_optimizer(optimizer: torch.optim.Optimizer, model: nn.Module) -> None:
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

    # ------------------------------------------------------------------ hooks
    def _attach(self) -> None:
        if self.optimizer is not None:
            self._handles.append(self.optimizer.register_step_pre_hook(self._opt_pre_hook))
            self._handles.append(self.optimizer.register_step_post_hook(self._opt_post_hook))
        if self.scaler is not None:
            self._wrap_scaler()
        self._arm_sampling()  # step 0 is always sampled; its forward also orders the layers

    def _wrap_scaler(self) -> None:
        scaler = self.scaler
        assert scaler is not None
        original = scaler.step

        def step(optimizer: Any, *args: Any, **kwargs: Any) -> Any:
            before = self._step
            out = original(optimizer, *args, **kwargs)
            if optimizer is self.optimizer and self._step == before:
                # GradScaler found inf/nan and did not call optimizer.step(): a skipped step.
                self._begin_step(skipped=True)
                self._end_step()
            return out

        scaler.step = step
        self._scaler_wrapped = True

    def _unwrap_scaler(self) -> None:
        # The wrapper is an instance attribute; deleting it restores the class's method.
        scaler = self.scaler
        if self._scaler_wrapped and scaler is not None and "step" in vars(scaler):
            del scaler.step
        self._scaler_wrapped = False

    def _is_sampled(self, step: int) -> bool:
        return step % self.sample_every == 0

    def _arm_sampling(self) -> None:
        """Attach the forward hooks that measure a sampled step (and order layers at step 0)."""
        if self._sample_handles or not self._layers:
            return
        need_forward = self._activations or not self._ordered
        if not need_forward:
            return
        for i, spec in enumerate(self._layers):
            mod = spec.module
            # Once the forward order is known, only recurrent layers need a pre-hook (for the
            # per-time-step input gradient): each Python hook call costs a few microseconds.
            if not self._ordered or isinstance(mod, RECURRENT_TYPES):
                self._sample_handles.append(mod.register_forward_pre_hook(self._make_pre_hook(i)))
            if self._activations:
                self._sample_handles.append(mod.register_forward_hook(self._make_post_hook(i)))
        if self._activations:
            for mod in self.model.modules():
                kind = activation_kind(mod)
                if kind is not None:
                    self._sample_handles.append(
                        mod.register_forward_hook(self._make_act_hook(type(mod).__name__, kind))
                    )

    def _disarm_sampling(self) -> None:
        for h in self._sample_handles:
            h.remove()
        self._sample_handles.clear()

    def _make_pre_hook(self, i: int) -> Callable[..., Any]:
        spec = self._layers[i]
        recurrent = isinstance(spec.module, RECURRENT_TYPES)
        batch_first = bool(getattr(spec.module, "batch_first", False))

        def hook(module: nn.Module, args: tuple[Any, ...]) -> Any:
            if not self._ordered and i not in self._order:
                self._order.append(i)
            if not (recurrent and self._activations and torch.is_grad_enabled()):
                return None
            if not args or not isinstance(args[0], torch.Tensor):
                return None  # PackedSequence inputs: no per-time-step profile
            x = args[0]
            time_dim = 1 if (batch_first and x.dim() == 3) else 0
            replaced = False
            if not x.requires_grad:
                # Nothing upstream needs this gradient, so a detached copy changes no
                # parameter gradient; it only lets us see dL/dx_t.
                x = x.detach().requires_grad_(True)
                replaced = True

            def on_grad(g: torch.Tensor) -> None:
                dims = [d for d in range(g.dim()) if d != time_dim]
                prof = g.detach().float().square().sum(dim=dims) if dims else g.detach().square()
                prev = self._rec.get(i)
                self._rec[i] = prof if prev is None or prev.shape != prof.shape else prev + prof

            x.register_hook(on_grad)
            return (x, *args[1:]) if replaced else None

        return hook

    def _make_post_hook(self, i: int) -> Callable[..., Any]:
        spec = self._layers[i]
        is_activation = activation_kind(spec.module) is not None
        conv_like = type(spec.module).__name__.startswith(_CONV_LIKE)

        def og_hook(g: torch.Tensor) -> None:
            g = g.detach()
            if self._stash(g):
                self._pending_og.append((i, g, g._version))
            else:
                self._raw.setdefault(i, ActivationAccumulator()).add_out_grad(g)

        def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            if not torch.is_grad_enabled():
                return
            out = output
            if isinstance(out, (tuple, list)):
                out = next((o for o in out if isinstance(o, torch.Tensor)), None)
            if not isinstance(out, torch.Tensor) or not self._activations:
                return
            if conv_like and out.dim() >= 3:
                self._unit_dim[i] = 1
            if not is_activation:
                self._last_layer = i
                self._claimable = True
            if not self._ordered or i not in self._activation_of:
                self._add_output(RAW, i, out, None, None)
            if out.requires_grad:
                out.register_hook(og_hook)

        return hook

    def _make_act_hook(self, act_type: str, kind: str) -> Callable[..., Any]:
        def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            if not torch.is_grad_enabled() or not self._claimable or self._last_layer is None:
                return
            if not isinstance(output, torch.Tensor):
                return
            i = self._last_layer
            self._claimable = False
            if not self._ordered:
                self._activation_of.setdefault(i, act_type)
            self._add_output(ACT, i, output, act_type, kind)

        return hook

    def _stash(self, t: torch.Tensor) -> bool:
        """Whether to keep ``t`` for the step's batched reductions (within the byte budget)."""
        nbytes = t.numel() * t.element_size()
        if self._stashed_bytes + nbytes > _STASH_BYTES:
            return False
        self._stashed_bytes += nbytes
        return True

    def _add_output(
        self,
        source: int,
        i: int,
        y: torch.Tensor,
        act_type: str | None,
        kind: str | None,
    ) -> None:
        """Keep a layer's (or its activation's) output for the step, or reduce it now."""
        y = y.detach()
        if self._stash(y):
            item = _Stashed(source, i, y, y._version, act_type, kind, self._unit_dim[i])
            self._pending.append(item)
        else:
            target = self._raw if source == RAW else self._act
            target.setdefault(i, ActivationAccumulator()).add_output(
                y, act_type, kind, self._unit_dim[i], self._scratch
            )

    def _reduce_stashed(self, sums: StepSums) -> None:
        """Reduce the outputs and output gradients kept during the step.

        Inside forward and backward every kernel costs ~10-30 us on CPU however small its
        tensor (the dispatcher's code is cold after each large matmul), and a kernel launch
        each on a GPU. Here same-shaped outputs are stacked, in chunks of at most
        ``STACK_BYTES`` into reused buffers, and reduced together: a handful of kernels per
        chunk. A tensor changed in place after its hook (its version moved) no longer holds
        the values to measure and is left out.
        """
        groups: dict[tuple[Any, ...], list[_Stashed]] = {}
        for item in self._pending:
            if item.y._version != item.version or item.y.numel() == 0:
                continue
            y = item.y
            key = (item.source, y.shape, y.dtype, item.act_type, item.kind, item.unit_dim)
            groups.setdefault(key, []).append(item)
        for items in groups.values():
            first = items[0]
            chunk = max(1, STACK_BYTES // (first.y.numel() * first.y.element_size()))
            for start in range(0, len(items), chunk):
                part = items[start : start + chunk]
                if len(part) == 1:
                    # Nothing to stack: a view, no copy (large outputs come one at a time).
                    ys = part[0].y.unsqueeze(0)
                    tmp = self._scratch.like(part[0].y).view(ys.shape)
                else:
                    y0, n = first.y, len(part) * first.y.numel()
                    ys = self._stack.get(n, y0.dtype, y0.device).view(len(part), *y0.shape)
                    tmp = self._stack_tmp.get(n, y0.dtype, y0.device).view(ys.shape)
                    torch.stack([it.y for it in part], out=ys)
                total, total_sq, sat, alive = batch_moments(
                    ys, first.act_type, first.kind, first.unit_dim, tmp
                )
                layers = tuple(it.layer for it in part)
                sums.add_batch(
                    first.source,
                    layers,
                    total,
                    total_sq,
                    count=first.y.numel(),
                    saturated=sat,
                    alive=alive,
                )
        grads = [(i, g) for i, g, version in self._pending_og if g._version == version]
        if grads:
            sums.add_out_grads(tuple(i for i, _ in grads), sums_of_squares([g for _, g in grads]))
        self._pending.clear()
        self._pending_og.clear()
        self._stashed_bytes = 0

    def _opt_pre_hook(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        self._begin_step(skipped=False)

    def _opt_post_hook(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        self._end_step()

    # ------------------------------------------------------------------ a step
    def step(self) -> None:
        """Record one step when training without an optimizer (call after ``backward()``).

        With an optimizer passed to :func:`watch`, steps are recorded through its hooks and
        calling this is an error. Without one there is no before/after of an update, so
        ``update_ratio`` stays missing.
        """
        if self.optimizer is not None:
            raise RuntimeError(
                "this Watch records steps through the optimizer's step hooks; do not call "
                "`w.step()` as well (it would count every step twice)."
            )
        if self._closed:
            raise RuntimeError("this Watch is closed; start a new one with `gw.watch(...)`.")
        self._begin_step(skipped=False)
        self._end_step()

    def _begin_step(self, *, skipped: bool) -> None:
        if self._closed or not self._layers:
            return
        step = self._step
        if step - self._window_start >= self.flush_every:
            self._flush()
        if not self._ordered:
            self._finalize_order()
        slot = step - self._window_start
        sampled = self._is_sampled(step)
        record = sampled or step % self.every == 0
        with torch.no_grad():
            if record:
                self._record_grads(slot, detailed=sampled)
            if sampled:
                self._record_weights(slot, snapshot=self.optimizer is not None and not skipped)
                self._record_sampled(slot)
            if skipped:
                self._sbuf[slot, 1] = 1.0  # 0 is filled in at flush: one kernel less per step
        self._row_used[slot] |= record
        self._srow_used[slot] = True
        if not self._is_sampled(step + 1):
            self._disarm_sampling()  # with sample_every=1 the hooks simply stay attached
        self._step_began = True

    def _snapshot_buffers(self) -> list[torch.Tensor] | None:
        """The reused buffers that hold the weights before a sampled update (None without
        an optimizer, where there is no update to measure)."""
        if self.optimizer is None:
            return None
        if self._snapshot_buf is None:
            self._snapshot_buf = [torch.empty_like(p.detach()) for p in self._params]
        return self._snapshot_buf

    def _record_weights(self, slot: int, *, snapshot: bool) -> None:
        """weight_norm of every layer, and (before an update) a copy of the weights.

        The copy is what makes ``update_ratio`` the real update of any optimizer. Its buffers
        are reused: a fresh 13 MB allocation per sampled step cost ~35x the copy on CPU (page
        faults), measured on benchmark W1. On CPU each weight is copied right after its norm
        is taken, while it is still in cache.
        """
        # Under no_grad no detach() is needed (one dispatcher call per tensor saved).
        params: list[torch.Tensor] = list(self._params)
        snap = self._snapshot_buffers() if snapshot else None
        if self._device.type == "cpu":
            sq_list = []
            for k, w in enumerate(params):
                sq_list.append(sum_squares(w))
                if snap is not None:
                    snap[k].copy_(w)  # right after its norm, while w is in cache
            sq = stack_float32(sq_list)
        else:
            sq = sums_of_squares(params)
            if snap is not None:
                torch._foreach_copy_(snap, params)
        w_sq = torch.zeros(self._n_layers, device=self._device).index_add_(0, self._param_layer, sq)
        self._weight_sq_before = w_sq
        self._snapshot = snap
        self._buf[slot, _M["weight_norm"]] = w_sq.sqrt()

    def _end_step(self) -> None:
        if self._closed or not self._layers or not self._step_began:
            return
        self._step_began = False
        slot = self._step - self._window_start
        if self._snapshot is not None and self._weight_sq_before is not None:
            with torch.no_grad():
                snap = self._snapshot
                params: list[torch.Tensor] = list(self._params)
                if self._device.type == "cpu":
                    sq = stack_float32(
                        [self._update_sq(d, p) for d, p in zip(snap, params, strict=True)]
                    )
                else:
                    torch._foreach_sub_(snap, params)
                    sq = sums_of_squares(snap)
                diff_sq = torch.zeros(self._n_layers, device=self._device).index_add_(
                    0, self._param_layer, sq
                )
                self._buf[slot, _M["update_ratio"]] = diff_sq.sqrt() / self._weight_sq_before.sqrt()
        self._snapshot = None
        self._step += 1
        if self._is_sampled(self._step):
            self._arm_sampling()

    def _update_sq(self, before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
        """sum((after - before)**2) of one parameter, on CPU.

        The difference goes to a small reused buffer that stays in cache, so the pass reads
        both tensors once and writes nothing back to main memory. Large tensors are
        subtracted in place (the snapshot is stale after an update anyway).
        """
        if after.numel() > SMALL_NUMEL or not (before.is_contiguous() and after.is_contiguous()):
            return sum_squares(before.sub_(after))  # large: in place, no fresh allocation
        diff = self._scratch.like(after)
        torch.sub(after.view(-1), before.view(-1), out=diff)
        return sum_squares(diff)

    def _grad_layout(self) -> _GradLayout:
        present = tuple(p.grad is not None for p in self._params)
        cached = self._grad_cache.get(present)
        if cached is None:
            cached = _GradLayout.build(self._params, self._layers, present, self._device)
            self._grad_cache[present] = cached
        return cached

    def _record_grads(self, slot: int, *, detailed: bool) -> None:
        """Gradient statistics of every layer, and the global gradient norm.

        A plain step writes only each layer's sum of squares (in the grad_norm row; norm,
        RMS and the non-finite flag are derived from it at flush, vectorised over the
        window): inside a training step every kernel costs ~10-30 us on CPU however small
        its tensor (the dispatcher's code is cold after the model's large matmuls), so a
        step makes one reduction per large gradient and about 8 more kernels in all.
        ``detailed`` steps (the sampled ones) add max |g|.
        """
        lay = self._grad_layout()
        self._row_layout[slot] = lay
        if not lay.idx:
            return
        grads = [self._params[k].grad for k in lay.idx]
        g = [t for t in grads if t is not None]
        dev = self._device
        if detailed:
            per_tensor_sq, per_tensor_max = sums_of_squares_and_max_abs(g)
            self._buf[slot, _M["grad_max"]].scatter_reduce_(
                0, lay.layer_idx, per_tensor_max, "amax", include_self=False
            )
            vec, vec_layer = per_tensor_sq, lay.layer_idx
        else:
            vec, vec_layer = lay.reduce(g)
        row = self._buf[slot, _M["grad_norm"]]  # sum of squares until flush
        row.index_fill_(0, lay.layers, 0.0)
        row.index_add_(0, vec_layer, vec)
        if self._exact_nonfinite:
            # CPU tensors: reading one value is a memory load, not a device sync.
            total = float(vec.sum())
            self._sbuf[slot, 0] = math.sqrt(total)
            if not math.isfinite(total):
                counts = torch.zeros(self._n_layers).index_add_(
                    0, lay.layer_idx, count_nonfinite(g)
                )
                self._buf[slot, _M["nonfinite"]] = torch.where(lay.has_grad_t, counts, math.nan)
        else:
            # On an accelerator an exact count would need a host sync to decide; the 0/1
            # flag per layer is derived from the sums of squares at flush instead
            # (meta: nonfinite_exact = false).
            self._sbuf[slot, 0] = vec.sum().sqrt().to(dev)

    def _record_sampled(self, slot: int) -> None:
        """Activation, output-gradient and recurrent statistics gathered since the last step.

        The per-layer accumulators are stacked and combined in a handful of vector ops: a
        per-layer formula would launch ~10 tiny kernels per layer (measured ~2 ms on W1).
        """
        if not (self._pending or self._pending_og or self._raw or self._act or self._rec):
            return
        sums = StepSums(self._n_layers, self._device, self._sdtype, self._layer_index)
        self._reduce_stashed(sums)
        for source, accs in ((RAW, self._raw), (ACT, self._act)):
            for i, acc in accs.items():
                sums.add_accumulator(source, i, acc)
        first = _M[_SAMPLED_METRICS[0]]
        # LAYER_METRICS lists the sampled activation metrics contiguously, in this order.
        self._buf[slot, first : first + len(_SAMPLED_METRICS)] = sums.metrics()
        step = self._window_start + slot
        for i, prof in self._rec.items():
            self._pending_recurrent.append((step, i, prof.sqrt()))
        self._raw.clear()
        self._act.clear()
        self._rec.clear()
        self._last_layer = None
        self._claimable = False

    def _finalize_order(self) -> None:
        order = list(self._order) + [i for i in range(self._n_layers) if i not in self._order]
        for depth, i in enumerate(order):
            self._depth[i] = depth
        self._ordered = True
        if self._writer is not None:
            self._writer.write_meta(self._meta("running"))

    # ------------------------------------------------------------------ scalars
    def log(self, **scalars: float | int | bool | torch.Tensor) -> None:
        """Record scalars (e.g. ``loss=loss``) for the last optimizer step taken.

        Tensors are fine and are not synchronised: no ``.item()`` needed. Call it after
        ``optimizer.step()``; a value logged before the first step belongs to step 0, and a
        name logged twice in one step keeps the last value.

        Raises:
            TypeError: When a value is not a number or a one-element tensor.
        """
        if self._closed:
            raise RuntimeError("this Watch is closed; log before `close()` or leaving `with`.")
        step = max(self._step - 1, 0)
        slot = step - self._window_start
        late: dict[str, float] = {}
        for name, value in scalars.items():
            if name in _FIXED_SCALARS:
                raise ValueError(
                    f"scalar name {name!r} is recorded by gradwatch itself; log it under "
                    "another name."
                )
            if isinstance(value, torch.Tensor):
                if value.numel() != 1:
                    raise TypeError(
                        f"Expected scalar `{name}` to be a number or a one-element tensor but "
                        f"got a tensor of shape {tuple(value.shape)}. Log e.g. `{name}.mean()`."
                    )
                tensor_value: torch.Tensor | None = value.detach().reshape(())
                number = None
            elif isinstance(value, (int, float, bool, np.integer, np.floating)):
                tensor_value, number = None, float(value)
            else:
                raise TypeError(
                    f"Expected scalar `{name}` to be a number or a one-element tensor but got "
                    f"{type(value).__name__}."
                )
            if slot < 0:
                late[name] = float(tensor_value) if tensor_value is not None else float(number)  # type: ignore[arg-type]
                continue
            col = self._scalar_col(name)
            if tensor_value is not None:
                self._sbuf[slot, col].copy_(tensor_value, non_blocking=True)
            else:
                self._sbuf[slot, col] = number  # type: ignore[assignment]
            self._srow_used[slot] = True
        if late:
            self._late_scalars.append((step, late))

    def _scalar_col(self, name: str) -> int:
        col = self._scalar_cols.get(name)
        if col is None:
            col = len(self._scalar_cols)
            self._scalar_cols[name] = col
            if col >= self._sbuf.shape[1]:
                grown = torch.full(
                    (self.flush_every, self._sbuf.shape[1] * 2),
                    math.nan,
                    device=self._device,
                    dtype=self._sdtype,
                )
                grown[:, : self._sbuf.shape[1]] = self._sbuf
                self._sbuf = grown
        return col

    # ------------------------------------------------------------------ flushing
    def _flush(self) -> None:
        """Move the window's buffers to the host in one transfer and write them out."""
        rec = self._pending_recurrent
        parts = [self._buf.reshape(-1).to(self._sdtype), self._sbuf.reshape(-1)]
        parts += [p.reshape(-1).to(self._sdtype).to(self._device) for _, _, p in rec]
        host = torch.cat(parts).cpu().numpy()
        n_layer_vals = self._buf.numel()
        layer_data = host[:n_layer_vals].reshape(self._buf.shape)
        s_vals = host[n_layer_vals : n_layer_vals + self._sbuf.numel()].reshape(self._sbuf.shape)
        offset = n_layer_vals + self._sbuf.numel()
        depth = np.asarray(self._depth, dtype=np.int32)

        rows = np.flatnonzero(self._row_used)
        if len(rows) and self._n_layers:
            block = layer_data[rows]  # (R, M, L)
            self._derive_grad_metrics(block, rows)
            cols: dict[str, Any] = {
                "step": np.repeat(rows + self._window_start, self._n_layers).astype(np.int64),
                "layer": np.tile(depth, len(rows)),
            }
            for name, m in _M.items():
                cols[name] = block[:, m, :].reshape(-1).astype(np.float32)
            self._emit("layers", pa.table(cols))

        srows = np.flatnonzero(self._srow_used)
        skipped = s_vals[:, self._scalar_cols["skipped"]]
        skipped[np.isnan(skipped)] = 0.0  # only skipped steps write their flag
        scol: dict[str, Any] = {"step": (srows + self._window_start).astype(np.int64)}
        for name, c in self._scalar_cols.items():
            scol[name] = s_vals[srows, c].astype(np.float64)
        if self._late_scalars:
            names = sorted({k for _, d in self._late_scalars for k in d} | set(scol) - {"step"})
            late_cols: dict[str, Any] = {
                "step": np.array([s for s, _ in self._late_scalars], dtype=np.int64)
            }
            for name in names:
                late_cols[name] = np.array(
                    [d.get(name, math.nan) for _, d in self._late_scalars], dtype=np.float64
                )
            self._emit("scalars", pa.table(late_cols))
        if len(srows):
            self._emit("scalars", pa.table(scol))

        if rec:
            steps, layer, t, vals = [], [], [], []
            for step, i, prof in rec:
                k = prof.numel()
                steps.append(np.full(k, step, dtype=np.int64))
                layer.append(np.full(k, depth[i], dtype=np.int32))
                t.append(np.arange(k, dtype=np.int32))
                vals.append(host[offset : offset + k])
                offset += k
            self._emit(
                "recurrent",
                pa.table(
                    {
                        "step": np.concatenate(steps),
                        "layer": np.concatenate(layer),
                        "t": np.concatenate(t),
                        "input_grad_norm": np.concatenate(vals).astype(np.float32),
                    }
                ),
            )

        self._buf.fill_(math.nan)
        self._sbuf.fill_(math.nan)
        self._row_used[:] = False
        self._row_layout = [None] * self.flush_every
        self._srow_used[:] = False
        self._late_scalars.clear()
        self._pending_recurrent = []
        self._window_start = self._step

    def _derive_grad_metrics(self, block: np.ndarray, rows: np.ndarray) -> None:
        """Turn the per-step sums of squares into grad_norm, grad_rms and nonfinite, in place.

        ``block`` is (rows, metrics, layers) on the host; a layer without a gradient at a
        step is missing (NaN) in all three.
        """
        gn, gr, nf = _M["grad_norm"], _M["grad_rms"], _M["nonfinite"]
        sq = block[:, gn, :].copy()
        has = np.zeros(sq.shape, dtype=bool)
        numel = np.ones(sq.shape)
        for j, r in enumerate(rows):
            lay = self._row_layout[r]
            if lay is not None:
                has[j] = lay.has_grad
                numel[j] = np.maximum(lay.numel, 1)
        norm = np.sqrt(sq)
        block[:, gn, :] = np.where(has, norm, np.nan)
        block[:, gr, :] = np.where(has, norm / np.sqrt(numel), np.nan)
        counted = block[:, nf, :]
        # Exact counts exist where a CPU step found a non-finite sum; elsewhere a finite sum
        # means 0, and on accelerators a non-finite one means the 0/1 flag.
        flag = 0.0 if self._exact_nonfinite else (~np.isfinite(sq)).astype(np.float64)
        block[:, nf, :] = np.where(has, np.where(np.isnan(counted), flag, counted), np.nan)

    def _emit(self, kind: str, table: pa.Table) -> None:
        if self._writer is not None:
            self._writer.write_chunk(kind, table)
        else:
            self._tables[kind].append(table)

    # ------------------------------------------------------------------ metadata
    def _layer_infos(self) -> list[LayerInfo]:
        infos = []
        for i, spec in enumerate(self._layers):
            infos.append(
                LayerInfo(
                    name=spec.name,
                    type=type(spec.module).__name__,
                    depth=self._depth[i],
                    num_params=spec.numel,
                    shapes={
                        n: list(p.shape) for n, p in zip(spec.param_names, spec.params, strict=True)
                    },
                    activation=self._activation_of.get(i),
                    recurrent=isinstance(spec.module, RECURRENT_TYPES),
                )
            )
        return sorted(infos, key=lambda info: info.depth)

    def _meta(self, status: str) -> dict[str, Any]:
        from .._version import __version__

        return {
            "format_version": FORMAT_VERSION,
            "status": status,
            "created": self._started,
            "model": {
                "class": type(self.model).__name__,
                "num_params": sum(p.numel() for p in self.model.parameters()),
                "num_trainable": sum(spec.numel for spec in self._layers),
            },
            "layers": [info.to_json() for info in self._layer_infos()],
            "config": {
                "every": self.every,
                "sample_every": self.sample_every,
                "flush_every": self.flush_every,
                "activations": self._activations,
                "optimizer": type(self.optimizer).__name__ if self.optimizer else None,
                "device": str(self._device),
                "nonfinite_exact": self._exact_nonfinite,
            },
            "steps_recorded": self._step,
            "versions": {
                "gradwatch": __version__,
                "torch": torch.__version__,
                "numpy": np.__version__,
                "pyarrow": pa.__version__,
                "python": platform.python_version(),
            },
            **self._user_meta,
        }

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Remove every hook, flush what is recorded and finish the run directory.

        Safe to call more than once.
        """
        if self._closed:
            return
        self._closed = True
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._unwrap_scaler()
        self._disarm_sampling()
        # Outputs kept for a sampled step that never reached the optimizer: let them go.
        self._pending.clear()
        self._pending_og.clear()
        self._stashed_bytes = 0
        if not self._ordered and self._layers:
            self._finalize_order()
        if self._layers:
            self._flush()
        if self._writer is not None:
            self._writer.write_meta(self._meta("failed" if self._failed else "complete"))

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self._failed = exc_type is not None
        self.close()

    @property
    def num_steps(self) -> int:
        """Optimizer steps recorded so far."""
        return self._step

    @property
    def trace(self) -> Trace:
        """Everything recorded so far (flushes the current window first)."""
        if not self._closed and self._layers:
            self._flush()
        if self._writer is not None:
            from ..trace import load

            return load(self._writer.path)
        return trace_from_tables(
            self._meta("complete" if self._closed else "running"),
            self._tables["layers"],
            self._tables["scalars"],
            self._tables["recurrent"],
        )


def watch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    run_dir: str | os.PathLike[str] | None = None,
    *,
    every: int = 1,
    sample_every: int = 10,
    flush_every: int = 100,
    overwrite: bool = False,
    scaler: Any | None = None,
    activations: bool = True,
    meta: dict[str, Any] | None = None,
) -> Watch:
    """Start recording per-layer statistics of ``model`` while it trains.

    Args:
        model: The module to watch. Its layers are the modules that own trainable
            parameters, ordered by first use in the forward pass.
        optimizer: The optimizer that updates ``model``; steps are recorded through its step
            hooks (so gradient accumulation counts optimizer steps). Without one, call
            ``w.step()`` after each ``backward()``.
        run_dir: Directory to write the run to (``meta.json`` + Parquet chunks); ``None``
            keeps the trace in memory.
        every: Record gradient and weight statistics every ``every`` steps.
        sample_every: Measure activations, output gradients, recurrent input-gradient
            profiles and update ratios every ``sample_every`` steps.
        flush_every: Steps kept in the device buffer between two writes.
        overwrite: Replace a run already in ``run_dir``.
        scaler: A ``torch.amp.GradScaler``: steps it skips are recorded as skipped.
        activations: Set False to skip forward hooks entirely (gradients only).
        meta: Extra JSON-serialisable metadata to store with the run.

    Returns:
        A :class:`Watch`; use it as a context manager, or call ``close()``.

    Example:
        >>> import torch, gradwatch as gw
        >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(),
        ...                             torch.nn.Linear(8, 1))
        >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
        >>> with gw.watch(model, opt) as w:
        ...     for _ in range(3):
        ...         loss = model(torch.randn(16, 4)).pow(2).mean()
        ...         opt.zero_grad(); loss.backward(); opt.step()
        ...         w.log(loss=loss)
        >>> w.trace.matrix("grad_rms").shape
        (3, 2)
    """
    return Watch(
        model,
        optimizer,
        run_dir,
        every=every,
        sample_every=sample_every,
        flush_every=flush_every,
        overwrite=overwrite,
        scaler=scaler,
        activations=activations,
        meta=meta,
    )
