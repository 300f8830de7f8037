"""The step buffer: one flush window of statistics on the device, and its one trip to the host.

Per-layer statistics of each step are written into a preallocated ``(window, metrics, layers)``
device tensor (NaN = not measured), per-step scalars into a ``(window, columns)`` one that
grows its columns as the user logs new names. A flush copies both (and the window's recurrent
profiles) to the host in one transfer and turns them into the trace's chunk tables.
"""

from __future__ import annotations

import contextlib
import errno
import math
import time
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import numpy as np
import pyarrow as pa
import torch
from torch.autograd.function import BackwardCFunction

from ..trace import (
    LAYER_METRICS,
    STEP_SCALARS,
    ProfileKind,
    RunWriter,
    Trace,
    layer_table,
    load,
    recurrent_table,
    scalar_table,
    trace_from_tables,
)
from ..trace.schema import tag_flush

if TYPE_CHECKING:
    from .sampled import StepSums

#: Row of each metric in the buffer (LAYER_METRICS order).
METRIC_ROW = {name: i for i, name in enumerate(LAYER_METRICS)}
# Columns of the scalars the recorder writes itself (STEP_SCALARS order).
GLOBAL_GRAD_NORM, SKIPPED = 0, 1
#: The dtype of the per-layer values (the window's large buffer).
VALUE_DTYPE = torch.float32
#: Columns of the scalars buffer at first (it widens as the user logs more names).
SCALAR_COLUMNS = 8


def scalar_dtype(device: torch.device) -> torch.dtype:
    """The dtype of the per-step scalars (and the activation sums): float64 where the device
    has it, so that losses and sums keep their precision."""
    return torch.float32 if device.type == "mps" else torch.float64


def buffer_bytes_per_step(n_layers: int, device: torch.device) -> int:
    """Bytes ``StepBuffer`` allocates per step of its window (the values, then the scalars)."""
    values = len(LAYER_METRICS) * max(n_layers, 1) * VALUE_DTYPE.itemsize
    return values + SCALAR_COLUMNS * scalar_dtype(device).itemsize


class GradCoverage(Protocol):
    """Which layers had a gradient at a recorded step, and how many elements it had."""

    has_grad: np.ndarray  # per layer (bool)
    numel: np.ndarray  # gradient elements per layer


class WindowReduce(Protocol):
    """What adds a window's statistics over ranks before it leaves the device (distributed)."""

    enabled: bool  # False: the next flush makes no collective (a final flush after a failure)
    propose: tuple[float, ...]  # values the ranks agree on in the flush (their maximum) ...
    agreed: tuple[float, ...] | None  # ... once it is over (None without a collective)

    def keep(self, slot: int, sums: StepSums) -> None: ...

    def resize(self, window: int) -> None: ...

    def reduce_(self, buf: StepBuffer) -> None: ...


def _host_readable(t: torch.Tensor) -> bool:
    """Whether reading ``t`` now is a memory load (a real CPU tensor), not a device sync."""
    return t.device.type == "cpu" and not t.is_complex()


def _keepable(t: torch.Tensor) -> bool:
    """Whether ``t`` may be read at the flush instead of copied at ``log()``: the result of a
    built-in autograd operation, not a view. Not a custom ``autograd.Function``'s output: a
    compiled region's (``CompiledFunction``) or a CUDA-graphed callable's lives in memory
    that its next call overwrites (under ``mode="reduce-overhead"`` reading it then raises),
    without moving the version counter that catches an in-place write."""
    fn = t.grad_fn
    return fn is not None and t._base is None and not isinstance(fn, BackwardCFunction)


class _Kept(NamedTuple):
    """A logged tensor kept by reference (no copy) until the flush, and its version then."""

    tensor: torch.Tensor
    version: int

    def unchanged(self) -> bool:
        """Whether nothing wrote into it since it was logged (it still holds that value)."""
        return self.tensor._version == self.version


