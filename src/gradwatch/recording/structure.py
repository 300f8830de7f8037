"""The structure of the model, recorded rather than assumed: roles and residual branches.

Roles (norm, embedding, attention ...) come from each layer's class (``role_of``, refined by
``isinstance``). Residual branches come from the autograd graph of the first forward: hooks
on every module keep the ``grad_fn`` of its first input and output; at the first step the
graph is walked from each addition (``AddBackward0``, also ``+=``) back to the latest node
both of its operands depend on (the *fork*). When one operand is the fork itself
(``x + f(x)``), the modules between the fork and the other operand form a residual branch;
when both are transformed (ResNet's projection shortcut), each side is a branch and the
side with fewer layers is the shortcut. Additions with no common ancestor (token + position
embeddings) are not residual.

Nodes are visited in decreasing ``_sequence_nr`` (the order autograd created them), so the
first node reached from both operands is the fork, and the walk stops there: a residual
addition costs the size of its branch, not of the graph.

Reentrant activation checkpointing builds a block's graph only inside the backward pass,
from a detached copy of its input: that copy's gradient accumulator can be a fork, and the
recompute's output is handed to the probe by a wrapper on ``CheckpointFunction.apply``
(first step only; ``_ReentrantRecomputes``).
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.utils.hooks import RemovableHandle

from ..trace.layers import Role, role_of
from .shared_patch import SharedPatch

_TORCH_NORMS: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.RMSNorm,
    nn.LocalResponseNorm,
)
_ADD_NODES = frozenset({"AddBackward0"})
# Walks that reach this many nodes give up on one addition (a loss summed from two heads
# over a huge graph): the addition is then not called residual.
_MAX_VISITED = 200_000


def layer_class(module: nn.Module) -> str:
    """The module's class name; for a parametrized module (``weight_norm``,
    ``spectral_norm``), the class it was made from: ``Linear``, not the ``ParametrizedLinear``
    that torch subclasses it into at run time."""
    cls = type(module)
    if parametrize.is_parametrized(module):
        cls = cls.__bases__[0]
    return cls.__name__


def layer_role(name: str, module: nn.Module, param_names: list[str]) -> Role:
    """The role of a layer (see ``LayerInfo.role``): ``isinstance`` for torch's classes,
    the class name for third-party ones, and the names of position/class-token parameters."""
    if name == "":
        return "root"
    if isinstance(module, _TORCH_NORMS):
        return "norm"
    if isinstance(module, (nn.Embedding, nn.EmbeddingBag)):
        return "embedding"
    if isinstance(module, nn.MultiheadAttention):
        return "attention"
    role = role_of(layer_class(module), name)
    if role == "weight" and param_names and all(_is_token(p) for p in param_names):
        return "embedding"
    return role


def _is_token(param_name: str) -> bool:
    low = param_name.lower()
    return "token" in low or "pos_emb" in low or "position_emb" in low


def attention_of(name: str, modules: dict[str, nn.Module]) -> str | None:
    """The innermost module around ``name`` (itself included) whose class says attention."""
    parts = name.split(".") if name else []
    for k in range(len(parts), 0, -1):
        prefix = ".".join(parts[:k])
        cls = type(modules[prefix]).__name__ if prefix in modules else ""
        if "Attention" in cls or cls.endswith("Attn"):
            return prefix
    return None


@dataclass
class Branch:
    """A residual branch: the layers between an addition's fork and one of its operands."""

    name: str
    layers: list[str]
    shortcut: bool  # the shorter side of an addition whose operands are both transformed
    ends: list[str]  # layers whose output is the added term (through single-input ops)


@dataclass
class Structure:
    """What the first forward's graph says about the model."""

    branches: list[Branch] = field(default_factory=list)
    branch_of: dict[str, str] = field(default_factory=dict)  # layer -> innermost branch
    shortcut_layers: set[str] = field(default_factory=set)  # layers of projection shortcuts
    main_end_of: dict[str, str] = field(default_factory=dict)  # shortcut layer -> main end
    cost_ms: float = 0.0
    # False when no module output carried a grad_fn (a first forward under no_grad; with
    # torch < 2.6 a model compiled after gw.watch). Step 0 runs eagerly under torch.compile.
    graph_seen: bool = True

    def to_meta(self) -> dict[str, Any]:
        return {
            "graph_seen": self.graph_seen,
            "residual_branches": [
                {"name": b.name, "layers": b.layers, "shortcut": b.shortcut} for b in self.branches
            ],
            "cost_ms": round(self.cost_ms, 3),
        }


