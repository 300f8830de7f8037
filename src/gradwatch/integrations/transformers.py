"""``GradwatchCallback`` for the Hugging Face ``Trainer``: record ``trainer.train()``.

The Trainer calls ``optimizer.step()`` once per gradient-accumulation cycle, after the
backward passes and after clipping, on an accelerate ``AcceleratedOptimizer``; ``gw.watch``
unwraps it and records each step in the inner optimizer's step hooks, so the statistics are
those of the final, accumulated gradients (pre-clip: clipping is observed). A step that
accelerate's GradScaler skips does not reach those hooks and is not counted.

Example:
    >>> from transformers import Trainer  # doctest: +SKIP
    >>> from gradwatch.integrations.transformers import GradwatchCallback  # doctest: +SKIP
    >>> Trainer(model, args, train_dataset=ds, callbacks=[GradwatchCallback()])  # doctest: +SKIP
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch

from ._common import WatchingCallback

try:
    import transformers
except ImportError as exc:
    raise ImportError(
        "gradwatch.integrations.transformers needs Hugging Face transformers. Install it by "
        "running `pip install -U transformers`."
    ) from exc

# Scalars of the Trainer's logs recorded with each step: name in the logs -> name in the trace.
_LOGGED = {"loss": "loss", "learning_rate": "learning_rate"}


class GradwatchCallback(WatchingCallback, transformers.TrainerCallback):
    """Record per-layer gradient and activation statistics of a Hugging Face training run.

    The watch starts in ``on_train_begin`` on the model and the optimizer the Trainer hands
    to callbacks and is closed in ``on_train_end``, or by ``Trainer.train`` raising (see
    :meth:`close`). The Trainer's logged ``loss`` and ``learning_rate`` are recorded at the
    step they are logged at: HF's ``loss`` is the mean over the ``logging_steps`` steps that
    end there (set ``logging_steps=1`` for a loss at every step). The Trainer stops when the
    watch's ``should_stop`` becomes true; critical findings are warned about at the end.

    Args:
        run_dir: Where to write the run; by default ``<args.output_dir>/gradwatch``.
        report: Diagnose the run when training ends and warn about critical findings.
        **watch_options: Passed on to ``gw.watch`` (``sample_every``, ``overwrite`` ...).

    Attributes:
        watch: The recording in progress, or the last one after training ended.

    Raises:
        TypeError: When a watch option is not one ``gw.watch`` takes.
    """

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
            model, optimizer, run_dir, framework="transformers", global_step=state.global_step
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
        if scalars:
            w.log(**scalars)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Pass on the watch's stop request."""
        w = self._recording()
        if w is not None and w.should_stop:
            control.should_training_stop = True

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Close the watch and warn about critical findings."""
        self._finish(
            state.is_world_process_zero,
            # (stacklevel: the lambda, _finish, this hook, then the Trainer that called it)
            lambda line: warnings.warn(line, UserWarning, stacklevel=4),
        )

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
