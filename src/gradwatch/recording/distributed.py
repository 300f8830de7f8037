"""Statistics of the whole job under ``torch.distributed``: two small collectives per flush.

Under DDP every rank holds the averaged gradient, so gradient, weight and update statistics are
already global; what each rank sees alone is its share of the batch: activations, the
gradients reaching layer outputs, recurrent input-gradient profiles and logged scalars. Under
FSDP2 (``fully_shard``: DTensor parameters sharded across ranks) each rank also holds only its
shard of every parameter and gradient.

So the recorder keeps *sums* for the window (sums, sums of squares, counts, per-unit "alive"
flags, sums of squares of local shards), and at each flush :class:`WindowReducer` adds them
over the ranks and derives the statistics from the totals (a std from the totals of sums and
squares, never an average of stds). Plain steps pay nothing: no collective, no sync.

A flush makes two collectives, on every rank at the same step (windows end at the same
optimizer steps on every rank):

1. ``all_reduce(MAX)`` of a few numbers describing the variable parts (how many values each
   holds, a checksum of their layout), plus, under FSDP2, each layer's max |g| of the window.
   Ranks that disagree on a part (a scalar logged with ``reduce=`` on one rank only, recurrent
   inputs of different lengths) leave that part rank-local, with one warning, instead of
   entering a collective of different sizes (which would hang or fail).
2. ``all_reduce(SUM)`` of the sums.
"""

from __future__ import annotations

import math
import warnings
import zlib
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
import torch.distributed as dist

from .buffer import GLOBAL_GRAD_NORM, METRIC_ROW
from .sampled import OUT_GRAD_ROW, RAW_ROWS, DeviceConstants, combine, count_alive

if TYPE_CHECKING:
    from .buffer import StepBuffer
    from .sampled import StepSums

#: How a logged scalar is combined across ranks (``Watch.log(..., reduce=...)``).
Reduce = Literal["mean", "sum"]
REDUCE_MODES: tuple[str, ...] = ("mean", "sum")

# Per-layer rows that hold sums of squares or counts until the flush, so they add over the
# shards of FSDP2 parameters (the derived norms and fractions are computed after).
_SHARD_ROWS = ("grad_norm", "weight_norm", "update_ratio", "grad_underflow")


