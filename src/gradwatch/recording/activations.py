"""Sampled activation statistics: the hooks of a sampled step and the reductions at its end.

On a sampled step forward hooks see each layer's output, the output of the activation that
follows it and (through a tensor hook) the gradient reaching that output; recurrent layers also
get the gradient reaching each input time step (``recurrent.py``). The hooks are attached for
sampled steps only (``arm``/``disarm``), so other steps pay nothing. Outputs are kept by
reference until the step and reduced there in batches (``record``); beyond a byte budget each
is reduced in its hook.
The first forward's pre-hooks also discover the order of the layers (their depth).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from .._activations import kind_of
from ..trace.schema import SAMPLED_METRICS
from .buffer import METRIC_ROW, StepBuffer
from .layers import RECURRENT_TYPES, LayerSet, activation_kind
from .recognise import FUNCTIONS, Recognised
from .recurrent import RecurrentProfiles
from .sampled import ACT, RAW, DeviceConstants, StepSums, WindowSums
from .stats import STACK_BYTES, ActivationAccumulator, Scratch, batch_moments, norms_or_squares
from .structure import layer_class

_CONV_LIKE = ("Conv", "ConvTranspose", "BatchNorm2d", "BatchNorm3d", "GroupNorm", "Instance")

# Outputs and output gradients of a sampled step are kept (by reference) until the optimizer
# step and reduced there in batches, up to this many bytes; beyond, each is reduced in its hook.
# Most are held by autograd until their backward anyway (tanh, sigmoid and ReLU save their
# output, a linear layer its input), so this extends their life by one backward pass at most.
_STASH_BYTES = 128 * 2**20


class HookTimer(Protocol):
    """Where the hooks' host time goes (the overhead budget's ``Schedule``)."""

    clock: Callable[[], float]

    def charge(self, seconds: float) -> None: ...


@dataclass
class _Stashed:
    """An output kept for the step's batched activation statistics."""

    source: int  # RAW (the layer's own output) or ACT (the activation that follows it)
    layer: int
    y: torch.Tensor
    version: int  # y._version when kept: a later in-place change makes it unusable
    act_type: str | None
    kind: str | None
    unit_dim: int


@dataclass
class StepOutputs:
    """What the hooks of the sampled step in progress gathered, until the step reduces it."""

    pending: list[_Stashed] = field(default_factory=list)  # outputs kept by reference
    pending_og: list[tuple[int, torch.Tensor, int]] = field(default_factory=list)  # out-grads
    stashed_bytes: int = 0
    raw: dict[int, ActivationAccumulator] = field(default_factory=dict)  # reduced in a hook
    act: dict[int, ActivationAccumulator] = field(default_factory=dict)
    last_layer: int | None = None  # the layer whose output the next activation follows
    claimable: bool = False  # whether an activation may still claim last_layer
    # The ordering step only: last_layer's output and its version when returned.
    last_output: torch.Tensor | None = None
    last_version: int = -1


#: Autograd nodes allowed between a layer's output and the input of the activation module
#: that claims it: a dropout, a reshape, a frozen norm or a bias add each take one; a frozen
#: base layer's branch under LoRA puts a dozen or more between an adapter and the MLP's
#: activation.
CLAIM_HOPS = 4


def computed_from(x: Any, out: torch.Tensor | None, hops: int = CLAIM_HOPS) -> bool:
    """Whether ``x`` is ``out``, or computed from it within ``hops`` autograd nodes.

    Read at the ordering step only (a walk of a few nodes). An input that does not require
    grad cannot come from a trainable layer's output; without a recorded output, or an
    output outside autograd, there is nothing to check against.
    """
    if out is None or x is out or not isinstance(x, torch.Tensor):
        return True  # (an input passed by keyword is not seen: claimed as before)
    target = out.grad_fn
    if target is None:
        return True
    frontier = [getattr(x, "grad_fn", None)]
    for _ in range(hops + 1):
        nxt: list[Any] = []
        for node in frontier:
            if node is None:
                continue
            if node is target:
                return True
            nxt.extend(fn for fn, _ in node.next_functions if fn is not None)
        frontier = nxt
    return False


