"""``torch.compile``: the user's module behind the wrapper, and sampled steps run eagerly.

What dynamo does with gradwatch's hooks. A module's forward hooks (and its submodules') are
inlined into the compiled graph, and the graph is guarded on the hook dictionaries: attaching
the sampled-step hooks and removing them after (``activations.ActivationSampler.arm`` /
``disarm``) changes what the guards check, so every sampled step recompiled (torch 2.13: ~13
graphs over the first sampled steps). Inside the graph the hooks' Python is traced once, not
run: the structure probe's read of ``grad_fn`` broke the graph ("Tensor with grad_fn"), no
output carried an autograd node (no residual branch was found), and ``y._version`` was a
trace-time constant (0) while inductor wrote the compiled graph's output into its buffer
(version 1 at the step's end), so the in-place-change check dropped the output layer's
activation statistics (NaN).

The design: the hooks never meet the compiler. For as long as they are attached (from the end
of the step before a sampled step to the start of that step's optimizer step, where the
statistics are taken) the process runs under ``torch.compiler.set_stance("force_eager")``:
every compiled function calls its original Python, so the sampled step's forward and backward
are exactly what eager mode runs, with the hooks working as they do there. Every other step
runs the compiled graph with no gradwatch hook in it, so the graph dynamo traced on the first
plain step is the one it keeps: no graph break and no recompilation caused by gradwatch.

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

The stance is global to the process while it is held: a compiled function the user calls in
that window (a compiled loss, an evaluation between steps) also runs eagerly, on sampled steps
only. ``Watch.close()`` restores the stance that was set before.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn


def user_module(model: nn.Module) -> nn.Module:
    """The module the user wrote: ``torch.compile``'s ``OptimizedModule`` unwrapped.

    Its layers carry the user's names (``fc1``, not ``_orig_mod.fc1``), and hooks on its
    submodules are the hooks the compiled module runs. A module compiled in place
    (``model.compile()``) is its own user module.
    """
    while _is_optimized_module(model):
        inner = getattr(model, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            break
        model = inner
    return model


def _is_optimized_module(model: nn.Module) -> bool:
    # Checked by class, not imported: torch._dynamo is heavy and only needed when used.
    cls = type(model)
    return cls.__name__ == "OptimizedModule" and cls.__module__.startswith("torch._dynamo")


class EagerWindow:
    """Holds ``torch.compiler.set_stance("force_eager")`` while the sampled-step hooks exist.

    ``hold(True)`` sets the stance (once), ``hold(False)`` puts back the one that was set
    before. Without ``set_stance`` (torch < 2.6) it does nothing: the hooks are then traced
    by dynamo as before this class existed.
    """

    def __init__(self) -> None:
        self._ctx: Any | None = None  # the set_stance object, whose exit restores the prior
        self._warned = False

    @property
    def held(self) -> bool:
        """Whether the window is open (compiled functions currently run eagerly)."""
        return self._ctx is not None

    def hold(self, on: bool) -> None:
        """Open the window (``on``) or close it; either is a no-op when already so."""
        if on == self.held:
            return
        if not on:
            ctx, self._ctx = self._ctx, None
            if ctx is not None:
                ctx.__exit__(None, None, None)
            return
        set_stance = getattr(torch.compiler, "set_stance", None)
        if set_stance is None:
            return
        try:
            self._ctx = set_stance("force_eager")
        except RuntimeError as err:
            # Called from inside a compiled region (an optimizer step compiled by the user):
            # dynamo forbids changing the stance there, so these hooks will be traced.
            if not self._warned:
                self._warned = True
                warnings.warn(
                    f"gradwatch could not run the sampled step eagerly ({err}): its hooks are "
                    "called from inside a torch.compile region, so they will be traced and "
                    "may cause recompiles. Compile the model, not the optimizer step.",
                    UserWarning,
                    stacklevel=2,
                )