def world() -> tuple[int, int]:
    """``(rank, world size)`` of the default process group; ``(0, 1)`` outside one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_sharded(p: torch.Tensor) -> bool:
    """Whether ``p`` is a DTensor split across ranks (FSDP2's ``fully_shard`` parameters)."""
    placements = getattr(p, "placements", None)
    return placements is not None and any(pl.is_shard() for pl in placements)


def local(t: torch.Tensor) -> torch.Tensor:
    """This rank's part of a DTensor (reductions on it make no collective), else ``t``.

    ``DTensor._local_tensor`` is the same tensor ``to_local()`` returns a view of; it is read
    directly because ``to_local()`` is an autograd function: 15 us a call, 1.5 ms a step
    over W1's 100 parameters on this CPU, against 0.08 us.
    """
    if not hasattr(t, "placements"):
        return t
    part = getattr(t, "_local_tensor", None)
    return part if isinstance(part, torch.Tensor) else t.to_local()  # type: ignore[attr-defined]


def whole(t: torch.Tensor) -> torch.Tensor:
    """The full value of a DTensor as a plain tensor (``clip_grad_norm_``'s total norm of
    FSDP2 gradients); a plain tensor as it is.

    A replicated DTensor (what ``clip_grad_norm_`` returns, tested) holds its full value on
    every rank: read without a collective. Any other placement needs ``full_tensor()``, a
    collective, which is safe only because every rank clips at the same point.
    """
    placements = getattr(t, "placements", None)
    if placements is None:
        return t
    if all(pl.is_replicate() for pl in placements):
        return local(t)
    return t.full_tensor()  # type: ignore[attr-defined]


def check_reduce(reduce: object) -> Reduce | None:
    """``reduce`` for ``Watch.log``, checked.

    Raises:
        ValueError: When it is not None, ``"mean"`` or ``"sum"``.
    """
    if reduce is None or reduce in REDUCE_MODES:
        return reduce  # type: ignore[return-value]
    raise ValueError(
        f"Expected argument `reduce` to be 'mean', 'sum' or None but got {reduce!r}. Pass "
        "`reduce='mean'` to log the average over ranks (e.g. the loss of the global batch), "
        "'sum' for a total (e.g. a count of tokens), or leave it out to log rank 0's value."
    )


def _crc(text: str) -> float:
    # Python's hash() differs between processes; crc32 does not, and fits a float64 exactly.
    return float(zlib.crc32(text.encode()))


class WindowReducer:
    """The window's sums that add over ranks, and the flush-time collectives that add them.

    Args:
        n_layers: Watched layers.
        window: Steps per flush window (``flush_every``).
        device: Where the buffers live (NCCL needs CUDA tensors, gloo takes CPU ones).
        dtype: float64 where the device has it: sums of many terms keep their precision.
        sharded: FSDP2: gradient and weight statistics are sums over local shards.
        exact_nonfinite: Non-finite entries are counted exactly (CPU): the counts add up.
    """

    def __init__(
        self,
        n_layers: int,
        window: int,
        device: torch.device,
        dtype: torch.dtype,
        *,
        sharded: bool,
        exact_nonfinite: bool,
    ) -> None:
        self.rank, self.world_size = world()
        self.sharded = sharded
        self.exact_nonfinite = exact_nonfinite
        self.enabled = True  # False for a final flush after a failure: no collective then
        #: Values every rank proposes for the flush to agree on (the overhead budget's two
        #: spacings, zeros without a budget, and the next flush window: every rank sends as
        #: many), set before a flush; ``agreed`` holds their maximum over ranks after it.
        self.propose: tuple[float, ...] = (0.0, 0.0, float(window))
        self.agreed: tuple[float, ...] | None = None
        self._n_layers, self._dtype, self._device = n_layers, dtype, device
        self._consts = DeviceConstants(device)
        # A sampled step's activation sums, kept as they are until the flush (memory follows
        # the sampled steps); its keys are the slots of the window that hold them.
        self._act: dict[int, torch.Tensor] = {}  # slot -> (RAW_ROWS, layers)
        self._window = window
        self._alive: list[tuple[int, int, torch.Tensor]] = []  # (slot, layer, flags)
        self._warned: set[str] = set()
        #: Collectives made so far (two per flush): for tests and for the cost in docs.
        self.collectives = 0

    def resize(self, window: int) -> None:
        """Keep sums for windows of ``window`` steps (right after a flush reset them)."""
        assert not self._act, "the window's sums were not reduced"
        self._window = window

    def keep(self, slot: int, sums: StepSums) -> None:
        """Keep a sampled step's activation sums until the flush adds them over ranks."""
        self._act[slot] = sums.raw()
        for i, a in sums.alive_units().items():
            self._alive.append((slot, i, a.to(self._dtype).reshape(-1)))

    # ------------------------------------------------------------------ the flush
    def reduce_(self, buf: StepBuffer) -> None:
        """Replace the window's rank-local statistics in ``buf`` by the job's, in place."""
        if not self.enabled or self.world_size < 2:
            self.agreed = tuple(self.propose)  # (alone: its own proposal is the widest)
            self._reset()
            return
        dtype, device = self._dtype, self._device
        scalar_names = sorted(buf.scalar_reduce)
        scalars, logged = self._scalar_part(buf, scalar_names)
        recurrent = [p.to(device, dtype).square() for _, _, p, _ in buf.recurrent]
        alive = [a for _, _, a in self._alive]
        alive_layout = [(s, i) for s, i, _ in self._alive]
        scalar_layout = [(n, buf.scalar_reduce[n]) for n in scalar_names]
        layouts = {
            "alive": (sum(a.numel() for a in alive), _crc(repr(alive_layout))),
            "scalars": (scalars.numel(), _crc(repr(scalar_layout))),
            "recurrent": (
                sum(p.numel() for p in recurrent),
                _crc(repr([(s, i, k, p.numel()) for s, i, p, k in buf.recurrent])),
            ),
        }
        header = torch.tensor(
            [v for n, c in layouts.values() for v in (n, -n, c, -c)], dtype=dtype
        ).to(device)
        gmax = buf.values[:, METRIC_ROW["grad_max"]]
        # Which slots hold activation sums on some rank: only those travel in the sum.
        held = np.zeros(self._window)  # 1 at the slots this rank holds sums for
        held[list(self._act)] = 1.0
        parts = [header, torch.tensor(held, dtype=dtype).to(device)]
        proposed = torch.tensor(self.propose, dtype=dtype).to(device)  # (all ranks: as many)
        parts.append(proposed)
        if self.sharded:
            parts.append(torch.nan_to_num(gmax, nan=-1.0).to(dtype).reshape(-1))
        maxed = torch.cat(parts)
        dist.all_reduce(maxed, op=dist.ReduceOp.MAX)
        n_head, window = header.numel(), self._window
        n_small = n_head + window + proposed.numel()
        host = maxed[:n_small].cpu().numpy()  # the flush's one read of the result
        h = host[:n_head].reshape(-1, 4)
        slots = np.flatnonzero(host[n_head : n_head + window] > 0)
        self.agreed = tuple(float(v) for v in host[n_head + window :])
        agreed = {
            name: bool(row[0] == -row[1] and row[2] == -row[3])
            for name, row in zip(layouts, h, strict=True)
        }
        for name, ok in agreed.items():
            if not ok and name not in self._warned:
                self._warned.add(name)
                warnings.warn(
                    f"gradwatch: the ranks recorded different {name} layouts in one flush "
                    "window (e.g. a scalar logged with `reduce=` on some ranks only, or "
                    "recurrent inputs of different lengths), so those values stay rank 0's "
                    "own in the trace. Log the same names with the same `reduce=` on every rank.",
                    RuntimeWarning,
                    stacklevel=4,
                )

        # A slot kept on another rank only adds zeros here.
        zeros = torch.zeros(RAW_ROWS, self._n_layers, dtype=dtype, device=device)
        kept = [self._act.get(int(k), zeros) for k in slots]
        summed = [torch.stack(kept).reshape(-1) if kept else zeros.new_zeros(0)]
        shard_rows = [METRIC_ROW[m] for m in _SHARD_ROWS]
        if self.exact_nonfinite:
            shard_rows.append(METRIC_ROW["nonfinite"])
        if self.sharded:
            block = buf.values[:, shard_rows].to(dtype)
            if self.exact_nonfinite:
                # Not counted (a finite sum of squares) means none: 0 adds up, NaN would not.
                block[:, -1] = torch.nan_to_num(block[:, -1], nan=0.0)
            summed.append(block.reshape(-1))
        if agreed["alive"]:
            summed += alive
        if agreed["scalars"]:
            summed += [scalars.reshape(-1), logged.reshape(-1)]
        if agreed["recurrent"]:
            summed += recurrent
        flat = torch.cat(summed)
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        self.collectives += 2

        pos = len(slots) * RAW_ROWS * self._n_layers
        act = flat[:pos].view(len(slots), RAW_ROWS, self._n_layers)  # (0 slots: empty)
        # DDP and FSDP2 average the ranks' gradients: the step follows the gradient of the
        # mean of the ranks' losses, whose gradient at a layer's output (or a recurrent
        # input) is each rank's own divided by the world size. Sums of squares: by its square.
        act[:, OUT_GRAD_ROW] /= self.world_size**2
        if self.sharded:
            n = buf.values[:, shard_rows].numel()
            block = flat[pos : pos + n].view(buf.values.shape[0], len(shard_rows), -1)
            buf.values[:, shard_rows] = block.to(buf.values.dtype)
            pos += n
            g = maxed[n_small:].view(gmax.shape)
            buf.values[:, METRIC_ROW["grad_max"]] = torch.where(g < 0, math.nan, g).to(gmax.dtype)
            self._global_norms(buf)
        alive_red: list[torch.Tensor] = alive
        if agreed["alive"]:
            alive_red = []
            for a in alive:
                alive_red.append(flat[pos : pos + a.numel()])
                pos += a.numel()
        self._write_activations(buf, slots, act, alive_red)
        if agreed["scalars"] and scalar_names:
            k = scalars.numel()
            self._write_scalars(buf, scalar_names, flat[pos : pos + k], flat[pos + k : pos + 2 * k])
            pos += 2 * k
        if agreed["recurrent"]:
            out = []
            for (step, i, p, kind), sq in zip(buf.recurrent, recurrent, strict=True):
                total = flat[pos : pos + sq.numel()].view(p.shape) / self.world_size**2
                out.append((step, i, total.sqrt(), kind))
                pos += sq.numel()
            buf.recurrent = out
        self._reset()

    def _scalar_part(self, buf: StepBuffer, names: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(values, 1 where logged) of the scalars logged with ``reduce=``: (window, names)."""
        dtype, device = self._dtype, self._device
        window = self._window
        if not names:
            empty = torch.zeros(window, 0, dtype=dtype, device=device)
            return empty, empty
        cols = [buf.scalar_cols[n] for n in names]
        mask = np.stack([buf.logged[n] for n in names], axis=1)
        logged = torch.tensor(mask, dtype=dtype).to(device)
        # A value not logged counts as 0 with weight 0; a logged NaN stays NaN (it is news).
        values = torch.where(logged > 0, buf.scalars[:, cols].to(dtype), 0.0)
        return values, logged

    def _write_scalars(
        self, buf: StepBuffer, names: list[str], total: torch.Tensor, count: torch.Tensor
    ) -> None:
        total = total.view(-1, len(names))
        count = count.view(-1, len(names))
        for j, name in enumerate(names):
            mode = buf.scalar_reduce[name]
            value = total[:, j] / count[:, j] if mode == "mean" else total[:, j]
            if mode == "sum_sqrt":  # a norm from the ranks' sums of squares (FSDP2)
                value = value.sqrt()
            col = buf.scalar_cols[name]
            buf.scalars[:, col] = torch.where(count[:, j] > 0, value, math.nan).to(buf.sdtype)
            # A step some other rank logged gets a row here too.
            buf.srow_used |= (count[:, j] > 0).cpu().numpy()

    def _write_activations(
        self, buf: StepBuffer, slots: np.ndarray, act: torch.Tensor, alive: list[torch.Tensor]
    ) -> None:
        """The sampled metrics of ``slots`` from their added sums ``act`` (slots, rows, L)."""
        if not len(slots):
            return
        # A unit is alive if it was positive on any rank: a sum of 0/1 flags above 0.
        by_slot: dict[int, dict[int, torch.Tensor]] = {}
        for (slot, i, _), a in zip(self._alive, alive, strict=True):
            by_slot.setdefault(slot, {})[i] = a
        counted = [
            count_alive(by_slot.get(int(slot), {}), self._n_layers, act.dtype, self._consts)
            for slot in slots
        ]
        alive_sum = torch.stack([c[0] for c in counted])
        # (the units per layer are host counts: one copy for every slot)
        units = self._consts.array(np.stack([c[1] for c in counted]), act.dtype)
        metrics = combine(act, alive_sum, units)
        first = METRIC_ROW["act_mean"]
        idx = torch.as_tensor(slots, device=act.device)
        buf.values[idx, first : first + metrics.shape[-2]] = metrics.to(buf.values.dtype)

    def _global_norms(self, buf: StepBuffer) -> None:
        """global_grad_norm from the added per-layer sums of squares (FSDP2)."""
        rows = np.flatnonzero(buf.row_used)
        if not len(rows):
            return
        sq = buf.values[torch.as_tensor(rows), METRIC_ROW["grad_norm"]]
        none = np.zeros(sq.shape[1], dtype=bool)
        cover = [buf.row_grads[r] for r in rows]
        has = torch.tensor(np.stack([none if c is None else c.has_grad for c in cover]))
        has = has.to(sq.device)
        total = torch.where(has, sq, 0.0).sum(dim=1).sqrt()
        buf.scalars[torch.as_tensor(rows), GLOBAL_GRAD_NORM] = total.to(buf.sdtype)

    def _reset(self) -> None:
        self._act.clear()
        self._alive.clear()
