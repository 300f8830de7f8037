"""``torch.compile``: the user's module behind the wrapper, and sampled steps run eagerly.

What dynamo does with gradwatch's hooks. A module's forward hooks (and its submodules') are
inlined into the compiled graph, and the graph is guarded on the hook dictionaries: attaching
the sampled-step hooks and removing them after (``activations.ActivationSampler.arm`` /
``disarm``) changes what the guards check, so every sampled step recompiled (torch 2.13: ~13
graphs over the first sampled steps; PyTorch's "NNModule Support" page,
docs.pytorch.org/docs/stable/torch.compiler_nn_module.html: hooks are supported when installed
before compiling and never removed). Inside the graph the hooks' Python is traced once, not
run: the structure probe's read of ``grad_fn`` broke the graph ("Tensor with grad_fn"), no
output carried an autograd node (no residual branch was found), and ``y._version`` was a
trace-time constant (0) while inductor wrote the compiled graph's output into its buffer
(version 1 at the step's end), so the in-place-change check dropped the output layer's
activation statistics (NaN).

The design: the hooks never meet the compiler. For as long as they are attached (from the end
of the step before a sampled step to the start of that step's optimizer step, where the
statistics are taken) the watched model runs its original Python:

* Given the compiled module (``gw.watch(torch.compile(model))``), its ``forward`` (dynamo's
  compiled entry) is pointed at the wrapped module's ``__call__`` for that window and put back
  after: only this model runs eagerly, and dynamo never sees the swap (it guards the wrapped
  module's state, not the wrapper's attribute).
* Given the plain module, gradwatch cannot see a ``torch.compile(model)`` made after
  ``gw.watch`` (or a ``model.compile()``), so for that window the process runs under
  ``torch.compiler.set_stance("force_eager")``: every compiled function calls its original
  Python. A compiled function the user calls in that window (a compiled loss, an evaluation
  between steps, a second compiled model) also runs eagerly, on sampled steps only.

Either way the sampled step's forward and backward are exactly what eager mode runs, with the
hooks working as they do there, and every other step runs the compiled graph with no gradwatch
hook in it: the graph dynamo traced on the first plain step is the one it keeps, with no graph
break and no recompilation caused by gradwatch. ``Watch.close()`` puts everything back.

Why not the alternatives:

* Hooks kept attached, returning early on a Python flag: dynamo guards on the flag, so plain
  steps get the hook-free graph, but the sampled graph must trace the hooks themselves
  (``Tensor.register_hook`` on intermediates, per-step lists, version checks): the output
  gradient hooks become backward-hook subgraphs, the version check stays wrong, and the
  structure probe still sees no autograd graph.
* Hooks wrapped in ``torch.compiler.disable``: each call is a graph break, so the sampled graph
  is split at every layer (one fragment and one guard set per layer), slower than eager on
  small models and more graphs to keep.
* Eager sampled steps cost, per sampled step, the difference between an eager and a compiled
  step (benchmarks/compile_overhead.py measures it), and they measure eager's activations,
  which equal the compiled ones within float rounding.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn


def user_module(model: nn.Module) -> nn.Module:
    """The module the user wrote: ``torch.compile``'s ``OptimizedModule`` unwrapped.

    Its layers carry the user's names (``fc1``, not ``_orig_mod.fc1``), and hooks on its
    submodules are the hooks the compiled module runs. A module compiled in place
    (``model.compile()``) is its own user module.
    """
    wrappers = _wrappers(model)
    return _inner(wrappers[-1]) if wrappers else model


def _is_optimized_module(model: nn.Module) -> bool:
    # Checked by class, not imported: torch._dynamo is heavy and only needed when used.
    cls = type(model)
    return cls.__name__ == "OptimizedModule" and cls.__module__.startswith("torch._dynamo")


def _inner(wrapper: nn.Module) -> nn.Module:
    inner = getattr(wrapper, "_orig_mod", None)
    assert isinstance(inner, nn.Module)  # _wrappers() checked it
    return inner


def _wrappers(model: nn.Module) -> list[nn.Module]:
    """The ``OptimizedModule`` wrappers around the user's module, outermost first."""
    found = []
    while _is_optimized_module(model) and isinstance(getattr(model, "_orig_mod", None), nn.Module):
        found.append(model)
        model = _inner(model)
    return found


