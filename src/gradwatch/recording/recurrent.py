"""Recurrent input-gradient profiles of a sampled step: how far back the gradient reaches.

Two profiles per recurrent layer (``nn.RNN``/``nn.LSTM``/``nn.GRU``), both ``||.||`` over the
batch and feature dimensions at each input time step t:

* ``whole``: ``dL/dx_t`` of the whole loss, seen by a tensor hook on the layer's input. For a
  loss on the last output this is the memory profile; for a loss with a term at every position
  (a language model) it is flat, since every x_t has a loss term next to it.
* ``last_position``: ``dl_T/dx_t``, the part of the loss that flows through the layer's output
  at the last time step T. When the output gradient ``g = dL/dy`` reaches the layer in the
  backward pass (a tensor hook on the output y), one extra backward through the layer alone,
  ``autograd.grad(y_T, x, g_T)``, gives it: the vector-Jacobian product of ``y_T`` with the true
  ``g_T``, i.e. the gradient the last position sends back through this layer's own recurrence.
  With only per-position layers above (a Linear decoder: a language model's usual head) it is
  exactly ``d l_T / dx_t``; under another recurrent layer it leaves out the paths through the
  upper layer's recurrence, so each layer's profile measures that layer's own memory (the
  upper layer's profile covers its part). The graph it walks is the one the main
  backward is about to walk (``retain_graph=True`` keeps it), so there is no forward
  recomputation and dropout masks are the same; parameter gradients are not touched
  (``autograd.grad`` accumulates nothing into ``.grad``).

Both are kept on the device (sums of squares, no host sync) until the step records them. The
hooks exist on sampled steps only. The extra backward costs about one backward pass of the
recurrent layers (measured on 64-unit byte LMs, 16 windows of 200 bytes, one CPU thread: tanh
RNN ~32 ms, 66% of an unwatched step; LSTM ~14 ms, 31%), so it runs on the first
``PROBE_DENSE`` sampled steps and then on every ``PROBE_EVERY``-th, at most once per
``PROBE_MIN_STEPS`` steps: ~1.7% of the training time of the tanh RNN at the default
``sample_every=10``, and no more at ``sample_every=1``. It re-enters autograd from inside a
hook, so every hook of this recorder that could see it (the input's, the output-gradient
statistics') skips while it runs (:attr:`RecurrentProfiles.probing`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..trace import ProfileKind

#: The last-position probe runs on the first PROBE_DENSE sampled steps (early training, where
#: memory changes fastest), then on every PROBE_EVERY-th sampled step (its cost, amortised)
#: that is at least PROBE_MIN_STEPS training steps after the last such probe. From
#: ``sample_every=4`` up the spacing is PROBE_EVERY's alone; below, every 4th step would add a
#: quarter of a recurrent backward to every step (benchmark W3, a 2-layer LSTM, at
#: ``sample_every=1``: +14% of its training time). Not sparser: ``short_memory`` takes the
#: median of the last few probes, and a run of 100 steps at ``sample_every=4`` needs its 10.
PROBE_DENSE = 4
PROBE_EVERY = 4
PROBE_MIN_STEPS = 16


def time_dim(module: nn.Module, x: torch.Tensor) -> int:
    """The time dimension of a recurrent layer's input ``x`` (unbatched inputs: 0)."""
    return 1 if (bool(getattr(module, "batch_first", False)) and x.dim() == 3) else 0


