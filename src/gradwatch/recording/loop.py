"""What the watch sees of the training loop: gradients never zeroed, eval mode left on, and
outputs of the wrong kind on their way into the loss.

:class:`LoopProbes` is the watch's one view of them: :class:`~.zeroing.ZeroingProbe` (a loop
that never calls ``zero_grad()``) and :class:`ModeProbe` (optimizer steps taken with the
model in eval mode), observed at every optimizer step, :class:`~.loss_graph.LossGraphProbe`
(a softmax before ``cross_entropy``, ``nll_loss`` of logits) and :class:`LoggedLosses`
(training losses logged with no watched step: ``optimizer.step()`` forgotten, or another
optimizer stepping), handed the values the watch logs, and :class:`StepCoverage` (layers
the optimizer does not step), refreshed at each flush; all written to ``meta.json``'s
``config`` (``grad_zeroing``, ``train_mode``, ``loss_graph``, ``logged_losses``,
``unstepped``), with the optimizer's weight decay per layer (``weight_decay``,
:mod:`~.weight_decay`).

Eval mode: ``model.eval()`` left on.
A validation pass calls ``model.eval()``; a loop that does not call ``model.train()`` after
it trains on in eval mode, where BatchNorm normalises with its running statistics (which it
then no longer updates) instead of the batch's, and dropout is off. The watch reads the
model's ``training`` flag at each optimizer step (a Python attribute: no tensor is read) and
counts the BatchNorm layers that track running statistics and the dropout layers, which are
what eval mode changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.dropout import _DropoutNd

from .layers import LayerSet
from .loss_graph import LossGraphProbe
from .weight_decay import decay_rates
from .zeroing import ZeroingProbe, steady_writes


class ModeProbe:
    """Counts the optimizer steps taken in eval mode.

    Attributes:
        steps: Optimizer steps seen.
        eval_steps: Of those, steps taken with ``model.training`` False.
        first_eval: The first such step, or None.
    """

    def __init__(self, model: nn.Module) -> None:
        self._model = model
        self._batch_norms = sum(
            isinstance(m, _BatchNorm) and m.track_running_stats for m in model.modules()
        )
        self._dropouts = sum(isinstance(m, _DropoutNd) for m in model.modules())
        self.steps = 0
        self.eval_steps = 0
        self.first_eval: int | None = None

    def observe(self, step: int) -> None:
        """Count ``step`` and whether the model was in eval mode for it."""
        self.steps += 1
        if not self._model.training:
            self.eval_steps += 1
            if self.first_eval is None:
                self.first_eval = step

    def meta(self) -> dict[str, int | None]:
        """The counts, for ``meta.json`` (``config.train_mode``)."""
        return {
            "steps": self.steps,
            "eval_steps": self.eval_steps,
            "first_eval_step": self.first_eval,
            "batch_norms": self._batch_norms,
            "dropouts": self._dropouts,
        }


class LoggedLosses:
    """Counts the logged values that carry an autograd graph (training losses: what
    ``backward`` runs from), in all and since the watched optimizer's last step.

    A loop logs its loss once per optimizer step (a few times under gradient accumulation).
    Many since the last step mean the watched optimizer no longer steps: ``optimizer.step()``
    was forgotten, or the model is stepped by another optimizer (one built anew each step).
    Evaluation losses (no graph) and detached or float losses are not counted, so neither a
    long evaluation after training nor a framework callback's detached losses count. One
    ``requires_grad`` read per logged tensor.

    Attributes:
        total: Logged values with a graph.
        since_step: Of those, the ones logged since the last optimizer step began.
    """

    def __init__(self) -> None:
        self.total = 0
        self.since_step = 0

    def observe(self, values: Any) -> None:
        """Count the values among ``values`` (an iterable of logged values) with a graph."""
        for value in values:
            if isinstance(value, torch.Tensor) and value.requires_grad:
                self.total += 1
                self.since_step += 1

    def step(self) -> None:
        """An optimizer step began."""
        self.since_step = 0

    def meta(self) -> dict[str, int]:
        """The counts, for ``meta.json`` (``config.logged_losses``)."""
        return {"with_graph": self.total, "since_last_step": self.since_step}


class StepCoverage:
    """The layers with a trainable parameter that the watched optimizer does not step.

    Their weights may still move (a second optimizer: a GAN's discriminator, Lightning's
    other optimizers) or never (left out of the optimizer by mistake); either way their
    update over the watched step is not their update, so ``update_ratio`` stays missing
    there, and ``meta.json`` names them (``config.unstepped``) for the diagnosis to tell the
    two apart by their weights. Param groups added later (progressive unfreezing) count
    from the next flush: :meth:`refresh` costs one pass over the optimizer's parameter ids
    (a Python set; ~50 us for 1,000 parameters), at each flush.
    """

    def __init__(self, optimizer: torch.optim.Optimizer | None, layers: LayerSet) -> None:
        self.optimizer = optimizer
        self.layers = layers
        self.mask = np.zeros(layers.n, dtype=bool)
        self.refresh()

    def refresh(self) -> None:
        """Recompute :attr:`mask`, in place, from the optimizer's parameter groups."""
        if self.optimizer is None:  # the caller's w.step() ends a step: every layer counts
            return
        stepped = {id(p) for group in self.optimizer.param_groups for p in group["params"]}
        self.mask[:] = False
        for param, layer in zip(self.layers.params, self.layers.param_owner, strict=True):
            if id(param) not in stepped:
                self.mask[layer] = True

    def meta(self) -> dict[str, int | list[str]]:
        """The layers, for ``meta.json`` (``config.unstepped``)."""
        names = [self.layers.specs[i].name for i in np.flatnonzero(self.mask)]
        return {"count": len(names), "layers": names}


class LoopProbes:
    """The loop probes of one watch: gradients never zeroed, steps in eval mode, the loss's
    graph, the layers its optimizer does not step."""

    def __init__(
        self, model: nn.Module, layers: LayerSet, optimizer: torch.optim.Optimizer | None
    ) -> None:
        self.zeroing = ZeroingProbe(layers.params, steady=steady_writes(model))
        self.mode = ModeProbe(model)
        self.loss = LossGraphProbe()
        self.logged = LoggedLosses()
        self.coverage = StepCoverage(optimizer, layers)

    def observe(self, step: int) -> None:
        """Called at every optimizer step, before its statistics."""
        self.zeroing.observe(step)
        self.mode.observe(step)
        self.logged.step()

    def observe_log(self, scalars: Mapping[str, Any], step: int) -> None:
        """Called with the values of every ``log``: the loss graph's (the kind and multiple
        of the one logged as ``loss``, the one the loss rules read) and the count's."""
        self.loss.observe(scalars.values(), step, measured=scalars.get("loss"))
        self.logged.observe(scalars.values())

    def meta(self) -> dict[str, dict[str, Any]]:
        """``meta.json``'s ``config`` entries of the probes."""
        return {
            "grad_zeroing": dict(self.zeroing.meta()),
            "train_mode": dict(self.mode.meta()),
            "loss_graph": dict(self.loss.meta()),
            "logged_losses": dict(self.logged.meta()),
            "unstepped": dict(self.coverage.meta()),
            "weight_decay": decay_rates(self.coverage.optimizer, self.coverage.layers),
        }