def untraced(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)``, run eagerly even where dynamo is tracing the caller.

    The optimizer's step hooks run inside the optimizer step, which users compile too
    (``torch.compile(opt.step)``): traced, the recording's host reads and hook handles cost
    dozens of graphs (38 over 8 Adam steps); behind ``torch.compiler.disable`` it is one graph
    break per hook. Outside dynamo this is a plain call (no torch._dynamo import).
    """
    if torch.compiler.is_compiling():
        return torch.compiler.disable(fn)(*args, **kwargs)
    return fn(*args, **kwargs)


class _Shared:
    """What open watches share: the stance and the swapped wrappers, counted, so that windows
    closing in any order (two watched models trained in turn) put back what was there before
    the first one opened, not what another window had set."""

    def __init__(self) -> None:
        self.stance_holders = 0
        self.stance_ctx: Any | None = None  # the set_stance object, whose exit restores
        self.swapped: dict[int, tuple[Any, int]] = {}  # id(wrapper) -> (compiled entry, holders)

    def swap(self, wrapper: nn.Module) -> None:
        compiled, holders = self.swapped.get(id(wrapper), (None, 0))
        if not holders:
            # An instance attribute set by OptimizedModule._initialize: dynamo's entry.
            compiled = wrapper.__dict__["forward"]
            wrapper.__dict__["forward"] = _inner(wrapper).__call__
        self.swapped[id(wrapper)] = (compiled, holders + 1)

    def unswap(self, wrapper: nn.Module) -> None:
        compiled, holders = self.swapped.pop(id(wrapper))
        if holders > 1:
            self.swapped[id(wrapper)] = (compiled, holders - 1)
        else:
            wrapper.__dict__["forward"] = compiled

    def acquire_stance(self) -> None:
        """Hold ``force_eager`` (RuntimeError inside a compiled region, as set_stance)."""
        if not self.stance_holders:
            self.stance_ctx = torch.compiler.set_stance("force_eager")
        self.stance_holders += 1

    def release_stance(self) -> None:
        self.stance_holders -= 1
        if not self.stance_holders and self.stance_ctx is not None:
            ctx, self.stance_ctx = self.stance_ctx, None
            ctx.__exit__(None, None, None)


_SHARED = _Shared()


class EagerWindow:
    """Runs the watched model eagerly while the sampled-step hooks exist (see module docs).

    Args:
        model: The module passed to ``gw.watch``: a compiled wrapper is switched to its
            original module; any other module gets the process-wide ``force_eager`` stance.
    """

    def __init__(self, model: nn.Module) -> None:
        self._wrappers = _wrappers(model)
        self._stance = False  # whether this window holds the shared stance
        self._warned = False
        self.held = False  #: Whether the window is open (the model runs eagerly).

    def hold(self, on: bool) -> None:
        """Open the window (``on``) or close it; either is a no-op when already so."""
        if on == self.held or torch.compiler.is_compiling():
            # (Traced by dynamo: the user compiled the optimizer step, whose hooks call this.
            # The stance cannot change inside a compiled region, and the swap would be baked
            # into the graph as a constant: leave both alone.)
            return
        self.held = on
        if on:
            self._open()
            return
        for wrapper in reversed(self._wrappers):
            _SHARED.unswap(wrapper)
        if self._stance:
            self._stance = False
            _SHARED.release_stance()

    def _open(self) -> None:
        if self._wrappers:
            for wrapper in self._wrappers:
                _SHARED.swap(wrapper)
            return
        if getattr(torch.compiler, "set_stance", None) is None:
            return  # torch < 2.6: the hooks are traced by dynamo, as they were before
        try:
            _SHARED.acquire_stance()
            self._stance = True
        except RuntimeError as err:
            # Called at run time from inside a compiled region that dynamo did not trace
            # through (``torch.compiler.disable`` puts the optimizer-step hooks outside one):
            # the stance cannot change there, so the sampled step's hooks may be traced.
            if not self._warned:
                self._warned = True
                warnings.warn(
                    f"gradwatch could not run the sampled step eagerly ({err}): its hooks "
                    "were called from inside a torch.compile region, so they may be traced "
                    "and cause recompiles. Call the optimizer step outside compiled code, or "
                    "pass the compiled model to gw.watch.",
                    UserWarning,
                    stacklevel=2,
                )
