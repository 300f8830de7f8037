"""``GradwatchCallback`` for the Hugging Face ``Trainer``: record ``trainer.train()``.

The Trainer calls ``optimizer.step()`` once per gradient-accumulation cycle, after the
backward passes and after clipping, on an accelerate ``AcceleratedOptimizer``; ``gw.watch``
unwraps it and records each step in the inner optimizer's step hooks, so the statistics are
those of the final, accumulated gradients (pre-clip: clipping is observed). Under fp16 the
``AcceleratedOptimizer`` holds accelerate's GradScaler; it is passed on to ``gw.watch``, so a
step the scaler skips (an inf or NaN gradient) is recorded as skipped, with the layers that
overflowed, and the step after it is sampled.

The loss of every step is the one the Trainer counts itself (what its ``training_step``
returns), not HF's logs: those come every ``logging_steps`` steps (500 by default), averaged
over them, so a run of a few hundred steps would leave the loss rules nothing to read. The
first training losses also hand the watch their autograd graph (the Trainer gives callbacks
no loss tensor), read for a loss given outputs of the wrong kind (``recording/loss_graph.py``).

Example:
    >>> from transformers import Trainer  # doctest: +SKIP
    >>> from gradwatch.integrations.transformers import GradwatchCallback  # doctest: +SKIP
    >>> Trainer(model, args, train_dataset=ds, callbacks=[GradwatchCallback()])  # doctest: +SKIP
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.hooks import RemovableHandle

from ..recording import Watch
from ._common import LossPool, WatchingCallback, scalar_loss

try:
    import transformers
except ImportError as exc:
    raise ImportError(
        "gradwatch.integrations.transformers needs Hugging Face transformers. Install it by "
        "running `pip install -U transformers`."
    ) from exc

# Scalars of the Trainer's logs recorded with each step: name in the logs -> name in the trace.
# (HF's "loss" only while no per-step loss is recorded: see GradwatchCallback.)
_LOGGED = {"loss": "loss", "learning_rate": "learning_rate"}


class StepLoss:
    """The training loss of each optimizer step, pooled from the model's forward outputs:
    where no Trainer is found above the callback's hooks (:class:`TrainerLoss` otherwise).

    The Trainer's own loss (``compute_loss``) is the model's output ``"loss"`` unless a label
    smoother or ``compute_loss_func`` replaces it; then the model gets no labels, returns no
    loss, and nothing is pooled here. Pooled as the Trainer pools it for its logs: when the
    model is passed ``num_items_in_batch`` its loss is already a share of the accumulated
    batch's (the micro-batches' losses add up), otherwise each is a micro-batch mean (they are
    averaged). With ``average_tokens_across_devices`` over several processes the Trainer
    multiplies the share by the number of processes, and so does this; the ranks' values are
    then averaged (``reduce="mean"``) into the global batch's loss.

    Only training forwards count (``model.training`` with gradients enabled): evaluation and
    prediction run under ``no_grad``. Each such loss, with its graph, is also handed to
    ``observe`` (``Watch.observe_loss``, which reads the first few graphs for outputs of the
    wrong kind: a custom model's ``nll_loss`` of its logits), since the Trainer hands its
    callbacks no loss.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        args: Any,
        observe: Callable[[torch.Tensor, float], None] | None = None,
    ) -> None:
        self._observe = observe
        self._processes = (
            int(getattr(args, "world_size", 1) or 1)
            if getattr(args, "average_tokens_across_devices", False)
            else 1
        )
        self._accumulation = int(getattr(args, "gradient_accumulation_steps", 1) or 1)
        self._pool = LossPool()
        self._shares = False  # the losses are shares of the accumulated batch (they add)
        #: Whether a step's loss has been taken from the model's outputs in this run.
        self.seen = False
        self._handle: RemovableHandle | None = model.register_forward_hook(
            self._on_forward, with_kwargs=True
        )

    def _on_forward(
        self, module: torch.nn.Module, args: Any, kwargs: dict[str, Any], output: Any
    ) -> None:
        if not (module.training and torch.is_grad_enabled()):
            return
        # Only a mapping's (a ModelOutput is one) "loss": a tuple's first element is the loss
        # only when labels were given, and nothing in the tuple says whether they were.
        raw = output.get("loss") if isinstance(output, dict) else None
        loss = scalar_loss(raw)
        if loss is None:
            return
        self._shares = kwargs.get("num_items_in_batch") is not None
        if self._observe is not None and isinstance(raw, torch.Tensor):
            # A share is about 1/(accumulation x processes) of the step's loss (take()).
            self._observe(raw, self._accumulation * self._processes if self._shares else 1)
        self._pool.add(loss)

    def take(self) -> torch.Tensor | None:
        """The loss of the optimizer step just taken (None when no forward returned one), on
        the device; the pool starts empty for the next step."""
        loss = self._pool.take(summed=self._shares)
        if loss is None:
            return None
        self.seen = True
        return loss * self._processes if self._shares else loss

    def remove(self) -> None:
        """Detach the forward hook (safe to call again)."""
        if self._handle is not None:
            self._handle.remove()
            self._handle = None


