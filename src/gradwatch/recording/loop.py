"""What the watch sees of the training loop: gradients never zeroed, eval mode left on, and
outputs squashed twice on their way into the loss.

:class:`LoopProbes` is the watch's one view of them: :class:`~.zeroing.ZeroingProbe` (a
loop that never calls ``zero_grad()``) and :class:`ModeProbe` (optimizer steps taken with
the model in eval mode), observed at every optimizer step, and
:class:`~.loss_graph.LossGraphProbe` (a softmax before ``cross_entropy``), handed the losses
the watch sees; all written to ``meta.json``'s ``config`` (``grad_zeroing``, ``train_mode``,
``loss_graph``).

Eval mode: ``model.eval()`` left on.
A validation pass calls ``model.eval()``; a loop that does not call ``model.train()`` after
it trains on in eval mode, where BatchNorm normalises with its running statistics (which it
then no longer updates) instead of the batch's, and dropout is off. The watch reads the
model's ``training`` flag at each optimizer step (a Python attribute: no tensor is read) and
counts the BatchNorm layers that track running statistics and the dropout layers, which are
what eval mode changes.
"""

from __future__ import annotations

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.dropout import _DropoutNd

from .loss_graph import LossGraphProbe
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


class LoopProbes:
    """The loop probes of one watch: gradients never zeroed, steps in eval mode, the loss's
    graph."""

    def __init__(self, model: nn.Module, params: list[nn.Parameter]) -> None:
        self.zeroing = ZeroingProbe(params, steady=steady_writes(model))
        self.mode = ModeProbe(model)
        self.loss = LossGraphProbe()

    def observe(self, step: int) -> None:
        """Called at every optimizer step, before its statistics."""
        self.zeroing.observe(step)
        self.mode.observe(step)

    def meta(self) -> dict[str, dict[str, int | str | None]]:
        """``meta.json``'s ``config`` entries of the probes."""
        return {
            "grad_zeroing": dict(self.zeroing.meta()),
            "train_mode": dict(self.mode.meta()),
            "loss_graph": self.loss.meta(),
        }