class StepBuffer:
    """Device buffers for one flush window of ``flush_every`` steps, and their bookkeeping.

    Attributes:
        values: ``(flush_every, len(LAYER_METRICS), layers)`` device tensor. Until the flush
            the ``grad_norm``, ``weight_norm`` and ``update_ratio`` rows hold sums of squares
            (of the gradient, the weights, the update) and ``grad_underflow`` a count: sums
            that add over the shards of a parameter split across ranks. The flush turns them
            into norms, ratios and fractions.
        scalars: ``(flush_every, columns)`` device tensor of per-step scalars, float64 where
            the device has it (losses keep their precision).
        window_start: Step of the first row.
    """

    def __init__(self, n_layers: int, flush_every: int, device: torch.device) -> None:
        self.n_layers = n_layers
        self.device = device
        # CPU counts non-finite entries exactly; accelerators flag them (a count would sync).
        self.exact_nonfinite = device.type == "cpu"
        #: Layers with a trainable parameter the watched optimizer does not step: their
        #: update over its step is not their update (another optimizer, or none, moves
        #: them), so update_ratio stays missing there (set by the watch at each flush).
        self.unstepped = np.zeros(n_layers, dtype=bool)
        self.scalar_cols: dict[str, int] = {name: i for i, name in enumerate(STEP_SCALARS)}
        self.sdtype = scalar_dtype(device)
        self._allocate(flush_every, scalar_width=SCALAR_COLUMNS)
        self.late_scalars: list[tuple[int, dict[str, float]]] = []  # logged before the window
        #: Seconds the last flush waited for the device to finish the work queued before
        #: it (the user's backward pass, mostly): not the recorder's own cost.
        self.last_wait = 0.0
        # Logged values not yet in the buffer: (flat position, value), written at the flush.
        self._pending: list[tuple[int, torch.Tensor | float | _Kept]] = []
        # (step, layer, profile, kind): kind is a trace PROFILE_KINDS name.
        self.recurrent: list[tuple[int, int, torch.Tensor, ProfileKind]] = []
        self.window_start = 0
        # pyarrow imports pandas on its first table (~0.2 s): here, before training, not in
        # the first flush, where it would be charged to the overhead budget.
        layer_table(np.zeros(0, np.int64), np.zeros(0), np.zeros((0, len(LAYER_METRICS), 0)))
        #: How each scalar logged with ``reduce=`` combines across ranks, and where it was
        #: logged in the window (a step a rank did not log does not count in its mean).
        self.scalar_reduce: dict[str, str] = {}
        self.logged: dict[str, np.ndarray] = {}
        #: Set under torch.distributed: adds the window over ranks at each flush.
        self.reducer: WindowReduce | None = None

    def resize(self, flush_every: int) -> None:
        """Make the window ``flush_every`` steps long: right after a flush (it is empty)."""
        if flush_every == self.flush_every:
            return
        assert not (self._pending or self.recurrent or self.row_used.any()), "not flushed"
        self._allocate(flush_every, scalar_width=self.scalars.shape[1])
        self.logged = {name: np.zeros(flush_every, dtype=bool) for name in self.logged}
        if self.reducer is not None:
            self.reducer.resize(flush_every)

    def _allocate(self, flush_every: int, *, scalar_width: int) -> None:
        """The window's buffers and row flags, empty (values NaN), ``flush_every`` rows."""
        self.flush_every = flush_every
        shape = (flush_every, len(LAYER_METRICS), self.n_layers)
        self.values = torch.full(shape, math.nan, device=self.device, dtype=VALUE_DTYPE)
        self.row_used = np.zeros(flush_every, dtype=bool)
        self.row_grads: list[GradCoverage | None] = [None] * flush_every
        self.scalars = torch.full(
            (flush_every, scalar_width), math.nan, device=self.device, dtype=self.sdtype
        )
        self.srow_used = np.zeros(flush_every, dtype=bool)

    def is_full(self, step: int) -> bool:
        """Whether ``step`` falls past the window (flush first)."""
        return step - self.window_start >= self.flush_every

    # ------------------------------------------------------------------ scalars
    def log(
        self,
        step: int,
        scalars: dict[str, float | int | bool | torch.Tensor],
        reduce: str | None = None,
    ) -> None:
        """Write the user's scalars for ``step`` (see ``Watch.log``), without a host sync.

        Raises:
            ValueError: When a name is one the recorder writes itself, or was logged before
                with another ``reduce``.
            TypeError: When a value is not a number or a one-element tensor.
        """
        slot = step - self.window_start
        late: dict[str, float] = {}
        for name in scalars:
            if name in STEP_SCALARS:
                raise ValueError(
                    f"scalar name {name!r} is recorded by gradwatch itself; log it under "
                    "another name."
                )
            before = self.scalar_reduce.get(name)
            if name in self.scalar_cols and before != reduce:
                raise ValueError(
                    f"scalar {name!r} was logged with reduce={before!r} and now with "
                    f"reduce={reduce!r}; one name combines across ranks one way. Pass "
                    f"`reduce={before!r}` every time, or log it under another name."
                )
        for name, value in scalars.items():
            if isinstance(value, torch.Tensor):
                if value.numel() != 1:
                    raise TypeError(
                        f"Expected scalar `{name}` to be a number or a one-element tensor but "
                        f"got a tensor of shape {tuple(value.shape)}. Log e.g. `{name}.mean()`."
                    )
                tensor_value: torch.Tensor | None = value
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
            if reduce is not None:
                self.scalar_reduce[name] = reduce
                self.logged.setdefault(name, np.zeros(self.flush_every, dtype=bool))[slot] = True
            self.put_scalar(slot, name, tensor_value if tensor_value is not None else number)  # type: ignore[arg-type]
        if late:
            self.late_scalars.append((step, late))

    def put_scalar(self, slot: int, name: str, value: float | torch.Tensor) -> None:
        """Keep scalar ``name``'s value at ``slot`` (the user's, or one the recorder measures
        itself: the learning rate) until the flush writes them all at once.

        A copy into the buffer per step cost ~4 dispatcher calls (~25 us on CPU inside a
        training loop). A CPU tensor is read now (a memory load, no sync, no clone). On an
        accelerator a copy is a kernel launch: 65 us of the 110 us an idle step cost on an
        H200 (W2, launch-bound), so the result of a built-in autograd operation that is not
        a view (the loss, as ``log(loss=loss)`` gets it: nothing writes into it after its
        step) is kept by reference and read at the flush (:func:`_keepable`); any other
        tensor (a running total, a buffer) is cloned, so that one changed in place afterwards
        keeps its value.
        """
        col = self._scalar_col(name)
        pos = slot * self.scalars.shape[1] + col
        if not isinstance(value, torch.Tensor):
            self._pending.append((pos, value))
        elif _host_readable(value):
            self._pending.append((pos, float(value.item())))
        elif _keepable(value):
            self._pending.append((pos, _Kept(value.detach(), value._version)))
        else:
            with torch.no_grad():
                self._pending.append((pos, value.detach().clone()))
        self.srow_used[slot] = True

    def wait_for_device(self) -> None:
        """Wait, at the start of a flush, until the work queued on the buffer's CUDA stream
        has run; ``last_wait`` says how long.

        The flush's copies to and from the host would wait for it anyway; waiting first
        separates that time, the user's queued kernels, from the flush's own work, which is
        what the budget charges. Nothing to wait for on the CPU.
        """
        self.last_wait = 0.0
        if self.device.type == "cuda":
            start = time.perf_counter()
            torch.cuda.current_stream(self.device).synchronize()
            self.last_wait = time.perf_counter() - start

    def write_pending(self) -> None:
        """Write the scalars logged since the last call into the buffer (a few kernels for
        the whole window; no host sync)."""
        if not self._pending:
            return
        latest = dict(self._pending)  # a name logged twice in a step: the last value
        self._pending.clear()
        for pos, value in latest.items():
            if isinstance(value, _Kept):
                latest[pos] = value.tensor if value.unchanged() else self._lost(pos)
        flat = self.scalars.view(-1)
        numbers = {pos: v for pos, v in latest.items() if isinstance(v, float)}
        if numbers:
            where = torch.tensor(list(numbers), dtype=torch.long).to(self.device)
            flat.index_put_(
                (where,), torch.tensor(list(numbers.values()), dtype=self.sdtype).to(self.device)
            )
        tensors = {pos: v for pos, v in latest.items() if isinstance(v, torch.Tensor)}
        if not tensors:
            return
        where = torch.tensor(list(tensors), dtype=torch.long)
        vals = list(tensors.values())
        first = vals[0]
        if all(v.dim() == 0 and v.device == first.device for v in vals):
            # The usual case (a loss per step): one stack, not two operations per value
            # (a window's 100 of them cost ~2 ms of host time on a GPU machine).
            values = torch.stack(vals).to(self.device, self.sdtype)
        else:
            values = torch.cat([v.reshape(1).to(self.device, self.sdtype) for v in vals])
        flat.index_put_((where.to(self.device),), values)

    def _lost(self, pos: int) -> float:
        """A value kept by reference that was changed in place after ``log()``: missing."""
        width = self.scalars.shape[1]
        name = next(n for n, col in self.scalar_cols.items() if col == pos % width)
        warnings.warn(
            f"gradwatch: the tensor logged as {name!r} at step "
            f"{self.window_start + pos // width} was changed in place after `log()`, before "
            "it was read; that step's value is recorded as missing. Log a copy "
            f"(`{name}=t.clone()`) or a float, or call `log()` after the change.",
            RuntimeWarning,
            stacklevel=2,
        )
        return math.nan

    def _scalar_col(self, name: str) -> int:
        col = self.scalar_cols.get(name)
        if col is None:
            col = len(self.scalar_cols)
            self.scalar_cols[name] = col
            if col >= self.scalars.shape[1]:
                self.write_pending()  # (their positions are for the current width)
                grown = torch.full(
                    (self.flush_every, self.scalars.shape[1] * 2),
                    math.nan,
                    device=self.device,
                    dtype=self.sdtype,
                )
                grown[:, : self.scalars.shape[1]] = self.scalars
                self.scalars = grown
        return col

    # ------------------------------------------------------------------ flushing
    def flush(self, depth: list[int], next_start: int) -> list[tuple[str, pa.Table]]:
        """Move the window to the host in one transfer; its chunk tables, by kind.

        Args:
            depth: Depth of each layer index (the trace names layers by depth).
            next_start: Step of the first row of the next window.
        """
        self.write_pending()
        if self.reducer is not None:
            self.reducer.reduce_(self)
        rec = self.recurrent
        parts = [self.values.reshape(-1).to(self.sdtype), self.scalars.reshape(-1)]
        parts += [p.reshape(-1).to(self.sdtype).to(self.device) for _, _, p, _ in rec]
        host = torch.cat(parts).cpu().numpy()
        n_layer_vals = self.values.numel()
        layer_data = host[:n_layer_vals].reshape(self.values.shape)
        s_vals = host[n_layer_vals : n_layer_vals + self.scalars.numel()].reshape(
            self.scalars.shape
        )
        offset = n_layer_vals + self.scalars.numel()
        depth_arr = np.asarray(depth, dtype=np.int32)
        tables: list[tuple[str, pa.Table]] = []

        rows = np.flatnonzero(self.row_used)
        if len(rows) and self.n_layers:
            block = layer_data[rows]  # (R, M, L)
            self._derive_grad_metrics(block, rows)
            tables.append(("layers", layer_table(rows + self.window_start, depth_arr, block)))

        srows = np.flatnonzero(self.srow_used)
        skipped = s_vals[:, self.scalar_cols["skipped"]]
        skipped[np.isnan(skipped)] = 0.0  # only skipped steps write their flag
        if self.late_scalars:
            logged = {k for _, d in self.late_scalars for k in d}
            names = sorted(logged | (set(self.scalar_cols) - {"step"}))
            late_steps = np.array([s for s, _ in self.late_scalars], dtype=np.int64)
            late_cols = {
                name: np.array([d.get(name, math.nan) for _, d in self.late_scalars])
                for name in names
            }
            tables.append(("scalars", scalar_table(late_steps, late_cols)))
        if len(srows):
            cols = {name: s_vals[srows, c] for name, c in self.scalar_cols.items()}
            tables.append(("scalars", scalar_table(srows + self.window_start, cols)))

        if rec:
            by_kind: dict[ProfileKind, list[tuple[int, int, np.ndarray]]] = {}
            for step, i, prof, kind in rec:
                k = prof.numel()
                by_kind.setdefault(kind, []).append(
                    (step, int(depth_arr[i]), host[offset : offset + k])
                )
                offset += k
            for kind, profiles in by_kind.items():
                tables.append(("recurrent", recurrent_table(profiles, kind)))

        self.values.fill_(math.nan)
        self.scalars.fill_(math.nan)
        self.row_used[:] = False
        self.row_grads = [None] * self.flush_every
        self.srow_used[:] = False
        self.late_scalars.clear()
        for mask in self.logged.values():
            mask[:] = False
        self.recurrent = []
        self.window_start = next_start
        # Every chunk says what its flush wrote, so a reader of the live run directory can
        # tell a flush whose chunks are not all written yet and leave it out.
        return tag_flush(tables, next_start)

    def _derive_grad_metrics(self, block: np.ndarray, rows: np.ndarray) -> None:
        """Turn the per-step sums into grad_norm, grad_rms, nonfinite, weight_norm,
        update_ratio and grad_underflow, in place.

        ``block`` is (rows, metrics, layers) on the host; a layer without a gradient at a
        step is missing (NaN) in the gradient metrics.
        """
        w, u = METRIC_ROW["weight_norm"], METRIC_ROW["update_ratio"]
        with np.errstate(divide="ignore", invalid="ignore"):
            block[:, u, :] = np.sqrt(block[:, u, :] / block[:, w, :])
        block[:, u, self.unstepped] = np.nan
        block[:, w, :] = np.sqrt(block[:, w, :])
        gn, gr, nf = METRIC_ROW["grad_norm"], METRIC_ROW["grad_rms"], METRIC_ROW["nonfinite"]
        sq = block[:, gn, :].copy()
        has = np.zeros(sq.shape, dtype=bool)
        numel = np.ones(sq.shape)
        for j, r in enumerate(rows):
            cover = self.row_grads[r]
            if cover is not None:
                has[j] = cover.has_grad
                numel[j] = np.maximum(cover.numel, 1)
        norm = np.sqrt(sq)
        uf = METRIC_ROW["grad_underflow"]
        block[:, uf, :] = np.where(has, block[:, uf, :] / numel, np.nan)
        block[:, gn, :] = np.where(has, norm, np.nan)
        block[:, gr, :] = np.where(has, norm / np.sqrt(numel), np.nan)
        counted = block[:, nf, :]
        # Exact counts exist where a CPU step found a non-finite sum; elsewhere a finite sum
        # means 0, and on accelerators a non-finite one means the 0/1 flag.
        flag = 0.0 if self.exact_nonfinite else (~np.isfinite(sq)).astype(np.float64)
        block[:, nf, :] = np.where(has, np.where(np.isnan(counted), flag, counted), np.nan)


