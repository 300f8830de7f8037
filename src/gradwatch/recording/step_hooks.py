"""The hooks a watch puts on the user's optimizer and GradScaler, and removes on close.

* The optimizer's step pre-hook begins a step (the gradients are final) and its post-hook ends
  it (the weights are updated), so gradient accumulation counts optimizer steps, not backward
  calls. With ``step_begin="caller"`` the caller begins the step and only the post-hook is
  attached.
* A GradScaler that finds an inf or NaN does not call ``optimizer.step()``, so neither hook
  runs. Its ``step`` is wrapped (an instance attribute, deleted on removal) to report that
  step as skipped.

What a step does is the watch's (``watch.py``): this module only connects and disconnects.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.utils.hooks import RemovableHandle

#: An optimizer step hook: ``hook(optimizer, args, kwargs)``.
StepHook = Callable[[Any, Any, Any], None]


class OptimizerHooks:
    """Attaches the step hooks and the scaler wrapper; :meth:`remove` undoes all of it.

    Args:
        optimizer: The watched optimizer, or None (steps come from ``Watch.step()``).
        scaler: The user's GradScaler, or None.
        pre_hook: The step's beginning (None: the caller begins steps).
        post_hook: The step's end.
        on_skip: Called when the scaler skipped the optimizer's step.
        steps: The number of steps ended so far (the scaler's step ended none: a skip).
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer | None,
        scaler: Any | None,
        *,
        pre_hook: StepHook | None,
        post_hook: StepHook,
        on_skip: Callable[[], None],
        steps: Callable[[], int],
    ) -> None:
        self._optimizer = optimizer
        self._scaler = scaler
        self._pre_hook = pre_hook
        self._post_hook = post_hook
        self._on_skip = on_skip
        self._steps = steps
        #: Other handles to remove with these (the precision reader, when always attached).
        self.handles: list[RemovableHandle] = []
        self._scaler_wrapped = False

    def attach(self) -> None:
        """Attach the step hooks and wrap the scaler's ``step``."""
        opt = self._optimizer
        if opt is not None:
            if self._pre_hook is not None:
                self.handles.append(opt.register_step_pre_hook(self._pre_hook))
            self.handles.append(opt.register_step_post_hook(self._post_hook))
        if self._scaler is not None:
            self._wrap_scaler()

    def remove(self) -> None:
        """Remove every handle and restore the scaler's own ``step`` (safe to repeat)."""
        for h in self.handles:
            h.remove()
        self.handles.clear()
        # The wrapper is an instance attribute; deleting it restores the class's method.
        scaler = self._scaler
        if self._scaler_wrapped and scaler is not None and "step" in vars(scaler):
            del scaler.step
        self._scaler_wrapped = False

    def _wrap_scaler(self) -> None:
        scaler = self._scaler
        assert scaler is not None
        original = scaler.step

        def step(optimizer: Any, *args: Any, **kwargs: Any) -> Any:
            before = self._steps()
            out = original(optimizer, *args, **kwargs)
            if optimizer is self._optimizer and self._steps() == before:
                self._on_skip()  # inf/nan found: optimizer.step() was not called
            return out

        scaler.step = step
        self._scaler_wrapped = True
