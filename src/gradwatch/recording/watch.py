"""``gw.watch``: record per-layer statistics of a training run at near-zero cost.

How a step is recorded (DESIGN.md, "Recording"):

* With an optimizer, its step pre-hook reads the final, accumulated gradients and its post-hook
  the updated weights, so gradient accumulation counts optimizer steps, not backward calls.
* Gradient, weight and non-finite statistics come from a few fused ``torch._foreach_norm``
  kernels, reduced per layer on the device and written into a preallocated device buffer
  (``gradients``, ``buffer``).
* Activation statistics, ``||dL/d output||`` per layer, recurrent input-gradient profiles and
  real update ratios are measured on sampled steps only: the hooks that measure them are
  attached for those steps and removed after, so other steps pay nothing (``activations``).
  Which steps are sampled is the ``schedule``'s: a fixed spacing, or the one that keeps the
  recorder's measured cost under the ``overhead`` budget.
* The buffer goes to the host once per flush (one transfer), then to Parquet (or memory).

This module is the life cycle: arguments, a step's begin and end, ``log``, ``close``; the
optimizer's and scaler's hooks are ``step_hooks``', the statistics the composed classes'.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from ..trace import RunWriter, Trace, run_meta
from ..trace.schema import OPTIMIZER_LR, check_user_meta
from .activations import ActivationSampler
from .anatomy import Anatomy
from .arguments import (
    check_dense_steps,
    check_flush_window,
    check_int,
    check_layers,
    check_model,
    check_optimizer,
    check_scaler,
    check_step_begin,
)
from .buffer import SKIPPED, Sink, StepBuffer
from .compiled import EagerWindow, untraced, user_module
from .distributed import Reduce, WindowReducer, check_reduce, world
from .flushing import FLUSH_EVERY, Flush, FlushListener
from .gradients import GradientStats
from .layers import LayerSet
from .loop import LoopProbes
from .optimizers import learning_rate, unwrap_optimizer
from .precision import autocast_readers, fsdp_param_dtype, fused_found_inf, still_scaled
from .schedule import DEFAULT_OVERHEAD, Schedule, check_overhead
from .stats import Scratch
from .step_hooks import OptimizerHooks


@dataclass
class _Progress:
    """Where the recording stands."""

    step: int = 0  # index of the optimizer step in progress (= steps completed)
    began: bool = False  # the step's statistics were taken; its end is still to come
    closed: bool = False
    failed: bool = False  # left by an exception: the run's status says so
    started: float = field(default_factory=time.time)


class Watch:
    """A recording in progress. Create it with ``gw.watch`` (which documents the arguments).

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
        dense_steps: int = 20,
        flush_every: int | None = None,
        overwrite: bool = False,
        scaler: Any | None = None,
        activations: bool = True,
        meta: dict[str, Any] | None = None,
        strict: bool = False,
        step_begin: Literal["optimizer", "caller"] = "optimizer",
        overhead: float | None = DEFAULT_OVERHEAD,
    ) -> None:
        # Every argument is checked here, before a directory is made or a hook attached.
        check_model(model)
        self.every = check_int("every", every)
        self.sample_every = check_int("sample_every", sample_every)
        self.dense_steps = check_dense_steps(dense_steps)
        self.overhead = check_overhead(overhead)
        # None: the recorder chooses, from FLUSH_EVERY up, under the overhead budget.
        self._auto_flush = flush_every is None and self.overhead is not None
        self._agreed_window = FLUSH_EVERY  # (torch.distributed: set at each flush)
        window = FLUSH_EVERY if flush_every is None else check_int("flush_every", flush_every)
        if optimizer is not None:
            optimizer = unwrap_optimizer(optimizer)  # AcceleratedOptimizer, LightningOptimizer
        self.step_begin = check_step_begin(step_begin, optimizer)
        check_scaler(scaler, optimizer)
        self._user_meta = check_user_meta(meta)
        self.model = model
        # Under torch.compile the layers, their names and the hooks are those of the module
        # the user wrote, not of the OptimizedModule around it (no `_orig_mod.` prefix).
        model = user_module(model)
        self._module = model
        self.optimizer = optimizer
        self.scaler = scaler

        specs = check_layers(model)
        if optimizer is not None:
            check_optimizer(optimizer, model)

        self._layers = LayerSet(specs)
        check_flush_window(window, self._layers.n, self._layers.device)
        self._buffer = StepBuffer(self._layers.n, window, self._layers.device)
        scratch = Scratch()  # one reused buffer for the small temporaries of both
        self._grads = GradientStats(self._layers, self._buffer, scratch)
        self._grads.precision.scaler = scaler
        self._grads.precision.fsdp = fsdp_param_dtype(model)
        self._grads.optimizer = optimizer
        rank, self._world_size = world()
        if self._world_size > 1:
            # Activation sums, logged scalars (and FSDP2 shards) add over ranks at each flush.
            self._buffer.reducer = WindowReducer(
                self._layers.n,
                window,
                self._layers.device,
                self._buffer.sdtype,
                sharded=self._grads.sharded,
                exact_nonfinite=self._buffer.exact_nonfinite,
            )
        self._sampler = ActivationSampler(
            model, self._layers, self._buffer, scratch, enabled=bool(activations)
        )
        self._anatomy = Anatomy(model, self._layers)
        self._loop = LoopProbes(model, self._layers, optimizer)
        self._buffer.unstepped = self._loop.coverage.mask
        self._anatomy.clips.listeners.append(self._loop.zeroing.written)
        self._schedule = Schedule.for_device(
            self._layers.device, every, sample_every, dense_steps, self.overhead
        )
        if self.overhead is not None:
            self._sampler.timer = self._schedule  # its hooks charge their host time to it
        if self._buffer.reducer is not None:
            # The ranks agree on which steps are sampled and recorded at each flush. A
            # sharded gradient's non-finite entries are seen by the rank holding them only.
            self._schedule.distributed = True
            self._schedule.force_on_nonfinite = not self._grads.sharded
        self._progress = _Progress()
        # On the optimizer and the scaler: the steps' begin and end (step_hooks.py).
        self._hooks = OptimizerHooks(
            optimizer,
            scaler,
            pre_hook=self._opt_pre_hook if self.step_begin == "optimizer" else None,
            post_hook=self._opt_post_hook,
            on_skip=self._scaler_skipped,
            steps=lambda: self._progress.step,
            evaluated=self._sampling_off,
        )
        # Compiled functions run eagerly while the sampled-step hooks exist (compiled.py).
        self._eager = EagerWindow(self.model)
        self._flush_listeners: list[FlushListener] = []
        #: Set by a listener (or by you) to ask the training loop to end cleanly; the
        #: framework callbacks stop their trainer when it becomes true.
        self.should_stop = False

        # Only rank 0 writes the run directory; the others keep their trace in memory.
        writer = (
            RunWriter(run_dir, overwrite=overwrite) if run_dir is not None and rank == 0 else None
        )
        self._sink = Sink(writer, self._meta, strict=bool(strict))
        self.run_dir = Path(run_dir) if run_dir is not None else None
        try:
            self._sink.start()
            if specs:
                self._attach()
        except BaseException:
            # Nothing half-built stays behind: no hook, no meta.json, no empty directory.
            self._detach()
            if writer is not None:
                writer.discard()
            raise

    # ------------------------------------------------------------------ hooks
    def _detach(self) -> None:
        """Remove every hook the recorder attached; compiled code runs compiled again."""
        self._hooks.remove()
        self._anatomy.disarm()
        self._sampling_off()

    def _attach(self) -> None:
        self._hooks.attach()
        precision, device = self._grads.precision, self._layers.device
        readers = autocast_readers(self.model, [spec.module for spec in self._layers.specs])
        if self._sampler.enabled:
            # Read on sampled steps only: attached with their hooks, not on every forward.
            read = precision.forward_pre_hook(device)
            self._sampler.extra_pre_hooks = [(m, read) for m in readers]
        else:
            self._hooks.handles += precision.attach(readers, device)
        self._anatomy.arm()  # the first forward's graph; the user's clip_grad_norm_
        self._sampler.arm()  # step 0 is always sampled; its forward also orders the layers
        self._eager.hold(self._sampler.armed)  # (the structure probe's window is step 0's)

    def _scaler_skipped(self) -> None:
        # GradScaler found inf/nan and did not call optimizer.step(): a skipped step.
        if not self._progress.began:  # (begun already with step_begin="caller")
            self._begin_step(skipped=True)
        self._end_step(skipped=True)

    # The budget's clock starts at each hook's entry (cold calls: 4 of the 10 us it sees of an
    # idle 5-layer MLP step), except in a compiled optimizer step, where a traced clock read
    # charged dynamo's compile to the first steps: there the work runs eagerly, timed inside.
    def _opt_pre_hook(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        if torch.compiler.is_compiling():
            untraced(self._begin_step, skipped=False)
        else:
            self._begin_step(skipped=False, entered=self._schedule.clock())

    def _sampling_off(self) -> None:
        """Remove the sampled step's hooks; compiled functions run compiled again. (After a
        step's closure's first call too: later calls, LBFGS's trial points, are not its
        forward; the hooks come back at its end when the next step is sampled.)"""
        self._sampler.disarm()
        self._eager.hold(False)

    def _opt_post_hook(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        found_inf = fused_found_inf(optimizer)  # a fused optimizer's own GradScaler skip
        if torch.compiler.is_compiling():
            untraced(self._end_step, found_inf=found_inf)
        else:
            self._end_step(entered=self._schedule.clock(), found_inf=found_inf)

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
        if self._progress.closed:
            raise RuntimeError("this Watch is closed; start a new one with `gw.watch(...)`.")
        self._begin_step(skipped=False)
        self._end_step()

    def begin_step(self) -> None:
        """Take the statistics of the optimizer step about to be applied (``step_begin="caller"``).

        For a framework whose optimizer step runs forward and backward inside it (Lightning's
        ``optimizer.step(closure)``), the step pre-hook comes before the gradients exist; its
        callback calls this once they are final (``on_before_optimizer_step``) and the
        optimizer's post-hook ends the step. A step begun whose optimizer never stepped (a
        GradScaler skip) is recorded as skipped when the next one begins, or at ``close()``.
        """
        if self.step_begin != "caller":
            raise RuntimeError(
                "`w.begin_step()` drives a Watch made with `step_begin='caller'`; this one "
                "takes its statistics in the optimizer's step pre-hook already."
            )
        if self._progress.closed:
            raise RuntimeError("this Watch is closed; start a new one with `gw.watch(...)`.")
        if self._progress.began:
            if self._hooks.evaluations > 1:
                return  # a later call of the step's closure (LBFGS): begun at the first
            self._end_step(skipped=True)
        self._begin_step(skipped=False)

    def _begin_step(self, *, skipped: bool, entered: float | None = None) -> None:
        start = self._schedule.clock() if entered is None else entered
        progress, buf = self._progress, self._buffer
        # Under torch.distributed a rank whose run directory stopped keeps flushing: every
        # rank must take part in each flush's collective.
        distributed = buf.reducer is not None
        if progress.closed or not self._layers.n or (self._sink.stopped and not distributed):
            return  # (stopped: the run directory cannot be written; training goes on)
        step, schedule = progress.step, self._schedule
        if buf.is_full(step):
            flush_start = schedule.clock()
            self._flush()
            flushed = schedule.clock() - flush_start
            start += flushed  # charged apart, spread over the steps
            # (less the wait for the user's kernels still queued on the device)
            schedule.charge_flush(max(flushed - self._buffer.last_wait, 0.0))
            if self._sink.stopped is not None and not distributed:
                return
            if self._auto_flush:
                # Under torch.distributed the window the ranks agreed on in that flush.
                buf.resize(
                    self._agreed_window
                    if distributed
                    else schedule.flush_window(buf.flush_every, FLUSH_EVERY, buf.n_layers)
                )
        if not self._layers.ordered:
            self._finalize_order()
        self._loop.observe(step)  # (.grad identities and versions, a flag: no tensor read)
        slot = step - buf.window_start
        record, sampled = schedule.begin(step)
        # An idle step (most steps, under the budget) only marks its row: on a 2 ms GPU step
        # every microsecond of this path is 0.05% of the budget.
        if record or skipped:
            with torch.no_grad():
                if record:
                    clip = self._anatomy.take_clip()
                    scale = still_scaled(self.optimizer, self.scaler)  # (fused optimizers)
                    self._grads.record_grads(slot, detailed=sampled, clip=clip, scale=scale)
                    if (lr := learning_rate(self.optimizer)) is not None:
                        buf.put_scalar(slot, OPTIMIZER_LR, lr)
                        schedule.learning_rate(step, lr)  # a tenfold fall samples the next
                    if skipped or not self._grads.finite:
                        schedule.nonfinite(step)  # the step after it is always sampled
                if sampled:
                    snapshot = self.optimizer is not None and not skipped
                    self._grads.record_weights(slot, snapshot=snapshot)
                    self._sampler.record(slot)
                if skipped:
                    buf.scalars[slot, SKIPPED] = 1.0  # 0 is filled in at flush: one kernel less
            if record:
                buf.row_used[slot] = True  # (a plain assignment: `|=` is a numpy ufunc call)
        buf.srow_used[slot] = True
        if (self._sampler.armed or self._eager.held) and not schedule.sampled(step + 1):
            self._sampling_off()  # (with sample_every=1 the hooks simply stay attached)
        progress.began = True
        schedule.pause()
        schedule.charge(schedule.clock() - start)

    def _end_step(
        self,
        *,
        skipped: bool = False,
        entered: float | None = None,
        found_inf: torch.Tensor | None = None,
    ) -> None:
        schedule = self._schedule
        start = schedule.clock() if entered is None else entered
        progress = self._progress
        if progress.closed or not self._layers.n or not progress.began:
            return
        progress.began = False
        schedule.resume()
        slot = progress.step - self._buffer.window_start
        if found_inf is not None and found_inf.device.type == "cpu":
            skipped = skipped or bool(found_inf)  # (a CPU tensor: a read, not a sync)
            found_inf = None
        if skipped:
            self._buffer.scalars[slot, SKIPPED] = 1.0
            schedule.nonfinite(progress.step)  # the step after it is always sampled
        elif found_inf is not None:  # known on the device only: flagged there, no sync
            self._buffer.scalars[slot, SKIPPED] = (found_inf > 0).to(self._buffer.sdtype)
        self._grads.record_update(slot, skipped=skipped, found_inf=found_inf)
        progress.step += 1
        if schedule.sampled(progress.step):
            self._sampler.recurrent.regular = schedule.regular(progress.step)
            self._sampler.recurrent.step = progress.step
            self._sampler.arm()
            self._eager.hold(self._sampler.armed)
        schedule.charge(schedule.clock() - start)
        schedule.end()

    def _finalize_order(self) -> None:
        self._layers.finalize_order()
        self._anatomy.finish(self._sampler)
        self._sink.write_meta("running")

    # ------------------------------------------------------------------ scalars
    def log(
        self, *, reduce: Reduce | None = None, **scalars: float | int | bool | torch.Tensor
    ) -> None:
        """Record scalars (e.g. ``loss=loss``) for the last optimizer step taken.

        Tensors are fine and are not synchronised: no ``.item()`` needed. Call it after
        ``optimizer.step()``; a value logged before the first step belongs to step 0, and a
        name logged twice in one step keeps the last value. The autograd graph of the first
        few tensors that have one is read (no tensor is): pass the loss itself, not
        ``loss.item()``, and a softmax before ``cross_entropy`` is named from step 0.

        Args:
            reduce: Under ``torch.distributed``, how the ranks' values combine in the trace:
                ``"mean"`` (e.g. the loss of the global batch), ``"sum"``, or None for rank
                0's own value. Added in the flush's collective, so it costs nothing per
                step; every rank must log the same names with the same ``reduce``. Without
                ``torch.distributed`` a value is its own mean and sum.
            **scalars: The values, by name (``reduce`` cannot be one).

        Raises:
            TypeError: When a value is not a number or a one-element tensor.
            ValueError: When ``reduce`` is not "mean", "sum" or None, or differs from the
                ``reduce`` the name was logged with before.
        """
        if self._progress.closed:
            raise RuntimeError("this Watch is closed; log before `close()` or leaving `with`.")
        mode = check_reduce(reduce)
        # The recorder's work like any other: charged to the budget (~14 us a call on CPU,
        # 5% of a 0.3 ms step).
        schedule = self._schedule
        start = schedule.clock()
        step = max(self._progress.step - 1, 0)
        self._buffer.log(step, scalars, mode)
        self._loop.observe_log(scalars, step)  # graphs read, no tensor read
        schedule.charge(schedule.clock() - start)

    def observe_loss(self, loss: torch.Tensor, scale: float | None = 1.0) -> None:
        """Hand the watch the loss ``backward`` runs from, to check its graph (a softmax
        before ``cross_entropy``, ``nll_loss`` of logits): ``log`` does so with its tensors; a
        framework callback whose logged losses are detached calls this, with ``scale``: how
        many times this loss the step's logged loss is (None: unknown)."""
        self._loop.loss.observe(loss, self._progress.step, scale)

    def observe_clip(
        self,
        parameters: torch.Tensor | Iterable[torch.Tensor],
        total_norm: torch.Tensor,
        max_norm: float,
    ) -> None:
        """Tell the watch that ``parameters``' gradients were just norm-clipped in place.

        ``torch.nn.utils.clip_grad_norm_`` is observed by itself; a clipper of another kind
        (gradwatch's ``GradientClipper``, a framework's) calls this with the total norm it
        measured (a tensor, not read on the host) and ``max_norm``, so the step's gradient
        statistics are the pre-clip ones. Call it after clipping, before the optimizer step.
        """
        params = [parameters] if isinstance(parameters, torch.Tensor) else list(parameters)
        self._anatomy.clips.observe(params, torch.as_tensor(total_norm), max_norm)

    # ------------------------------------------------------------------ output
    def add_flush_listener(self, listener: FlushListener) -> None:
        """Call ``listener(watch, flush)`` on the host after each flush, in the order added.

        A flush happens every ``flush_every`` steps (in the optimizer's step pre-hook, or in
        ``begin_step``), on ``w.trace`` and on ``close()``; the listener sees the tables just
        written, so it adds no device sync. An exception it raises propagates to the caller of
        the step (or of ``close``), after the data is written: this is how
        ``on_finding="raise"`` stops a run with its run directory complete.
        """
        if not callable(listener):
            raise TypeError(
                f"Expected argument `listener` to be callable as listener(watch, flush) but "
                f"got {type(listener).__name__}."
            )
        self._flush_listeners.append(listener)

    @property
    def flush_every(self) -> int:
        """Steps per flush window now (lengthened by the recorder under ``flush_every=None``)."""
        return self._buffer.flush_every

    def _flush(self, *, final: bool = False) -> None:
        """Move the window's buffers to the host in one transfer and write them out."""
        self._buffer.wait_for_device()  # (the user's queued kernels: not the flush's cost)
        self._sampler.write_window()
        buf, reducer, schedule = self._buffer, self._buffer.reducer, self._schedule
        budget = schedule.budget is not None
        if reducer is not None:
            # Agreed on in the flush's collective: the spacings and the next window.
            spacings = schedule.proposal() if budget else (0, 0)
            window = buf.flush_every
            if self._auto_flush:
                window = schedule.flush_window(window, FLUSH_EVERY, buf.n_layers)
            reducer.propose = (*map(float, spacings), float(window))
        self._loop.coverage.refresh()  # (the buffer holds its mask: param groups added)
        tables = buf.flush(self._layers.depth, self._progress.step)
        if reducer is not None and reducer.agreed is not None:
            if budget:
                schedule.adopt(*reducer.agreed[:2])
            self._agreed_window = int(reducer.agreed[2])
            reducer.agreed = None
        for kind, table in tables:
            self._sink.emit(kind, table)
        if self._sink.stopped is not None:
            # Recording stopped (the run directory cannot be written) and training goes on:
            # no hook stays attached, and compiled code runs compiled again (compiled.py).
            self._sampling_off()
            self._sampler.release()
        if final:
            # The run's status is written before a listener can raise.
            self._sink.write_meta("failed" if self._progress.failed else "complete")
        event = Flush(tables=tables, end_step=self._progress.step, final=final)
        for listener in self._flush_listeners:
            listener(self, event)

    def _meta(self, status: str) -> dict[str, Any]:
        layers = self._layers
        return run_meta(
            status=status,
            created=self._progress.started,
            model=layers.model_summary(self._module),
            layers=layers.infos(),
            config={
                "every": self.every,
                "sample_every": self.sample_every,
                "dense_steps": self.dense_steps,
                "flush_every": self._buffer.flush_every,
                "flush_auto": self._auto_flush,
                "activations": self._sampler.enabled,
                "optimizer": type(self.optimizer).__name__ if self.optimizer else None,
                "device": str(layers.device),
                "nonfinite_exact": self._buffer.exact_nonfinite,
                "world_size": self._world_size,
                "sharded": self._grads.sharded,
                "overhead": self.overhead,
                **({"schedule": self._schedule.meta()} if self.overhead is not None else {}),
                **self._loop.meta(),  # what the watch saw of the loop
            },
            steps_recorded=self._progress.step,
            frameworks={"torch": torch.__version__},
            extra={**self._anatomy.meta(), **self._user_meta},
        )

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Remove every hook, flush what is recorded and finish the run directory.

        Safe to call more than once.
        """
        progress = self._progress
        if progress.closed:
            return
        try:
            if progress.began and self.step_begin == "caller":
                # Begun and never taken by the optimizer (a GradScaler skip at the last step):
                # a skipped step, as it would be when the next one began.
                self._end_step(skipped=True)
        finally:
            progress.closed = True
            self._detach()
            # Outputs kept for a sampled step that never reached the optimizer: let them go.
            self._sampler.release()
        if not self._layers.ordered and self._layers.n:
            self._finalize_order()
        if progress.failed and self._buffer.reducer is not None:
            # The other ranks may not be closing (they may still train, or be gone): a
            # collective now could hang. The last window stays this rank's own.
            self._buffer.reducer.enabled = False
        if self._layers.n:
            self._flush(final=True)
        else:
            self._sink.write_meta("failed" if progress.failed else "complete")

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self._progress.failed = exc_type is not None
        self.close()

    @property
    def num_layers(self) -> int:
        """Layers watched (the rows of the trace's layer table)."""
        return self._layers.n

    @property
    def num_steps(self) -> int:
        """Optimizer steps recorded so far."""
        return self._progress.step

    @property
    def trace(self) -> Trace:
        """Everything recorded so far (flushes the current window first).

        Under ``torch.distributed`` (more than one rank) a flush is a collective every rank
        must join, so while recording ``trace`` does not flush: it holds the windows flushed
        so far (every ``flush_every`` steps), and any rank may read it alone. After
        ``close()`` (on every rank) it holds every step.
        """
        if not self._progress.closed and self._layers.n and self._buffer.reducer is None:
            self._flush()
        return self._sink.trace("complete" if self._progress.closed else "running")


def watch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    run_dir: str | os.PathLike[str] | None = None,
    **options: Any,
) -> Watch:
    """The recorder alone, without the live layer: ``Watch(model, optimizer, run_dir, ...)``.

    ``gw.watch`` (``gradwatch.live.watch``) takes the same arguments, documented there, plus
    the live ones (``on_finding``, ``tensorboard`` ...); the lab records through this one so
    its output stays free of live warnings.
    """
    return Watch(model, optimizer, run_dir, **options)