_WHY = {
    errno.ENOSPC: "disk full",
    errno.EDQUOT: "disk quota exceeded",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EROFS: "read-only file system",
}


def _describe(exc: OSError) -> str:
    """``"disk full ([Errno 28] cannot write '/run/layers-000003.parquet': ...)"``."""
    why = _WHY.get(exc.errno or 0, "write error")
    return f"{why} ({exc})"


class Sink:
    """Where flushed chunks go: a run directory (rank 0 with a ``run_dir``) or memory.

    Recording never stops training: when writing the run directory fails (a full disk, a
    permission taken away), the sink stops writing, warns once naming the run directory,
    and marks ``meta.json`` ``"stopped"`` with the reason when it still can; the steps
    written before stay loadable. With ``strict`` the error is raised instead (from the
    ``optimizer.step()`` that flushed), after the same marking.

    Args:
        writer: The run directory's writer, or None to keep the chunks in memory.
        meta: The run's metadata for a status (``"running"``, ``"complete"``, ``"failed"``);
            called only when it is written or a trace kept in memory is built.
        strict: Raise write errors instead of stopping with a warning.

    Attributes:
        stopped: Why writing stopped (``"disk full (...)"``), or None while it goes on.
    """

    def __init__(
        self,
        writer: RunWriter | None,
        meta: Callable[[str], dict[str, Any]],
        *,
        strict: bool = False,
    ) -> None:
        self.writer = writer
        self._meta = meta
        self.strict = strict
        self.stopped: str | None = None
        self._tables: dict[str, list[pa.Table]] = {"layers": [], "scalars": [], "recurrent": []}

    def start(self) -> None:
        """Write the first ``meta.json`` ("running").

        Raises:
            OSError: When the run directory cannot be written (at ``gw.watch``, before
                training starts, so the caller hears about it at once).
        """
        if self.writer is not None:
            self.writer.write_meta(self._meta("running"))

    def emit(self, kind: str, table: pa.Table) -> None:
        if self.stopped is not None:
            return
        if self.writer is None:
            self._tables[kind].append(table)
            return
        try:
            self.writer.write_chunk(kind, table)
        except OSError as exc:
            self._stop(exc)

    def write_meta(self, status: str) -> None:
        if self.writer is None:
            return
        meta = self._meta(status)
        if self.stopped is not None:
            meta = _with_stop(meta, self.stopped)
        try:
            self.writer.write_meta(meta)
        except OSError as exc:
            if self.stopped is None:
                self._stop(exc)
            # else: already warned; the meta.json on disk says "stopped" if it could.

    def _stop(self, exc: OSError) -> None:
        assert self.writer is not None
        self.stopped = _describe(exc)
        # A failed chunk removed its temporary file, so a small meta.json may still fit.
        with contextlib.suppress(OSError):
            self.writer.write_meta(_with_stop(self._meta("running"), self.stopped))
        if self.strict:
            raise exc
        warnings.warn(
            f"gradwatch stopped recording to {str(self.writer.path)!r}: {self.stopped}. "
            "Training goes on; the steps written before stay readable with gw.load. Free "
            "space or fix the directory, or pass `strict=True` to gw.watch to fail instead.",
            RuntimeWarning,
            stacklevel=2,
        )

    def trace(self, status: str) -> Trace:
        """The trace of everything emitted (read back from the run directory if written)."""
        if self.writer is not None:
            return load(self.writer.path)
        return trace_from_tables(
            self._meta(status),
            self._tables["layers"],
            self._tables["scalars"],
            self._tables["recurrent"],
        )


def _with_stop(meta: dict[str, Any], reason: str) -> dict[str, Any]:
    """``meta`` with status ``"stopped"`` and the reason right after it."""
    out: dict[str, Any] = {}
    for key, value in meta.items():
        if key == "reason":
            continue
        out[key] = "stopped" if key == "status" else value
        if key == "status":
            out["reason"] = reason
    return out