class RecurrentProfiles:
    """The recurrent input-gradient profiles gathered on one sampled step, per layer index.

    Args:
        last_position: Also measure the last position's profile (one extra backward through
            each recurrent layer per sampled step).
    """

    def __init__(self, *, last_position: bool = True) -> None:
        self.last_position = last_position
        # Layer index -> sum over the step's calls of (d./dx_t)^2 per t, on the device.
        self.sums: dict[ProfileKind, dict[int, torch.Tensor]] = {"whole": {}, "last_position": {}}
        # (input, output) of each call awaiting its output gradient, by call number; dropped
        # when the gradient arrives, so they live no longer than autograd keeps them anyway.
        self._pending: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self._calls = 0
        self._sampled = 0  # regular sampled steps recorded so far: decides which are probed
        #: Whether the step in progress is on the ``sample_every`` spacing. The dense start's
        #: extra samples are not probed: the probe would spend its budget on the untrained
        #: first steps, and short_memory keeps only the regular spacing anyway.
        self.regular = True
        #: The training step in progress (set with ``regular``), and the last one probed.
        self.step = 0
        self._last_probe: int | None = None
        #: True while the extra backward runs: every recorder hook it could reach must skip.
        self.probing = False
        #: Wraps the tensor hooks so their host time is charged to the overhead budget (the
        #: probe's extra backward runs in one); set by the sampler, identity otherwise.
        self.timed: Callable[[Callable[..., Any]], Callable[..., Any]] = lambda hook: hook

    @property
    def probe_now(self) -> bool:
        """Whether the sampled step in progress measures the last-position profile."""
        n, last = self._sampled, self._last_probe
        if not (self.last_position and self.regular):
            return False
        spaced = last is None or self.step - last >= PROBE_MIN_STEPS
        return n < PROBE_DENSE or (n % PROBE_EVERY == 0 and spaced)

    # ------------------------------------------------------------------ hooks
    def before_forward(self, i: int, module: nn.Module, args: tuple[Any, ...]) -> Any:
        """Forward pre-hook body: watch ``dL/dx_t`` of the layer's input (the whole profile).

        Returns new hook arguments when the input had to be replaced by a copy that requires
        grad, else None. PackedSequence inputs get no profile.
        """
        if not args or not isinstance(args[0], torch.Tensor):
            return None
        x = args[0]
        replaced = False
        if not x.requires_grad:
            # Nothing upstream needs this gradient, so a detached copy changes no parameter
            # gradient; it only lets us see dL/dx_t.
            x = x.detach().requires_grad_(True)
            replaced = True
        dims = [d for d in range(x.dim()) if d != time_dim(module, x)]

        def on_grad(g: torch.Tensor) -> None:
            if not self.probing:
                self._add("whole", i, g, dims)

        x.register_hook(self.timed(on_grad))
        return (x, *args[1:]) if replaced else None

    def after_forward(self, i: int, module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        """Forward hook body: arrange the last position's profile for the backward pass.

        ``args`` are the arguments the layer ran with (after :meth:`before_forward`).
        """
        if not self.probe_now or not args or not isinstance(args[0], torch.Tensor):
            return
        x = args[0]
        y = output[0] if isinstance(output, (tuple, list)) else output
        if not isinstance(y, torch.Tensor) or not (x.requires_grad and y.requires_grad):
            return
        tdim = time_dim(module, x)
        if x.dim() == 0 or x.shape[tdim] == 0 or y.dim() <= tdim:
            return
        dims = [d for d in range(x.dim()) if d != tdim]
        call = self._calls
        self._calls += 1
        self._pending[call] = (x, y)

        def on_out_grad(g: torch.Tensor) -> None:
            if self.probing:
                return  # another layer's probe walking through this output: not our gradient
            held = self._pending.pop(call, None)
            if held is None:
                return
            xs, ys = held
            self.probing = True
            try:
                with torch.enable_grad():
                    y_last = ys.select(tdim, -1)  # (B, H): the output at the last time step
                (dx,) = torch.autograd.grad(
                    y_last,
                    xs,
                    g.select(tdim, -1),
                    retain_graph=True,  # the main backward walks this graph next
                    allow_unused=True,
                )
            finally:
                self.probing = False
            if dx is not None:
                self._add("last_position", i, dx, dims)

        y.register_hook(self.timed(on_out_grad))

    def _add(self, kind: ProfileKind, i: int, g: torch.Tensor, dims: list[int]) -> None:
        """Add ``sum (g)^2`` over ``dims`` per time step to layer ``i``'s profile of ``kind``."""
        g = g.detach()
        prof = g.float().square().sum(dim=dims) if dims else g.float().square()
        sums = self.sums[kind]
        prev = sums.get(i)
        # A layer called twice in a step with the same length adds up; another length replaces.
        sums[i] = prof if prev is None or prev.shape != prof.shape else prev + prof

    # ------------------------------------------------------------------ the step's end
    def __bool__(self) -> bool:
        return any(self.sums.values())

    def take(self) -> list[tuple[int, ProfileKind, torch.Tensor]]:
        """``(layer index, kind, ||.|| per t)`` of the step, on the device; starts a new step."""
        out = [(i, kind, s.sqrt()) for kind, sums in self.sums.items() for i, s in sums.items()]
        if self.sums["last_position"] and self._sampled >= PROBE_DENSE:
            self._last_probe = self.step  # (the dense first probes set no spacing)
        self.clear()
        self._sampled += self.regular
        return out

    def clear(self) -> None:
        """Forget the step (also the inputs and outputs still awaiting a gradient)."""
        self.sums = {"whole": {}, "last_position": {}}
        self._pending.clear()  # the call counter keeps counting: a stale hook finds nothing