class TrainerLoss:
    """Each optimizer step's training loss as the Trainer counts it, and the first losses'
    graphs, from the Trainer's own methods, wrapped on the instance while the watch records.

    The Trainer adds what ``training_step`` returns over a step's micro-batches (each already
    scaled for the accumulation, times the processes under ``average_tokens_across_devices``)
    into the loss it logs, so their sum is the step's loss whoever computed it: the model's
    own ``"loss"``, a label smoother, ``compute_loss_func`` or a subclass's ``compute_loss``.
    ``compute_loss`` returns the loss with its graph: a training call's (gradients on,
    ``model.training``; ``prediction_step`` calls it under ``no_grad``) goes to ``observe``.
    The wrappers are the instance's attributes; :meth:`remove` deletes them, so the class's
    methods (a subclass's overrides included) show through again.
    """

    _WRAPPED = ("training_step", "compute_loss")

    def __init__(self, trainer: Any, observe: Callable[[torch.Tensor, float], None] | None) -> None:
        self._trainer = trainer
        self._observe = observe
        self._pool = LossPool()
        self.seen = False
        # What the instance held itself before (None: the class's method showed through).
        self._own = {name: vars(trainer).get(name) for name in self._WRAPPED}
        self._wrappers: dict[str, Callable[..., Any]] = {}
        step, compute = trainer.training_step, trainer.compute_loss

        # (Each passes straight through once removed, should anyone have kept a reference.)
        def training_step(*args: Any, **kwargs: Any) -> Any:
            out = step(*args, **kwargs)
            loss = scalar_loss(out)
            if loss is not None and self._wrappers:
                self._pool.add(loss)
            return out

        def compute_loss(model: Any, *args: Any, **kwargs: Any) -> Any:
            out = compute(model, *args, **kwargs)
            loss = out[0] if isinstance(out, tuple) and out else out
            training = torch.is_grad_enabled() and getattr(model, "training", False)
            observe = self._observe if self._wrappers else None
            if observe is not None and training and isinstance(loss, torch.Tensor):
                observe(loss, self._scale(kwargs.get("num_items_in_batch")))
            return out

        for name, wrapper in zip(self._WRAPPED, (training_step, compute_loss), strict=True):
            self._wrappers[name] = wrapper
            setattr(trainer, name, wrapper)

    def _scale(self, num_items: Any) -> float:
        """How many times a micro-batch's ``compute_loss`` the step's loss is, as the
        Trainer's ``training_step`` decides: where the loss is already the micro-batch's
        share of the step's (normalised by ``num_items_in_batch`` over the accumulated
        batch), the number of micro-batches; else 1 (each is divided by that number, then
        added up: their mean)."""
        trainer = self._trainer
        shares = getattr(trainer, "loss_is_scaled_for_ga", None)
        if shares is None:
            shares = (
                getattr(trainer, "model_accepts_loss_kwargs", False) and num_items is not None
            ) or getattr(trainer, "compute_loss_func", None) is not None
        steps = getattr(trainer, "current_gradient_accumulation_steps", None)
        return float(steps or 1) if shares else 1.0

    def take(self) -> torch.Tensor | None:
        """The loss of the optimizer step just taken (None when no micro-batch returned one),
        on the device; the pool starts empty for the next step."""
        loss = self._pool.take(summed=True)
        if loss is not None:
            self.seen = True
        return loss

    def remove(self) -> None:
        """Unwrap the Trainer's methods (safe to call again); one replaced since by someone
        else is left as it is."""
        for name, wrapper in self._wrappers.items():
            if vars(self._trainer).get(name) is not wrapper:
                continue
            own = self._own[name]
            if own is None:
                delattr(self._trainer, name)
            else:
                setattr(self._trainer, name, own)
        self._wrappers = {}


def calling_trainer(depth: int = 8) -> Any:
    """The ``transformers.Trainer`` whose callback handler called the hook that calls this
    (the nearest ``self`` that is one, within ``depth`` frames), else None: HF hands its
    callbacks the model and the optimizer, never the Trainer (a hook called by hand has
    none above it)."""
    frame = sys._getframe(1)
    for _ in range(depth):
        owner = frame.f_locals.get("self")
        if isinstance(owner, transformers.Trainer):
            return owner
        if frame.f_back is None:
            break
        frame = frame.f_back
    return None


