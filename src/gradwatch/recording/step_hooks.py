"""The hooks a watch puts on the user's optimizer and GradScaler, and removes on close.

* The optimizer's step pre-hook begins a step (the gradients are final) and its post-hook ends
  it (the weights are updated), so gradient accumulation counts optimizer steps, not backward
  calls. With ``step_begin="caller"`` the caller begins the step and only the post-hook is
  attached.
* An ``optimizer.step(closure)`` makes its gradients inside the step, after the pre-hook: the
  closure is wrapped so that the step begins after its first call returns (the gradients at
  the weights the step starts from; LBFGS calls it again at trial points, which are not the
  step's gradients), or at the post-hook when it was never called. Where a backward ran
  since the last step (SAM: the loop's backward, then a step whose closure runs at weights
  it has moved), the step begins at once, as without a closure: the weights copied for the
  update are those the step starts from. That backward is seen by a post-accumulate-grad
  hook on one parameter, attached at the first step given a closure.
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


def closure_of(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Callable[[], Any] | None:
    """The closure given to ``optimizer.step`` (positional or ``closure=``), or None.

    ``args`` are the step hook's: the optimizer itself first, then what ``step`` was given.
    """
    closure = kwargs["closure"] if "closure" in kwargs else (args[1] if len(args) > 1 else None)
    return closure if callable(closure) else None


def _with_closure(
    args: tuple[Any, ...], kwargs: dict[str, Any], closure: Callable[[], Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``optimizer.step``'s arguments with its closure replaced (the pre-hook's return)."""
    if "closure" in kwargs:
        return args, {**kwargs, "closure": closure}
    return (args[0], closure, *args[2:]), kwargs


class OptimizerHooks:
    """Attaches the step hooks and the scaler wrapper; :meth:`remove` undoes all of it.

    Args:
        optimizer: The watched optimizer, or None (steps come from ``Watch.step()``).
        scaler: The user's GradScaler, or None.
        pre_hook: The step's beginning (None: the caller begins steps).
        post_hook: The step's end.
        evaluated: Called once a step's closure has returned for the first time (and at the
            post-hook when it was never called), after ``pre_hook`` was called there.
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
        evaluated: Callable[[], None],
    ) -> None:
        self._optimizer = optimizer
        self._scaler = scaler
        self._pre_hook = pre_hook
        self._post_hook = post_hook
        self._on_skip = on_skip
        self._steps = steps
        self._evaluated = evaluated
        #: Calls of the closure of the ``optimizer.step(closure)`` in progress (0 outside one,
        #: or before its first call): a caller's begin in a later call is not a new step.
        self.evaluations = 0
        self._deferred = False  # the step in progress begins after its closure's first call
        # A backward since the last step ended (its gradients are final before the step).
        self._backward_seen = False
        self._backward_probe: RemovableHandle | None = None
        #: Other handles to remove with these (the precision reader, when always attached).
        self.handles: list[RemovableHandle] = []
        self._scaler_wrapped = False

    def attach(self) -> None:
        """Attach the step hooks and wrap the scaler's ``step``."""
        opt = self._optimizer
        if opt is not None:
            # (Attached with step_begin="caller" too: it counts a closure's calls.)
            self.handles.append(opt.register_step_pre_hook(self._step_pre))
            self.handles.append(opt.register_step_post_hook(self._step_post))
        if self._scaler is not None:
            self._wrap_scaler()

    def remove(self) -> None:
        """Remove every handle and restore the scaler's own ``step`` (safe to repeat)."""
        for h in self.handles:
            h.remove()
        self.handles.clear()
        self._backward_probe = None
        # The wrapper is an instance attribute; deleting it restores the class's method.
        scaler = self._scaler
        if self._scaler_wrapped and scaler is not None and "step" in vars(scaler):
            del scaler.step
        self._scaler_wrapped = False

    def _step_pre(self, optimizer: Any, args: Any, kwargs: Any) -> Any:
        # (Reset here too: a closure that raised left its step without a post-hook.)
        self.evaluations, self._deferred = 0, False
        closure = closure_of(args, kwargs)
        # (A compiled optimizer step traces its hooks: it begins here, as it always did.)
        if closure is None or torch.compiler.is_compiling():
            if self._pre_hook is not None:
                self._pre_hook(optimizer, args, kwargs)
            return None
        self._watch_backward(optimizer)
        if self._backward_seen and self._pre_hook is not None:
            # The gradients were made before the step (its own), its closure's forwards not.
            self._begin(optimizer, args, kwargs)
            return None
        self._deferred = True
        return _with_closure(args, kwargs, self._counted(optimizer, args, kwargs, closure))

    def _watch_backward(self, optimizer: Any) -> None:
        """Attach the hook that sees a backward reach the optimizer's first parameter."""
        if self._backward_probe is not None:
            return
        params = (p for group in optimizer.param_groups for p in group["params"])
        first = next((p for p in params if p.requires_grad), None)
        if first is None:
            return

        def seen(_: torch.Tensor) -> None:
            self._backward_seen = True

        self._backward_probe = first.register_post_accumulate_grad_hook(seen)
        self.handles.append(self._backward_probe)

    def _counted(
        self, optimizer: Any, args: Any, kwargs: Any, closure: Callable[..., Any]
    ) -> Callable[..., Any]:
        def evaluate(*a: Any, **k: Any) -> Any:
            self.evaluations += 1
            out = closure(*a, **k)
            if self.evaluations == 1 and self._deferred:
                self._begin(optimizer, args, kwargs)
            return out

        return evaluate

    def _begin(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        self._deferred = False
        if self._pre_hook is not None:
            self._pre_hook(optimizer, args, kwargs)
        self._evaluated()

    def _step_post(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        if self._deferred:  # the closure was never called: the gradients are what they are
            self._begin(optimizer, args, kwargs)
        self.evaluations = 0
        self._backward_seen = False
        self._post_hook(optimizer, args, kwargs)

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
