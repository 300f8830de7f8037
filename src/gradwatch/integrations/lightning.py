"""``GradwatchCallback`` for PyTorch Lightning: record a ``Trainer.fit`` with gradwatch.

Lightning's automatic optimisation runs forward and backward *inside*
``optimizer.step(closure)``, after the optimizer's step pre-hook has fired, so the pre-hook
would read the previous step's gradients. This callback therefore takes a step's statistics in
``on_before_optimizer_step`` (after the closure's backward, gradient accumulation and AMP
unscaling, before Lightning's clipping) through ``Watch.begin_step``; the optimizer's post-hook
ends the step. The same hook runs under manual optimisation, when ``opt.step()`` is called.

Example:
    >>> import pytorch_lightning as pl  # doctest: +SKIP
    >>> from gradwatch.integrations.lightning import GradwatchCallback  # doctest: +SKIP
    >>> trainer = pl.Trainer(max_steps=100, callbacks=[GradwatchCallback()])  # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ..recording.optimizers import unwrap_optimizer
from ._common import LossPool, WatchingCallback, scalar_loss

try:
    import pytorch_lightning as pl
except ImportError:  # the unified `lightning` package
    try:
        import lightning.pytorch as pl  # type: ignore[no-redef]
    except ImportError as exc:
        raise ImportError(
            "gradwatch.integrations.lightning needs PyTorch Lightning. Install it by running "
            "`pip install -U pytorch-lightning`."
        ) from exc

rank_zero_warn = pl.utilities.rank_zero_warn


class GradwatchCallback(WatchingCallback, pl.Callback):
    """Record per-layer gradient and activation statistics of a Lightning training run.

    The recording starts at ``on_train_start`` (after the sanity check) and ends at
    ``on_train_end``, or at ``on_exception`` with the run marked failed: no hook outlives the
    fit. The training loss is logged for each optimizer step (the mean of the
    ``training_step`` losses that contributed to it, kept on the device), the trainer stops
    when the watch's ``should_stop`` becomes true, and critical findings are reported with
    ``rank_zero_warn`` when training ends.

    Args:
        run_dir: Where to write the run; by default ``<trainer.log_dir>/gradwatch`` (the
            logger's version directory, else ``default_root_dir``).
        report: Diagnose the run when training ends and warn about critical findings.
        **watch_options: Passed on to ``gw.watch`` (``sample_every``, ``overwrite`` ...).

    Attributes:
        watch: The recording in progress, or the last one after training ended.

    Raises:
        TypeError: When a watch option is not one ``gw.watch`` takes.
    """

    def __init__(
        self,
        run_dir: str | os.PathLike[str] | None = None,
        *,
        report: bool = True,
        **watch_options: Any,
    ) -> None:
        super().__init__(run_dir, report=report, **watch_options)
        self._losses = LossPool()  # the training_step losses since the last optimizer step

    def _run_dir(self, trainer: pl.Trainer) -> Path:
        if self.run_dir is not None:
            return Path(self.run_dir)
        return Path(trainer.log_dir or trainer.default_root_dir) / "gradwatch"

    # ------------------------------------------------------------------ start
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Start the watch on the module and its (first) optimizer."""
        optimizers = trainer.optimizers
        if not optimizers:
            rank_zero_warn("GradwatchCallback: the trainer has no optimizer; nothing recorded.")
            return
        if len(optimizers) > 1:
            rank_zero_warn(
                f"GradwatchCallback: the trainer has {len(optimizers)} optimizers; gradwatch "
                "records the steps of the first one (`configure_optimizers`' first)."
            )
        self._start(
            pl_module,
            optimizers[0],
            self._run_dir(trainer),
            framework="lightning",
            global_step=trainer.global_step,
            step_begin="caller",
            # 16-mixed's GradScaler: a skip is then known at the skipped step itself.
            scaler=getattr(trainer.precision_plugin, "scaler", None),
        )
        self._losses = LossPool()

    # ------------------------------------------------------------------ a step
    def on_before_backward(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: Any
    ) -> None:
        """Hand the watch the loss backward runs from: the one with a graph (the losses
        ``on_train_batch_end`` sees are detached), to check it for outputs of the wrong kind;
        under automatic optimisation it is the step's loss divided by the accumulation."""
        w = self._recording()
        if w is not None and isinstance(loss, torch.Tensor):
            w.observe_loss(loss, scale=_accumulation(trainer, pl_module))

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any
    ) -> None:
        """Take the step's statistics: its gradients are final here (and not yet clipped)."""
        w = self._recording()
        if w is not None and unwrap_optimizer(optimizer) is w.optimizer:
            w.begin_step()

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        """Log the loss of each optimizer step taken, and pass on the watch's stop request."""
        w = self._recording()
        if w is None:
            return
        # A training_step returns a loss tensor or a mapping with one.
        loss = scalar_loss(outputs.get("loss") if isinstance(outputs, dict) else outputs)
        if loss is not None:
            self._losses.add(loss * (_accumulation(trainer, pl_module) or 1))
        if self._stepped(w):  # the optimizer stepped during this batch
            step_loss = self._losses.take()
            if step_loss is not None:
                w.log(loss=step_loss)  # a device tensor: w.log reads nothing on the host
        if w.should_stop:
            trainer.should_stop = True

    # ------------------------------------------------------------------ end
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Close the watch and report critical findings."""
        self._finish(trainer.is_global_zero, rank_zero_warn)

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        """Close the watch with the run marked failed, so no hook stays attached."""
        self._close(exception)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Close a watch still open (a fit interrupted between the hooks above)."""
        self._close()


def _accumulation(trainer: pl.Trainer, pl_module: pl.LightningModule) -> int | None:
    """What Lightning divided the loss a training step returned by, for backward: its
    ``accumulate_grad_batches`` under automatic optimisation; None under manual, where the
    user's ``manual_backward`` gets whatever loss they pass (divided for accumulation by
    hand, perhaps), not necessarily the one ``training_step`` returns and is logged."""
    return trainer.accumulate_grad_batches if pl_module.automatic_optimization else None
