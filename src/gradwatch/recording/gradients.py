"""Gradient, weight and update-ratio statistics of the watched parameters.

Every step that is recorded writes each layer's gradient sum of squares (norm, RMS and the
non-finite flag are derived from it at flush) and the global gradient norm; sampled steps add
max |g|, each layer's weight norm and, with an optimizer, a copy of the weights that the step's
end compares with the updated ones (the real update ratio of any optimizer), or, for a plain
SGD step, the terms that give its update without a copy (``sgd_update.py``). Under mixed
precision sampled steps also count the gradient entries that underflow the training dtype
(``precision.py``).

Parameters sharded by FSDP2 (DTensor) are reduced on their local shards (``to_local()``: a
reduction of the DTensor itself would be a collective per tensor); the sums of squares and
counts add over ranks at the flush (``distributed.py``). A parameter that is not sharded is
counted on rank 0 only, so the sum over ranks counts it once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from .._ops import stack_float32
from .buffer import GLOBAL_GRAD_NORM, METRIC_ROW, StepBuffer
from .clip_observer import ClipSeen
from .distributed import is_sharded, local, world
from .layers import LayerSet
from .precision import Precision
from .sgd_update import SgdStep, sgd_step
from .stats import (
    SMALL_NUMEL,
    FlatViews,
    Scratch,
    count_below,
    count_nonfinite,
    sum_squares,
    sums_of_squares,
    sums_of_squares_and_max_abs,
)

# Tensors up to this many elements (CPU, float32) are concatenated and reduced together: one
# kernel per tiny bias would cost more than the whole concatenation. Inside a training step a
# CPU kernel costs ~5-30 us however small its tensor; W1's 50 biases took ~300 of the ~870
# operations of a sampled step (gradient, weight and update passes) before they were batched.
_SMALL_GRAD = 4096
_SMALL_GRAD_TOTAL = 1 << 18


@dataclass
class SmallSplit:
    """A list of tensors split into large ones, reduced one kernel each, and small ones,
    concatenated and reduced together (CPU only).

    Reductions over the split return one value per large tensor, then one per element of the
    small ones; ``vec_layer`` is the layer of each value, so one ``index_add`` (or
    ``scatter_reduce``) gives the per-layer sums.
    """

    big: list[int]  # positions reduced with one kernel each
    small: list[int]  # positions concatenated and reduced together
    small_numel: int  # elements of the small ones together
    vec_layer: torch.Tensor  # layer of each value of a reduction over the split (device)
    small_sizes: list[int] = field(default_factory=list)  # elements of each small one
    _positions: torch.Tensor | None = None  # value_positions(), made when first asked

    @classmethod
    def build(
        cls,
        tensors: list[torch.Tensor],
        owner: list[int],
        device: torch.device,
        *,
        batch_small: bool,
    ) -> SmallSplit:
        """``owner[k]``: the layer of ``tensors[k]``."""
        small: list[int] = []
        if device.type == "cpu" and batch_small:
            budget = _SMALL_GRAD_TOTAL
            for pos, t in enumerate(tensors):
                n = t.numel()
                if n <= _SMALL_GRAD and t.dtype == torch.float32 and n <= budget:
                    small.append(pos)
                    budget -= n
        if len(small) < 2:
            small = []
        small_set = set(small)
        big = [pos for pos in range(len(tensors)) if pos not in small_set]
        vec_layer = [owner[pos] for pos in big]
        for pos in small:
            vec_layer += [owner[pos]] * tensors[pos].numel()
        return cls(
            big=big,
            small=small,
            small_numel=sum(tensors[pos].numel() for pos in small),
            vec_layer=torch.tensor(vec_layer, dtype=torch.long, device=device),
            small_sizes=[tensors[pos].numel() for pos in small],
        )

    def concat_small(
        self, tensors: list[torch.Tensor], out: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The small tensors, flattened and concatenated (into ``out`` when given)."""
        parts = [_flat(tensors[pos]) for pos in self.small]
        return torch.cat(parts) if out is None else torch.cat(parts, out=out)

    def value_positions(self) -> torch.Tensor:
        """The position (in the split's list) of each value of a reduction over the split:
        the large tensors', then each small one's once per element."""
        if self._positions is None:
            sizes = [1] * len(self.big) + self.small_sizes
            self._positions = torch.repeat_interleave(
                torch.tensor(self.big + self.small, dtype=torch.long),
                torch.tensor(sizes, dtype=torch.long),
            ).to(self.vec_layer.device)
        return self._positions

    def join(
        self, big: torch.Tensor | None, small: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(values, layer of each): the large tensors' values, then the small ones' elements
        (either None where the split has none of that kind)."""
        parts = [p for p in (big, small) if p is not None]
        return (torch.cat(parts) if len(parts) > 1 else parts[0]), self.vec_layer


def _flat(t: torch.Tensor) -> torch.Tensor:
    # A 1-D tensor as it is: reshape(-1) would still be a dispatcher call (~1 us on CPU).
    return t if t.dim() == 1 else t.reshape(-1)


@dataclass
class GradLayout:
    """Which parameters have a gradient this step, and how their reductions are batched.

    Built once per pattern of present gradients (usually one per run) on the host and moved
    to the device once: indexing on the device per step would be a sync on CUDA.
    """

    idx: list[int]  # parameters that have a gradient, in layer order
    idx_t: torch.Tensor  # the same on the device (long)
    layer_idx: torch.Tensor  # the layer of each of them (device, long)
    layers: torch.Tensor  # the layers that have any gradient (device, long)
    has_grad: np.ndarray  # per layer (host)
    has_grad_t: torch.Tensor  # per layer (device)
    numel: np.ndarray  # gradient elements per layer (host)
    split: SmallSplit  # positions in idx reduced alone or concatenated

    @classmethod
    def build(
        cls, layers: LayerSet, present: tuple[bool, ...], *, batch_small: bool = True
    ) -> GradLayout:
        params, owner, device = layers.params, layers.param_owner, layers.device
        idx = [k for k, has in enumerate(present) if has]
        numel = np.zeros(layers.n)
        for k in idx:
            numel[owner[k]] += params[k].numel()
        has_grad = numel > 0
        split = SmallSplit.build(
            [params[k] for k in idx], [owner[k] for k in idx], device, batch_small=batch_small
        )
        return cls(
            idx=idx,
            idx_t=torch.tensor(idx, dtype=torch.long, device=device),
            layer_idx=torch.tensor([owner[k] for k in idx], dtype=torch.long, device=device),
            layers=torch.tensor(np.flatnonzero(has_grad), dtype=torch.long, device=device),
            has_grad=has_grad,
            has_grad_t=torch.tensor(has_grad, device=device),
            numel=numel,
            split=split,
        )

    def reduce(self, grads: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Values whose sums per layer (``index_add`` by the second result) are the layers'
        gradient sums of squares: one per large tensor, one per element of the small ones."""
        split = self.split
        if not split.small:
            return sums_of_squares(grads), self.layer_idx
        big = sums_of_squares([grads[pos] for pos in split.big]) if split.big else None
        return split.join(big, split.concat_small(grads).square_())

    def reduce_detailed(
        self, grads: list[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(squares, absolute maxima, layer of each value): as :meth:`reduce`, with values
        whose per-layer maxima (``scatter_reduce`` "amax") are the layers' max |g|."""
        split = self.split
        if not split.small:
            sq, mx = sums_of_squares_and_max_abs(grads)
            return sq, mx, self.layer_idx
        big_sq, big_max = sums_of_squares_and_max_abs([grads[pos] for pos in split.big])
        flat = split.concat_small(grads)
        sq, layer = split.join(big_sq, flat.square())
        return sq, split.join(big_max, flat.abs_())[0], layer


@dataclass
class _SampledSquares:
    """A sampled step's gradient squares (``GradLayout.reduce``'s values) and the gradients'
    versions when they were read."""

    layout: GradLayout
    squares: torch.Tensor
    layer: torch.Tensor  # the layer of each value
    read: list[tuple[torch.Tensor, int]]  # (gradient, its version then)
    per_layer: torch.Tensor | None = None  # their sums per layer, where every layer has some

    def unchanged(self, layout: GradLayout, params: Sequence[torch.Tensor]) -> bool:
        """Whether the same gradients, not written into since, are there now (a clip after
        the pre-hook, under ``step_begin="caller"``, scales them in place)."""
        if layout is not self.layout:
            return False
        now = [params[k].grad for k in layout.idx]
        return all(g is t and t._version == v for g, (t, v) in zip(now, self.read, strict=True))


@dataclass
class _Snapshot:
    """The weights before a sampled update, kept until the step's end measures the update.

    On CPU the large parameters get one buffer each and the small ones (``SmallSplit``) one
    buffer together; elsewhere every parameter gets its own, for ``torch._foreach_*``.
    """

    buffers: list[torch.Tensor] | None = None  # reused from one sampled step to the next
    flat: list[torch.Tensor] | None = None  # 1-D views of the large ones' buffers (CPU)
    small: torch.Tensor | None = None  # the small parameters, concatenated (CPU)
    taken: bool = False  # whether the buffers hold this step's weights


class GradientStats:
    """Writes the gradient, weight and update statistics of the watched layers into a buffer.

    Args:
        layers: The watched layers.
        buffer: The step buffer the statistics go to.
        scratch: A reused buffer for small temporaries (shared with the activation reductions).
    """

    def __init__(self, layers: LayerSet, buffer: StepBuffer, scratch: Scratch) -> None:
        self._layers = layers
        self._buffer = buffer
        self._scratch = scratch
        self._layouts: dict[tuple[bool, ...], GradLayout] = {}
        self._snapshot = _Snapshot()
        self._flat = FlatViews()  # of the parameters, for the CPU passes of sampled steps
        #: Whether the last recorded gradients were all finite (known on CPU only: no sync).
        self.finite = True
        #: The training dtype, for the underflow count (set up by the watch).
        self.precision = Precision()
        #: The optimizer whose steps are measured (set up by the watch): a plain SGD step's
        #: update is read from its own terms (``sgd_update.py``), any other's from a copy.
        self.optimizer: torch.optim.Optimizer | None = None
        self._sgd: SgdStep | None = None  # this sampled step's, when no copy was taken
        self._sampled_sq: _SampledSquares | None = None  # this sampled step's gradient pass
        #: FSDP2: some parameters are DTensor shards, whose statistics add over ranks.
        self.sharded = any(is_sharded(p) for p in layers.params)
        # The weight and update passes' batching of small parameters (CPU; per tensor when
        # sharded, where each tensor's sum is weighted).
        self._split = SmallSplit.build(
            list(layers.params), layers.param_owner, layers.device, batch_small=not self.sharded
        )
        self._dtensors = any(hasattr(p, "placements") for p in layers.params)
        # Under FSDP2 a parameter that is not sharded (every rank holds all of it) counts on
        # rank 0 only, so the flush's sum over ranks counts it once.
        self._weight: torch.Tensor | None = None
        if self.sharded:
            rank0 = float(world()[0] == 0)
            self._weight = torch.tensor(
                [1.0 if is_sharded(p) else rank0 for p in layers.params], device=layers.device
            )

    def _local(self, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
        return [local(t) for t in tensors] if self._dtensors else tensors

    def _layout(self) -> GradLayout:
        params = self._layers.params
        present = tuple(p.grad is not None for p in params)
        cached = self._layouts.get(present)
        if cached is None:
            # Sharded statistics are weighted per parameter: no element-wise batching then.
            cached = GradLayout.build(self._layers, present, batch_small=not self.sharded)
            self._layouts[present] = cached
        return cached

    def record_grads(
        self,
        slot: int,
        *,
        detailed: bool,
        clip: ClipSeen | None = None,
        scale: torch.Tensor | None = None,
    ) -> None:
        """Gradient statistics of every layer, and the global gradient norm.

        A plain step writes only each layer's sum of squares (in the grad_norm row; norm,
        RMS and the non-finite flag are derived from it at flush, vectorised over the
        window): inside a training step every kernel costs ~10-30 us on CPU however small
        its tensor (the dispatcher's code is cold after the model's large matmuls), so a
        step makes one reduction per large gradient and about 8 more kernels in all.
        ``detailed`` steps (the sampled ones) add max |g|. With ``clip`` (the user's
        ``clip_grad_norm_`` of these gradients) the statistics are the pre-clip ones. With
        ``scale`` (a GradScaler's loss scale the gradients still carry, which a fused optimizer
        divides out in its own kernel: ``precision.still_scaled``) they are the unscaled ones.
        """
        buf = self._buffer
        lay = self._layout()
        buf.row_grads[slot] = lay
        self.finite = True
        self._sampled_sq = None
        if not lay.idx:
            return
        params = self._layers.params
        grads = [params[k].grad for k in lay.idx]
        g = self._local([t for t in grads if t is not None])
        weight = None if self._weight is None else self._weight.index_select(0, lay.idx_t)
        if detailed:
            vec, vec_max, vec_layer = lay.reduce_detailed(g)
            # What the optimizer will step with (clipped already; no scale: not fused), for
            # a plain SGD step's update without a second read.
            self._sampled_sq = _SampledSquares(lay, vec, vec_layer, [(t, t._version) for t in g])
            buf.values[slot, METRIC_ROW["grad_max"]].scatter_reduce_(
                0, vec_layer, vec_max, "amax", include_self=False
            )
            if scale is not None:
                buf.values[slot, METRIC_ROW["grad_max"]].div_(scale.to(buf.values.dtype))
            self._record_underflow(slot, g, lay, weight, scaled=scale is not None)
        else:
            vec, vec_layer = lay.reduce(g)
        if weight is not None:  # (sharded: one value per tensor, nothing concatenated)
            vec = vec * weight
        if scale is not None:  # exact: the scale is a power of two
            vec = vec / scale.to(vec.device, vec.dtype).square()
        row = buf.values[slot, METRIC_ROW["grad_norm"]]  # sum of squares until flush
        row.index_fill_(0, lay.layers, 0.0)
        row.index_add_(0, vec_layer, vec)
        exact = clip is None and scale is None and weight is None
        if self._sampled_sq is not None and exact and lay.has_grad.all():
            # Until the flush the row holds each layer's squares of what the optimizer steps.
            self._sampled_sq.per_layer = row
        total_sq = vec.sum()
        if clip is not None:
            total_sq = self._unclip(slot, clip, lay.layers, total_sq, detailed=detailed)
        if buf.exact_nonfinite:
            # CPU tensors: reading one value is a memory load, not a device sync.
            total = float(total_sq)
            self.finite = math.isfinite(total)
            buf.scalars[slot, GLOBAL_GRAD_NORM] = math.sqrt(total)
            if not math.isfinite(total):
                per_tensor = count_nonfinite(g)
                if weight is not None:
                    per_tensor = per_tensor * weight
                counts = torch.zeros(self._layers.n).index_add_(0, lay.layer_idx, per_tensor)
                buf.values[slot, METRIC_ROW["nonfinite"]] = torch.where(
                    lay.has_grad_t, counts, math.nan
                )
        else:
            # On an accelerator an exact count would need a host sync to decide; the 0/1
            # flag per layer is derived from the sums of squares at flush instead
            # (meta: nonfinite_exact = false).
            buf.scalars[slot, GLOBAL_GRAD_NORM] = total_sq.sqrt().to(self._layers.device)

    def _record_underflow(
        self,
        slot: int,
        g: list[torch.Tensor],
        lay: GradLayout,
        weight: torch.Tensor | None,
        *,
        scaled: bool,
    ) -> None:
        """Count per layer the gradient entries below the training dtype's normal range.

        The fraction (count / elements) is taken at flush. Nothing is written where the
        training dtype is float32: the metric stays missing there. ``scaled``: the gradients
        still carry the loss scale.
        """
        thresholds = self.precision.thresholds(g, scaled=scaled)
        if thresholds is None:
            return
        counts = count_below(g, thresholds, self._scratch)
        if weight is not None:
            counts = counts * weight
        row = self._buffer.values[slot, METRIC_ROW["grad_underflow"]]
        row.index_fill_(0, lay.layers, 0.0)
        row.index_add_(0, lay.layer_idx, counts)

    def _unclip(
        self,
        slot: int,
        clip: ClipSeen,
        with_grad: torch.Tensor,
        clipped_sq: torch.Tensor,
        *,
        detailed: bool,
    ) -> torch.Tensor:
        """Turn the step's clipped statistics into pre-clip ones; the pre-clip global sum of
        squares. Norm clipping multiplied every clipped gradient by one coefficient, so
        dividing by it is exact. ``clip_coef`` and ``global_grad_norm_clipped`` (what the
        optimizer used) are written as scalars; all on the device, no sync."""
        buf = self._buffer
        coef = clip.coef.to(buf.values.dtype)
        row = buf.values[slot, METRIC_ROW["grad_norm"]]
        row.div_(coef.square())
        if detailed:
            buf.values[slot, METRIC_ROW["grad_max"]].div_(coef)
        cols = buf._scalar_col("clip_coef"), buf._scalar_col("global_grad_norm_clipped")
        clipped = torch.where(clip.clipped, clip.coef, torch.ones_like(clip.coef))
        buf.scalars[slot, cols[0]] = clipped.amin().to(buf.sdtype)
        if self.sharded:
            # This rank's shards only: the flush adds the squares over ranks, then roots.
            buf.scalars[slot, cols[1]] = clipped_sq.to(buf.device, buf.sdtype)
            buf.scalar_reduce["global_grad_norm_clipped"] = "sum_sqrt"
            buf.logged.setdefault(
                "global_grad_norm_clipped", np.zeros(buf.flush_every, dtype=bool)
            )[slot] = True
        else:
            buf.scalars[slot, cols[1]] = clipped_sq.sqrt().to(buf.device, buf.sdtype)
        return row.index_select(0, with_grad).sum()

    def record_weights(self, slot: int, *, snapshot: bool) -> None:
        """weight_norm of every layer, and (before an update) a copy of the weights.

        The copy is what makes ``update_ratio`` the real update of any optimizer; a plain SGD
        step takes none (``sgd_update.py``: ``snapshot`` is then ignored). Its buffers
        are reused: a fresh 13 MB allocation per sampled step cost ~35x the copy on CPU (page
        faults), measured on benchmark W1. On CPU each large weight is copied right after its
        norm is taken, while it is still in cache, and the small ones in one concatenation.
        """
        lay = self._layers
        # Under no_grad no detach() is needed (one dispatcher call per tensor saved).
        params: list[torch.Tensor] = self._local(list(lay.params))
        state = self._snapshot
        self._sgd = sgd_step(self.optimizer, params) if snapshot and not self._dtensors else None
        if (
            self._sgd is not None
            and lay.device.type != "cpu"
            and self._sgd.uniform_lr(range(len(params))) is None
        ):
            self._sgd = None  # (per-value rates would be a host-to-device copy: see the module)
        snapshot = snapshot and self._sgd is None
        if lay.device.type == "cpu":
            sq, sq_layer = self._weights_cpu(params, snapshot=snapshot)
        else:
            sq, sq_layer = sums_of_squares(params), lay.param_layer
            if snapshot:
                if state.buffers is None:
                    state.buffers = [torch.empty_like(p.detach()) for p in params]
                torch._foreach_copy_(state.buffers, params)
        if self._weight is not None:
            sq = sq * self._weight
        state.taken = snapshot
        # A sum of squares until the flush (weight_norm = its root; it adds over shards).
        self._per_layer(slot, "weight_norm", sq, sq_layer)

    def _weights_cpu(
        self, params: list[torch.Tensor], *, snapshot: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The CPU weight pass: (squares, layer of each) over ``self._split``, and the copy."""
        split, state = self._split, self._snapshot
        flat = self._flat(params)
        if snapshot and state.flat is None:
            state.buffers = [torch.empty_like(params[k].detach()) for k in split.big]
            state.flat = [b.view(-1) if b.is_contiguous() else b for b in state.buffers]
            if split.small:
                state.small = torch.empty(split.small_numel, dtype=torch.float32)
        big = small = None
        if split.big:
            sq_list = []
            for j, k in enumerate(split.big):
                w = flat[k]
                sq_list.append(sum_squares(w))
                if snapshot and state.flat is not None and state.buffers is not None:
                    # Right after its norm, while w is in cache (flat when w could be made so).
                    (state.flat[j] if w.dim() == 1 else state.buffers[j]).copy_(w)
            big = stack_float32(sq_list)
        if split.small:
            out = state.small if snapshot else None
            small = split.concat_small(flat, out).square()
        return split.join(big, small)

    def record_update(
        self, slot: int, *, skipped: bool = False, found_inf: torch.Tensor | None = None
    ) -> None:
        """update_ratio ||after - before|| / ||before|| per layer, if weights were copied.

        A ``skipped`` step made no update: none is recorded. ``found_inf`` (on an
        accelerator, where reading it would sync) is a fused optimizer's own skip flag: the
        recorded update is NaN where it is set, on the device.
        """
        state = self._snapshot
        if self._sgd is not None and not skipped:
            self._record_sgd_update(slot, self._sgd)
        self._sgd, self._sampled_sq = None, None
        if state.taken and not skipped:
            lay = self._layers
            with torch.no_grad():
                params: list[torch.Tensor] = self._local(list(lay.params))
                if lay.device.type == "cpu":
                    sq, sq_layer = self._update_cpu(params)
                else:
                    snap = state.buffers
                    assert snap is not None
                    torch._foreach_sub_(snap, params)
                    sq, sq_layer = sums_of_squares(snap), lay.param_layer
                if self._weight is not None:
                    sq = sq * self._weight
                # ||after - before||^2 until the flush divides it by the weights' and roots it.
                diff_sq = self._per_layer(slot, "update_ratio", sq, sq_layer)
                if found_inf is not None:
                    diff_sq.masked_fill_(found_inf.to(diff_sq.device) > 0, math.nan)
        state.taken = False

    def _record_sgd_update(self, slot: int, sgd: SgdStep) -> None:
        """update_ratio's ||after - before||^2 per layer of a plain SGD step: lr^2 ||d||^2
        (``sgd_update.py``), from the gradient pass when its gradients are unchanged."""
        lay, kept = self._layout(), self._sampled_sq
        params = self._layers.params
        if not lay.idx:
            self._buffer.values[slot, METRIC_ROW["update_ratio"]].zero_()
            return
        rate = sgd.uniform_lr(lay.idx)
        if not sgd.momentum and kept is not None and kept.unchanged(lay, params):
            if kept.per_layer is not None and rate is not None:  # (one kernel)
                row = self._buffer.values[slot, METRIC_ROW["update_ratio"]]
                torch.mul(kept.per_layer, rate * rate, out=row)
                return
            sq, sq_layer = kept.squares, kept.layer
        else:
            assert self.optimizer is not None
            sq, sq_layer = lay.reduce(sgd.directions(self.optimizer, params, lay.idx))
        if rate is not None:
            sq = sq * (rate * rate)
        else:
            rates = torch.tensor([sgd.lr[k] ** 2 for k in lay.idx], dtype=sq.dtype)
            sq = sq * rates[lay.split.value_positions()]
        self._per_layer(slot, "update_ratio", sq, sq_layer)

    def _per_layer(
        self, slot: int, metric: str, values: torch.Tensor, layer_of: torch.Tensor
    ) -> torch.Tensor:
        """Write the per-layer sums of ``values`` (``layer_of`` each) into ``metric``'s row
        of the buffer at ``slot``, in place: two kernels (a fresh zero vector, the sums and
        a copy into the row were three)."""
        row = self._buffer.values[slot, METRIC_ROW[metric]]
        row.zero_()
        return row.index_add_(0, layer_of, values.to(row.dtype))

    def _update_cpu(self, params: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """The CPU update pass: (squares of after - before, layer of each) over the split."""
        split, state = self._split, self._snapshot
        flat = self._flat(params)
        big = small = None
        if split.big:
            assert state.flat is not None
            before = state.flat
            big = stack_float32(
                [self._update_sq(before[j], flat[k]) for j, k in enumerate(split.big)]
            )
        if split.small:
            assert state.small is not None
            diff = split.concat_small(
                flat, self._scratch.get(split.small_numel, torch.float32, state.small.device)
            )
            small = diff.sub_(state.small).square()
        return split.join(big, small)

    def _update_sq(self, before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
        """sum((after - before)**2) of one parameter, on CPU.

        The difference goes to a small reused buffer that stays in cache, so the pass reads
        both tensors once and writes nothing back to main memory. Large tensors are
        subtracted in place (the snapshot is stale after an update anyway).
        """
        if after.dim() != 1:  # not contiguous, so not flattened
            return sum_squares(before.view(after.shape).sub_(after))
        if after.numel() > SMALL_NUMEL:
            return sum_squares(before.sub_(after))  # large: in place, no fresh allocation
        diff = self._scratch.like(after)
        torch.sub(after, before, out=diff)
        return sum_squares(diff)