class ActivationSampler:
    """Attaches the sampled-step hooks and turns what they see into the activation metrics.

    Args:
        model: The watched model (its activation modules are hooked too).
        layers: The watched layers.
        buffer: The step buffer the statistics go to.
        scratch: A reused buffer for small temporaries (shared with the gradient statistics).
        enabled: False to attach no activation hooks (the first forward is still ordered).
    """

    def __init__(
        self,
        model: nn.Module,
        layers: LayerSet,
        buffer: StepBuffer,
        scratch: Scratch,
        *,
        enabled: bool,
    ) -> None:
        self.enabled = enabled
        self._model = model
        self._layers = layers
        self._buffer = buffer
        self._scratch = scratch
        # Chunking keeps each stack within STACK_BYTES bytes, so these stay that small.
        self._stack = Scratch(STACK_BYTES)
        self._stack_tmp = Scratch(STACK_BYTES)
        self._consts = DeviceConstants(layers.device)
        self._window = WindowSums()
        self._unit_dim = [-1] * layers.n  # dimension of a unit in each layer's output
        self._handles: list[RemovableHandle] = []
        self.step = StepOutputs()
        self.recurrent = RecurrentProfiles()
        #: Charged with the host time of every hook call, when set (the overhead budget).
        self.timer: HookTimer | None = None
        self.recurrent.timed = self._timed  # its tensor hooks (the probe's backward) too
        self._plan: list[tuple[nn.Module, bool, Callable[..., Any]]] | None = None
        # What the ordering step saw: the calls of each layer, and per activation module the
        # layers it claimed, each with whether its input was that layer's output (``_fusable``).
        self._calls = [0] * layers.n
        self._armed_unordered = False  # whether the attached hooks are the ordering step's
        self._claims: dict[int, list[tuple[int, bool]]] = {}
        # (id(activation module), layer) pairs refused at the ordering step: the module ran
        # after the layer, but on the output of modules without trainable parameters.
        self._refused: set[tuple[int, int]] = set()
        #: (module, forward pre-hook) pairs attached with every sampled step's hooks (the
        #: precision's autocast reader): set before the first ``arm()``.
        self.extra_pre_hooks: list[tuple[nn.Module, Callable[..., Any]]] = []

    # ------------------------------------------------------------------ hooks
    def arm(self) -> None:
        """Attach the forward hooks that measure a sampled step (and order layers at step 0)."""
        layers = self._layers
        if self._handles and not (layers.ordered and self._armed_unordered):
            return
        # The ordering step's hooks (a pre-hook on every layer, no fused pairs) stay attached
        # when the next step is sampled too: they give way to the ordered plan.
        self.disarm()
        if not layers.n:
            return
        need_forward = self.enabled or not layers.ordered
        if not need_forward:
            return
        # Once the order is known the hooks no longer change: built once, attached on each
        # sampled step (rebuilding ~100 closures and walking the model cost ~0.3 ms on W1).
        plan = self._plan if layers.ordered and self._plan is not None else self._build_plan()
        if layers.ordered:
            self._plan = plan
        self._armed_unordered = not layers.ordered
        for mod, pre, hook in plan:
            if pre:
                self._handles.append(mod.register_forward_pre_hook(hook))
            else:
                self._handles.append(mod.register_forward_hook(hook))

    def _build_plan(self) -> list[tuple[nn.Module, bool, Callable[..., Any]]]:
        """(module, is a pre-hook, hook) for every hook a sampled step attaches."""
        layers = self._layers
        plan: list[tuple[nn.Module, bool, Callable[..., Any]]] = []
        fused = self._fusable() if layers.ordered and self.enabled else {}
        fused_layers = set(fused.values())
        for i, spec in enumerate(layers.specs):
            mod = spec.module
            # Once the forward order is known, only recurrent layers need a pre-hook (for the
            # per-time-step input gradient): each Python hook call costs a few microseconds.
            if not layers.ordered or isinstance(mod, RECURRENT_TYPES):
                plan.append((mod, True, self._timed(self._make_pre_hook(i))))
            if self.enabled and i not in fused_layers:
                plan.append((mod, False, self._timed(self._make_post_hook(i))))
        if self.enabled:
            # Activation modules recognised by class or by probe (recording.recognise).
            for mod in self._model.modules():
                found = layers.recognised.get(id(mod))
                if found is None:
                    continue
                layer = fused.get(id(mod))
                hook = (
                    self._make_act_hook(found)
                    if layer is None
                    else self._make_fused_hook(layer, found)
                )
                plan.append((mod, False, self._timed(hook)))
        plan += [(mod, True, self._timed(hook)) for mod, hook in self.extra_pre_hooks]
        return plan

    def _fusable(self) -> dict[int, int]:
        """id(activation module) -> the layer whose output is its input, on every call.

        Such a pair needs one forward hook, the activation's: its input is the layer's output
        (the output-gradient hook goes there) and its output the activation statistics. A
        pair qualifies when, in the ordering step, the module claimed that layer on every
        call, each time with the layer's output itself as its input, unchanged in place, and
        the layer ran as many times; the layer keeps its own hook when its activation is
        functional, is credited past a shortcut, or the layer is recurrent. A shared
        activation module (one ``nn.ReLU()`` after every layer) keeps the general hooks.
        """
        layers = self._layers
        fused: dict[int, int] = {}
        for key, claims in self._claims.items():
            targets = {i for i, _ in claims}
            if len(targets) != 1 or not all(same for _, same in claims):
                continue
            (i,) = targets
            spec = layers.specs[i]
            if (
                self._calls[i] == len(claims)
                and i in layers.activation_of
                and i not in layers.no_claim
                and i not in layers.functional
                and not isinstance(spec.module, RECURRENT_TYPES)
            ):
                fused[key] = i
        self._claims.clear()
        return fused

    def _timed(self, hook: Callable[..., Any]) -> Callable[..., Any]:
        """``hook``, charging the host time of each call to ``timer`` when one is set."""
        timer = self.timer
        if timer is None:
            return hook
        clock, charge = timer.clock, timer.charge

        def timed(*args: Any) -> Any:
            start = clock()
            try:
                return hook(*args)
            finally:
                charge(clock() - start)

        return timed

    def disarm(self) -> None:
        """Remove the sampled-step hooks."""
        for h in self._handles:
            h.remove()
        self._handles.clear()

    @property
    def armed(self) -> bool:
        """Whether sampled-step hooks are attached (``compiled.EagerWindow`` follows it)."""
        return bool(self._handles)

    def reassign(self, old: int, new: int) -> None:
        """Credit the activation outputs gathered for layer ``old`` to layer ``new``."""
        step = self.step
        for item in step.pending:
            if item.source == ACT and item.layer == old:
                item.layer = new
        if old in step.act:
            step.act[new] = step.act.pop(old)

    def release(self) -> None:
        """Drop the outputs kept for a sampled step that never reached its end."""
        step = self.step
        step.pending.clear()
        step.pending_og.clear()
        step.stashed_bytes = 0
        self.recurrent.clear()

    def _make_pre_hook(self, i: int) -> Callable[..., Any]:
        layers = self._layers
        spec = layers.specs[i]
        recurrent = isinstance(spec.module, RECURRENT_TYPES)

        def hook(module: nn.Module, args: tuple[Any, ...]) -> Any:
            if not layers.ordered and i not in layers.order:
                layers.order.append(i)
            if not (recurrent and self.enabled and torch.is_grad_enabled()):
                return None
            return self.recurrent.before_forward(i, module, args)

        return hook

    def _make_post_hook(self, i: int) -> Callable[..., Any]:
        layers = self._layers
        spec = layers.specs[i]
        is_activation = activation_kind(spec.module) is not None
        conv_like = layer_class(spec.module).startswith(_CONV_LIKE)
        recurrent = isinstance(spec.module, RECURRENT_TYPES)
        # A functional activation after the layer (found by torch.fx): applied to a copy of
        # the output on sampled steps, so its units get the saturation / dead checks too.
        fn_name = layers.functional.get(i)
        func = getattr(torch.nn.functional, fn_name) if fn_name else None
        fn_like = FUNCTIONS[fn_name] if fn_name else None
        fn_kind = kind_of(fn_like) if fn_like else None
        og_timed = self._make_og_hook(i)

        def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            if not torch.is_grad_enabled():
                return
            out = output
            if isinstance(out, (tuple, list)):
                out = next((o for o in out if isinstance(o, torch.Tensor)), None)
            if not isinstance(out, torch.Tensor) or not self.enabled:
                return
            if conv_like and out.dim() >= 3:
                self._unit_dim[i] = 1
            if not is_activation and i not in layers.no_claim:
                self.step.last_layer = i
                self.step.claimable = True
            if not layers.ordered:
                self._calls[i] += 1
                self.step.last_output, self.step.last_version = out, out._version
            if func is not None and i not in layers.activation_of:
                with torch.no_grad():
                    self._add_output(ACT, i, func(out.detach()), fn_like, fn_kind)
            elif not layers.ordered or i not in layers.activation_of:
                self._add_output(RAW, i, out, None, None)
            if out.requires_grad:
                out.register_hook(og_timed)
            if recurrent:
                # After og_hook, so the output-gradient statistics see g before the probe runs.
                self.recurrent.after_forward(i, module, args, output)

        return hook

    def _make_og_hook(self, i: int) -> Callable[[torch.Tensor], None]:
        """The tensor hook that takes the gradient reaching layer ``i``'s output (timed)."""
        layers = self._layers

        def og_hook(g: torch.Tensor) -> None:
            if self.recurrent.probing:
                return  # the recurrent probe's extra backward, not the step's gradient
            g = g.detach() if g.requires_grad else g  # (only with create_graph=True)
            if not layers.ordered:
                # The elements out_grad_norm sums over: every call's gradient (a module run
                # twice per forward sums both), counted where the gradient arrives, so a
                # checkpoint's recompute (its forward hooks run again) is not counted twice.
                layers.out_numel[i] = layers.out_numel.get(i, 0) + g.numel()
            if self._stash(g):
                self.step.pending_og.append((i, g, g._version))
            else:
                self.step.raw.setdefault(i, ActivationAccumulator()).add_out_grad(g)

        return self._timed(og_hook)

    def _make_act_hook(self, found: Recognised) -> Callable[..., Any]:
        layers = self._layers
        # Statistics use the torch class it computes (its saturation bounds, its kind).
        act_type, kind = found.like, found.kind

        def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            step = self.step
            if not torch.is_grad_enabled():
                return
            claims = None if layers.ordered else self._claims.setdefault(id(module), [])
            if not (step.claimable and step.last_layer is not None) or not isinstance(
                output, torch.Tensor
            ):
                if claims is not None:
                    claims.append((-1, False))  # a call that claims nothing: not fusable
                return
            i = step.last_layer
            if claims is not None:
                x = args[0] if args else None
                if not computed_from(x, step.last_output):
                    # A module without trainable parameters ran in between (a frozen base
                    # layer under LoRA): this activation follows that one, not layer i.
                    claims.append((-1, False))
                    self._refused.add((id(module), i))
                    return
                layers.activation_of.setdefault(i, found)
                same = x is step.last_output and x is not None and x._version == step.last_version
                claims.append((i, same))
            elif (id(module), i) in self._refused:
                # Refused at the ordering step. A pair not seen there (an expert that got no
                # token at step 0) is claimed as it comes.
                return
            step.claimable = False
            self._add_output(ACT, i, output, act_type, kind)

        return hook

    def _make_fused_hook(self, i: int, found: Recognised) -> Callable[..., Any]:
        """The one hook of layer ``i`` and the activation module that follows it (``_fusable``):
        the output-gradient hook on its input, the activation statistics of its output."""
        act_type, kind = found.like, found.kind
        og_timed = self._make_og_hook(i)

        def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            if not torch.is_grad_enabled() or not isinstance(output, torch.Tensor):
                return
            step = self.step
            step.last_layer, step.claimable = i, False  # as if the layer's hook had run
            x = args[0] if args else None
            if isinstance(x, torch.Tensor) and x.requires_grad:
                x.register_hook(og_timed)
            self._add_output(ACT, i, output, act_type, kind)

        return hook

    # ------------------------------------------------------------------ outputs
    def _stash(self, t: torch.Tensor) -> bool:
        """Whether to keep ``t`` for the step's batched reductions (within the byte budget)."""
        nbytes = t.numel() * t.element_size()
        if self.step.stashed_bytes + nbytes > _STASH_BYTES:
            return False
        self.step.stashed_bytes += nbytes
        return True

    def _add_output(
        self,
        source: int,
        i: int,
        y: torch.Tensor,
        act_type: str | None,
        kind: str | None,
    ) -> None:
        """Keep a layer's (or its activation's) output for the step, or reduce it now."""
        y = y.detach() if y.requires_grad else y  # a detach is one more dispatcher call
        if self._stash(y):
            item = _Stashed(source, i, y, y._version, act_type, kind, self._unit_dim[i])
            self.step.pending.append(item)
        else:
            target = self.step.raw if source == RAW else self.step.act
            target.setdefault(i, ActivationAccumulator()).add_output(
                y, act_type, kind, self._unit_dim[i], self._scratch
            )

    # ------------------------------------------------------------------ the step's end
    def record(self, slot: int) -> None:
        """Activation, output-gradient and recurrent statistics gathered since the last step.

        The per-layer accumulators are stacked and combined in a handful of vector ops: a
        per-layer formula would launch ~10 tiny kernels per layer (measured ~2 ms on W1).
        """
        step = self.step
        if not (step.pending or step.pending_og or step.raw or step.act or self.recurrent):
            return
        buf = self._buffer
        sums = StepSums(self._layers.n, self._layers.device, buf.sdtype, self._consts)
        self._reduce_stashed(sums)
        for source, accs in ((RAW, step.raw), (ACT, step.act)):
            for i, acc in accs.items():
                sums.add_accumulator(source, i, acc)
        if buf.reducer is not None:
            buf.reducer.keep(slot, sums)  # its sums, added over ranks and combined at the flush
        else:
            self._window.keep(slot, sums)  # combined with the window's others at the flush
        at = buf.window_start + slot
        for i, kind, prof in self.recurrent.take():
            buf.recurrent.append((at, i, prof, kind))
        self.step = StepOutputs()

    def write_window(self) -> None:
        """Write the sampled metrics of the window's sampled steps into the buffer (before
        the flush moves it to the host)."""
        slots, metrics = self._window.take()
        if metrics is None:
            return
        buf = self._buffer
        first = METRIC_ROW[SAMPLED_METRICS[0]]
        idx = torch.tensor(slots, dtype=torch.long).to(buf.device)
        # LAYER_METRICS lists the sampled activation metrics contiguously, in this order.
        buf.values[idx, first : first + len(SAMPLED_METRICS)] = metrics.to(buf.values.dtype)

    def _reduce_stashed(self, sums: StepSums) -> None:
        """Reduce the outputs and output gradients kept during the step.

        Inside forward and backward every kernel costs ~10-30 us on CPU however small its
        tensor (the dispatcher's code is cold after each large matmul), and a kernel launch
        each on a GPU. Here same-shaped outputs are stacked, in chunks of at most
        ``STACK_BYTES`` into reused buffers, and reduced together: a handful of kernels per
        chunk. A tensor changed in place after its hook (its version moved) no longer holds
        the values to measure and is left out.
        """
        step = self.step
        groups: dict[tuple[Any, ...], list[_Stashed]] = {}
        for item in step.pending:
            if item.y._version != item.version or item.y.numel() == 0:
                continue
            y = item.y
            key = (item.source, y.shape, y.dtype, item.act_type, item.kind, item.unit_dim)
            groups.setdefault(key, []).append(item)
        for items in groups.values():
            first = items[0]
            chunk = max(1, STACK_BYTES // (first.y.numel() * first.y.element_size()))
            for start in range(0, len(items), chunk):
                part = items[start : start + chunk]
                if len(part) == 1:
                    # Nothing to stack: a view, no copy (large outputs come one at a time).
                    ys = part[0].y.unsqueeze(0)
                    tmp = self._scratch.like(part[0].y).view(ys.shape)
                else:
                    y0, n = first.y, len(part) * first.y.numel()
                    ys = self._stack.get(n, y0.dtype, y0.device).view(len(part), *y0.shape)
                    tmp = self._stack_tmp.get(n, y0.dtype, y0.device).view(ys.shape)
                    torch.stack([it.y for it in part], out=ys)
                moments = batch_moments(ys, first.act_type, first.kind, first.unit_dim, tmp)
                layers = tuple(it.layer for it in part)
                sums.add_batch(first.source, layers, moments, count=first.y.numel())
        grads = [(i, g) for i, g, version in step.pending_og if g._version == version]
        if grads:
            values, rooted = norms_or_squares([g for _, g in grads])
            sums.add_out_grads(tuple(i for i, _ in grads), values, norm=rooted)
        step.pending.clear()
        step.pending_og.clear()
        step.stashed_bytes = 0