class StructureProbe:
    """Hooks every module for the first forward and finds the residual branches in its graph.

    Args:
        model: The watched model.
    """

    def __init__(self, model: nn.Module) -> None:
        self._model = model
        self._handles: list[RemovableHandle] = []
        self._seen: set[str] = set()
        self._out: dict[Any, list[str]] = {}  # output grad_fn -> modules that returned it
        self._leaf_free: set[str] = set()  # modules without children or parameters
        self.structure: Structure | None = None

    def arm(self) -> None:
        """Attach a forward hook to every module (removed by :meth:`analyse` or ``disarm``)."""
        _RECOMPUTES.add(self)
        for name, module in self._model.named_modules():
            if not any(True for _ in module.children()) and not any(
                True for _ in module.parameters(recurse=False)
            ):
                self._leaf_free.add(name)
            self._handles.append(module.register_forward_hook(self._make_hook(name)))

    def disarm(self) -> None:
        _RECOMPUTES.discard(self)
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def recomputed(self, output: Any) -> None:
        """A reentrant checkpoint's recompute returned ``output``: the block's graph is only
        built then, and no module hook sees its last node (Hugging Face checkpoints a
        layer's ``forward``, not its ``__call__``), so it is kept as a start for the walk."""
        node = _output_node(output)
        if node is not None:
            self._out.setdefault(node, [])

    def _make_hook(self, name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            # No timer in here: under torch.compile a clock call would break the graph.
            if name in self._seen or not torch.is_grad_enabled():
                return
            self._seen.add(name)
            node = _output_node(output)
            if node is not None:
                self._out.setdefault(node, []).append(name)

        return hook

    def analyse(self, layer_names: list[str]) -> Structure:
        """Residual branches over the layers named; removes the hooks and frees the graph."""
        t0 = time.perf_counter()
        self.disarm()
        layer_set = set(layer_names)
        position = {name: k for k, name in enumerate(layer_names)}

        def order(name: str) -> int:
            return position[name]

        layer_nodes: dict[Any, list[str]] = {}
        for node, names in self._out.items():
            found = [n for n in names if n in layer_set]
            if found:
                layer_nodes[node] = found
        structure = Structure(graph_seen=bool(self._out))
        seen_sides: set[tuple[str, ...]] = set()
        for add in _additions(list(self._out)):
            operands = [n for n, _ in add.next_functions if n is not None and _is_op(n)]
            if len(operands) != 2:
                continue
            sides = _fork_sides(operands[0], operands[1])
            if sides is None:
                continue
            members = [
                sorted({n for node in side for n in layer_nodes.get(node, [])}, key=order)
                for side in sides
            ]
            if not members[0] and not members[1]:
                continue
            projection = bool(members[0]) and bool(members[1])
            short = min((0, 1), key=lambda k: (len(members[k]), k)) if projection else -1
            ends_by_side: list[list[str]] = []
            for k in (0, 1):
                if not members[k]:
                    ends_by_side.append([])
                    continue
                chain = _passthrough(operands[k], sides[k], layer_nodes)
                ends = layer_nodes.get(chain[-1], [])
                ends_by_side.append(ends)
                key = tuple(members[k])
                if key in seen_sides:
                    continue
                seen_sides.add(key)
                name = self._branch_name(chain, members[k], layer_set)
                taken = {b.name for b in structure.branches}
                if name in taken:  # two branches under one module: keep them apart
                    name = next(
                        f"{name}#{j}"
                        for j in range(2, len(taken) + 3)
                        if f"{name}#{j}" not in taken
                    )
                structure.branches.append(Branch(name, members[k], k == short, ends))
            if projection:
                main = 1 - short
                for layer in members[short]:
                    structure.shortcut_layers.add(layer)
                    if ends_by_side[main]:
                        structure.main_end_of[layer] = max(ends_by_side[main], key=order)
        # Innermost branch of each layer: the smallest one that holds it.
        for branch in sorted(structure.branches, key=lambda b: -len(b.layers)):
            for layer in branch.layers:
                structure.branch_of[layer] = branch.name
        self._out.clear()  # the graph's nodes are no longer needed
        structure.cost_ms = (time.perf_counter() - t0) * 1e3
        self.structure = structure
        return structure

    def _branch_name(self, chain: list[Any], members: list[str], layer_set: set[str]) -> str:
        """The outermost module whose output is the added term, unless that is a layer or a
        parameter-free leaf (dropout); else the closest module holding all the layers."""
        candidates = [
            n
            for node in chain
            for n in self._out.get(node, [])
            if n not in self._leaf_free and n not in layer_set and n != ""
        ]
        if candidates:
            return min(candidates, key=lambda n: n.count("."))
        common = members[0].split(".")
        for m in members[1:]:
            parts = m.split(".")
            k = 0
            while k < min(len(common), len(parts)) and common[k] == parts[k]:
                k += 1
            common = common[:k]
        if len(members) == 1:
            return members[0]
        return ".".join(common) or "(root)"


class _ReentrantRecomputes(SharedPatch["StructureProbe"]):
    """Wraps ``torch.utils.checkpoint.CheckpointFunction.apply`` while a probe is armed.

    Reentrant checkpointing (``checkpoint(fn, x, use_reentrant=True)``) runs ``fn`` under
    ``no_grad`` in the forward pass and again, with gradients, inside the backward pass. The
    wrapper hands the second call's output to every armed probe. Installed for the first
    step only; the class's own ``apply`` comes back when the last probe is disarmed.
    """

    def __init__(self) -> None:
        super().__init__()
        self._installed_on: tuple[Any, Any, Any] | None = None  # (class, own apply, wrapper)

    def _install(self) -> bool:
        import torch.utils.checkpoint as ckpt

        cls = getattr(ckpt, "CheckpointFunction", None)
        if cls is None:  # a torch without it: nothing to wrap
            return False
        original = cls.apply  # bound to the class
        probes = self.users

        def recorded(function: Callable[..., Any]) -> Callable[..., Any]:
            def run(*args: Any, **kwargs: Any) -> Any:
                out = function(*args, **kwargs)
                if torch.is_grad_enabled():  # the recompute, inside the backward pass
                    for probe in list(probes):
                        probe.recomputed(out)
                return out

            return run

        def apply(function: Callable[..., Any], *args: Any) -> Any:
            return original(recorded(function), *args)

        self._installed_on = (cls, cls.__dict__.get("apply"), apply)
        cls.apply = apply
        return True

    def _uninstall(self) -> None:
        assert self._installed_on is not None
        cls, own, wrapper = self._installed_on
        self._installed_on = None
        if cls.__dict__.get("apply") is wrapper:  # (else someone wrapped it after us)
            if own is None:
                delattr(cls, "apply")
            else:
                cls.apply = own


_RECOMPUTES = _ReentrantRecomputes()


def _output_node(output: Any) -> Any:
    """The ``grad_fn`` of a module's (or function's) output: its first tensor, in a tuple,
    list or Hugging Face ``ModelOutput``; None when there is none or it has no graph."""
    out = output
    if isinstance(out, (tuple, list)):
        out = next((o for o in out if isinstance(o, torch.Tensor)), None)
    elif isinstance(out, dict):  # Hugging Face ModelOutput
        out = next((o for o in out.values() if isinstance(o, torch.Tensor)), None)
    return out.grad_fn if isinstance(out, torch.Tensor) else None


def _is_op(node: Any) -> bool:
    """A node of the graph proper: not a parameter's gradient accumulator. Another leaf's
    accumulator counts: a block that reentrant checkpointing recomputes starts from a
    detached copy of its input, which is then the fork of the block's first residual."""
    if type(node).__name__ != "AccumulateGrad":
        return True
    return not isinstance(getattr(node, "variable", None), nn.Parameter)


def _order(node: Any) -> int:
    """When autograd created ``node``: a leaf's accumulator (``_sequence_nr`` the largest
    integer) is older than every operation on it."""
    return -1 if type(node).__name__ == "AccumulateGrad" else int(node._sequence_nr())


def _additions(starts: list[Any]) -> list[Any]:
    """Every ``AddBackward0`` node reachable from ``starts``."""
    seen: set[Any] = set()
    stack = list(starts)
    adds = []
    while stack and len(seen) < _MAX_VISITED:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        if type(node).__name__ in _ADD_NODES:
            adds.append(node)
        stack.extend(n for n, _ in node.next_functions if n is not None and _is_op(n))
    return adds


def _fork_sides(a: Any, b: Any) -> tuple[set[Any], set[Any]] | None:
    """The nodes reached only from ``a`` and only from ``b`` before their latest common
    ancestor, or None when they have none (or the walk is too long)."""
    heap: list[tuple[int, int, Any]] = []
    mask: dict[Any, int] = {}
    for bit, node in ((1, a), (2, b)):
        if node not in mask:
            heapq.heappush(heap, (-_order(node), id(node), node))
        mask[node] = mask.get(node, 0) | bit
    sides: tuple[set[Any], set[Any]] = (set(), set())
    popped = 0
    while heap:
        _, _, node = heapq.heappop(heap)
        popped += 1
        if popped > _MAX_VISITED:
            return None
        m = mask[node]
        if m == 3:
            return sides
        sides[m - 1].add(node)
        for nxt, _ in node.next_functions:
            if nxt is None or not _is_op(nxt):
                continue
            if nxt not in mask:
                heapq.heappush(heap, (-_order(nxt), id(nxt), nxt))
                mask[nxt] = 0
            mask[nxt] |= m
    return None


def _passthrough(
    node: Any, side: set[Any], layer_nodes: dict[Any, list[str]], limit: int = 4
) -> list[Any]:
    """``node`` and the nodes behind it through single-input ops (dropout, scaling, views)
    inside the branch, up to the first one a layer returned."""
    chain = [node]
    for _ in range(limit):
        if node in layer_nodes:
            break
        inputs = [n for n, _ in node.next_functions if n is not None and _is_op(n)]
        if len(inputs) != 1 or inputs[0] not in side:
            break
        node = inputs[0]
        chain.append(node)
    return chain
