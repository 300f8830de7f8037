"""Gradients never zeroed between optimizer steps, seen from two parameters' ``.grad``.

``optimizer.zero_grad()`` (``set_to_none=True``, torch's default since 2.0) leaves ``.grad``
None, so the next backward pass makes a new tensor; ``set_to_none=False`` zeroes it in place,
which moves its version counter by one, before the backward adds into it (one more). A
``.grad`` that is the same tensor at the next optimizer step, its version moved by exactly
one, was only added into once: nothing zeroed it, so the optimizer steps on the sum of every
gradient so far. Checked on the first and the last trainable parameter (the output layer is
used at every step; two, so that a parameter a step left unused, whose in-place zeroing
alone moves its version by one, does not pass for one never zeroed). The user's
``torch.nn.utils.clip_grad_norm_`` scales every gradient in place once, even by 1 (pinned by
a test): the clip observer tells the probe (:meth:`ZeroingProbe.written`), and each such write
is allowed for. So is the copy of the averaged bucket back into each ``.grad`` that a
watched ``DistributedDataParallel`` wrapper (without ``gradient_as_bucket_view``) makes once
a step (:func:`steady_writes`; measured under gloo: never zeroed +2 a step, zeroed in place
+3). A GradScaler's unscaling (``unscale_``, its ``step``, a fused optimizer's kernel) leaves
the version as it is (``_amp_foreach_non_finite_check_and_unscale_`` does not count as an
in-place write): such loops are judged like any other (tested). Anything else that writes
into ``.grad`` between steps (a clipper reporting through ``observe_clip``, which may skip
the write, several backward passes, DDP's ``no_sync`` accumulation, DDP with bucket views,
whose version counts every write into the shared bucket) moves the version by more or by an
unknown count: such a loop is not judged, never misjudged.

No tensor is read: two weak references and two version reads on two consecutive steps of
every :data:`PERIOD` (steps ``k * PERIOD`` and the one after it; ~1 us each on this
project's CPU), a call that returns at once on the others (0.14 us): 0.4 us a step on
average, timed in a loop of calls.
"""

from __future__ import annotations

import weakref
from typing import Any

import torch
from torch import nn

#: Steps ``k * PERIOD`` and ``k * PERIOD + 1`` form the pairs compared (a loop that forgets
#: to zero its gradients forgets it at every step: a sample of pairs finds it).
PERIOD = 8


class ZeroingProbe:
    """Counts the pairs of consecutive optimizer steps between which nothing zeroed the
    gradients. Call :meth:`observe` at every optimizer step.

    Attributes:
        checked: Pairs whose probed parameters all had a ``.grad`` at both steps.
        kept: Of those, pairs where every probed ``.grad`` was the same tensor, added into
            exactly once between the two steps.
        first_kept: The second step of the first such pair, or None.
    """

    def __init__(self, params: list[nn.Parameter], *, steady: int = 0) -> None:
        probes = [params[0], params[-1]] if params else []
        #: In-place writes into every ``.grad`` at each step, known from the model
        #: (:func:`steady_writes`), allowed for as the clippings are.
        self._steady = steady
        self._params = probes[:1] if len(probes) == 2 and probes[0] is probes[1] else probes
        self._seen: list[tuple[weakref.ref[Any], int] | None] = [None] * len(self._params)
        self._writes = [0] * len(self._params)  # clippings of each since the pair's first step
        self.checked = 0
        self.kept = 0
        self.first_kept: int | None = None

    def observe(self, step: int) -> None:
        """At a pair's first step, note each probed ``.grad``; at its second, compare."""
        if step % PERIOD > 1 or not self._params:
            return
        if step % PERIOD == 0:
            self._seen = [None if p.grad is None else _note(p.grad) for p in self._params]
            self._writes = [0] * len(self._params)
            return
        comparable, kept = True, True
        for p, seen, writes in zip(self._params, self._seen, self._writes, strict=True):
            grad = p.grad
            if grad is not None and seen is not None:
                moved = 1 + writes + self._steady
                kept = kept and grad._version == seen[1] + moved and seen[0]() is grad
            else:
                comparable = False
        self._seen = [None] * len(self._params)
        if comparable:
            self.checked += 1
            if kept:
                self.kept += 1
                if self.first_kept is None:
                    self.first_kept = step

    def written(self, params: list[torch.Tensor]) -> None:
        """``params``' gradients were just scaled in place once (the user's norm clipping,
        seen by the clip observer): allowed for in the version comparison. A set of ids only
        while a pair is open (its first step seen)."""
        if not any(self._seen):
            return
        ids = {id(p) for p in params}
        for i, p in enumerate(self._params):
            if id(p) in ids:
                self._writes[i] += 1

    def meta(self) -> dict[str, int | None]:
        """The counts, for ``meta.json`` (``config.grad_zeroing``)."""
        return {"checked": self.checked, "kept": self.kept, "first_kept": self.first_kept}


def steady_writes(model: nn.Module) -> int:
    """In-place writes into every ``.grad`` that ``model`` itself makes at each optimizer step:
    1 for a ``DistributedDataParallel`` wrapper that copies its reduced buckets back into the
    gradients (the default, ``gradient_as_bucket_view=False``), else 0."""
    ddp = torch.nn.parallel.DistributedDataParallel
    return int(isinstance(model, ddp) and not model.gradient_as_bucket_view)


def _note(g: torch.Tensor) -> tuple[weakref.ref[Any], int]:
    """A weak reference to ``g`` (the probe must not keep a freed gradient alive) and its
    version."""
    return weakref.ref(g), g._version