class GradwatchCallback(WatchingCallback, transformers.TrainerCallback):
    """Record per-layer gradient and activation statistics of a Hugging Face training run.

    The watch starts in ``on_train_begin`` on the model and the optimizer the Trainer hands
    to callbacks and is closed in ``on_train_end``, or by ``Trainer.train`` raising (see
    :meth:`close`). Each step's training loss is the one the Trainer counts for its logs,
    whoever computes it (:class:`TrainerLoss`); with no Trainer above the hooks (called by
    hand) it is pooled from the model's output ``"loss"`` (:class:`StepLoss`), and where the
    model returns none either, HF's logged ``loss`` is recorded at the step it is logged at:
    the mean over the ``logging_steps`` steps that end there. HF's logged ``learning_rate``
    is recorded likewise. The Trainer stops when the watch's
    ``should_stop`` becomes true; critical findings are warned about at the end.

    Args:
        run_dir: Where to write the run; by default ``<args.output_dir>/gradwatch``.
        report: Diagnose the run when training ends and warn about critical findings.
        **watch_options: Passed on to ``gw.watch`` (``sample_every``, ``overwrite`` ...).

    Attributes:
        watch: The recording in progress, or the last one after training ended.

    Raises:
        TypeError: When a watch option is not one ``gw.watch`` takes.
    """

    _step_loss: TrainerLoss | StepLoss | None = None  # while a watch is open

    def on_train_begin(
        self, args: Any, state: Any, control: Any, *, model: Any = None, **kwargs: Any
    ) -> None:
        """Start the watch on the model and the (unwrapped) optimizer."""
        self.close()  # a watch left open by a train() that raised
        optimizer = kwargs.get("optimizer")
        if not isinstance(model, torch.nn.Module) or optimizer is None:
            raise ValueError(
                f"GradwatchCallback needs the Trainer's model and optimizer at on_train_begin "
                f"but got model={type(model).__name__}, optimizer={type(optimizer).__name__}. "
                "Pass it to `Trainer(callbacks=[...])`; calling its hooks by hand needs both."
            )
        run_dir = self.run_dir
        if run_dir is None:
            run_dir = Path(args.output_dir or ".") / "gradwatch"
        self._start(
            model,
            optimizer,
            run_dir,
            framework="transformers",
            global_step=state.global_step,
            scaler=getattr(optimizer, "scaler", None),  # accelerate's GradScaler (fp16)
        )
        w = self._recording()
        observe = None if w is None else w.observe_loss
        trainer = calling_trainer()
        self._step_loss = (
            TrainerLoss(trainer, observe)
            if trainer is not None
            else StepLoss(model, args, observe)  # (the hooks called by hand: no Trainer)
        )

    def on_log(
        self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        """Record the logged loss and learning rate at the step just taken."""
        w = self._recording()
        if w is None or not logs or w.num_steps == 0:
            return  # (an evaluation before the first step has no step to belong to)
        scalars = {
            ours: logs[theirs]
            for theirs, ours in _LOGGED.items()
            if isinstance(logs.get(theirs), (int, float, torch.Tensor))
        }
        if self._step_loss is not None and self._step_loss.seen:
            scalars.pop("loss", None)  # each step's own loss is recorded (on_step_end)
        if scalars:
            w.log(**scalars)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Record the step's loss and pass on the watch's stop request."""
        w = self._recording()
        if w is None:
            return
        loss = self._step_loss.take() if self._step_loss is not None else None
        # A step accelerate's GradScaler skipped never reached the optimizer's hooks, so the
        # watch has no row for it: its loss would overwrite the previous step's.
        if self._stepped(w) and loss is not None:
            w.log(loss=loss, reduce="mean")
        if w.should_stop:
            control.should_training_stop = True

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Close the watch and warn about critical findings."""
        self._finish(
            state.is_world_process_zero,
            # (stacklevel: the lambda, _finish, this hook, then the Trainer that called it)
            lambda line: warnings.warn(line, UserWarning, stacklevel=4),
        )

    def _close(self, exc: BaseException | None = None) -> Watch | None:
        if self._step_loss is not None:
            self._step_loss.remove()
            self._step_loss = None
        return super()._close(exc)

    def close(self) -> None:
        """Close the watch (every hook removed, the run finished); safe to call again.

        The Trainer has no exception hook for callbacks: if ``train()`` may raise, use the
        callback as a context manager (the run is then marked failed), or call this.
        """
        self._close()

    def __enter__(self) -> GradwatchCallback:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        """Close the watch, marking the run failed when ``train()`` raised."""
        self._close(exc)
