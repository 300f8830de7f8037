"""Outputs squashed twice on their way into the loss, seen in the loss's autograd graph.

``CrossEntropyLoss`` (``F.cross_entropy``) applies log-softmax to what it is given, and
``BCEWithLogitsLoss`` (``F.binary_cross_entropy_with_logits``) the sigmoid: both take logits.
Fed outputs that already went through a softmax (an ``nn.Softmax`` at the end of the model,
``softmax`` before the loss) or a sigmoid, they squash them again: the loss has a floor it
cannot go below and its gradient shrinks as the model grows confident (a classic mistake;
``diagnosis/probability_floor.py`` names its floor once the loss reaches it). The graph
says it at the first step: the loss's ``LogSoftmaxBackward0`` node (``cross_entropy``) or
``BinaryCrossEntropyWithLogitsBackward0`` node whose input is a ``SoftmaxBackward0`` or a
``SigmoidBackward0``, through nodes that only reshape, select or cast (such as the view of
an LM's logits). The four pairs squash alike: outputs in [0, 1] squashed again.
``log(softmax(x))`` before ``NLLLoss`` is ``LogBackward0`` over the softmax: correct, and
not matched; ``log_softmax`` before ``cross_entropy`` is idempotent, and not matched either.

The graph is read from a loss the watch is handed (``w.log(loss=loss)``; the Lightning
callback passes the loss before backward): a walk from its ``grad_fn`` over at most
:data:`MAX_NODES` nodes, for the first :data:`CHECKS` losses with a graph, then never
again (measured: 3 us where the squash sits next to the loss, 44 us for a walk of all 64
nodes of a 50-layer MLP's graph that has none). No tensor is read.
A loss logged as a float or detached has no graph: nothing is checked. Under
``torch.compile`` the watch runs its sampled steps eagerly (step 0 among them,
``compiled.py``), where the softmax is a node; at a compiled step it sits inside the
compiled function's one backward node: not seen, never misread (tested).

Example:
    >>> import torch, torch.nn.functional as F
    >>> x, y = torch.randn(4, 10, requires_grad=True), torch.tensor([0, 1, 2, 3])
    >>> squashed_input(F.cross_entropy(torch.softmax(x, -1), y))
    ('cross_entropy', 'softmax')
    >>> squashed_input(F.cross_entropy(x, y)) is None
    True
"""

from __future__ import annotations

from collections import deque
from typing import Any

import torch

#: Losses checked (the graph of a training loop is the same at every step; a few cover a
#: first step that differs, such as one taken before a warm-up hook attaches).
CHECKS = 3
#: Nodes visited from the loss (a loss's log-softmax sits within a few nodes of it; the
#: bound keeps a walk from wandering through a large model's graph).
MAX_NODES = 64
#: Nodes that only reshape, select or cast a tensor: between the squash and the loss they
#: leave it squashed (names without their trailing version digits).
_PASS_THROUGH = frozenset(
    {
        "ViewBackward",
        "UnsafeViewBackward",
        "ReshapeAliasBackward",
        "TransposeBackward",
        "TBackward",
        "PermuteBackward",
        "SliceBackward",
        "SelectBackward",
        "IndexBackward",
        "SqueezeBackward",
        "UnsqueezeBackward",
        "ExpandBackward",
        "CloneBackward",
        "ToCopyBackward",
        "AliasBackward",
        "MaskedSelectBackward",
    }
)
#: The loss nodes that squash their input themselves (``cross_entropy``'s log-softmax, BCE
#: with logits' sigmoid), by the loss they belong to.
_LOSSES = {
    "LogSoftmaxBackward": "cross_entropy",
    "BinaryCrossEntropyWithLogitsBackward": "bce_with_logits",
}
#: The squashes whose outputs (in [0, 1]) such a loss must not be fed, by their node.
_SQUASHES = {"SoftmaxBackward": "softmax", "SigmoidBackward": "sigmoid"}


def _kind(node: Any) -> str:
    return str(node.name()).rstrip("0123456789")


def _source(node: Any) -> Any:
    """The node that made ``node``'s first input, past nodes that only reshape or cast it."""
    for _ in range(MAX_NODES):
        inputs = node.next_functions
        node = inputs[0][0] if inputs else None
        if node is None or _kind(node) not in _PASS_THROUGH:
            return node
    return None


def squashed_input(loss: torch.Tensor) -> tuple[str, str] | None:
    """``(loss kind, squash)`` where ``loss``'s graph applies a loss that squashes its input
    (``"cross_entropy"``, ``"bce_with_logits"``) to an input already squashed (``"softmax"``,
    ``"sigmoid"``); None otherwise, and for a tensor without a graph."""
    root = loss.grad_fn
    if root is None:
        return None
    queue, seen = deque([root]), {root}
    while queue and len(seen) <= MAX_NODES:
        node = queue.popleft()
        kind = _LOSSES.get(_kind(node))
        if kind is not None:
            source = _source(node)
            squash = None if source is None else _SQUASHES.get(_kind(source))
            if squash is not None:
                return kind, squash
        for child, _ in node.next_functions:
            if child is not None and child not in seen:
                seen.add(child)
                queue.append(child)
    return None


class LossGraphProbe:
    """Reads the graphs of the first :data:`CHECKS` losses handed to it.

    Attributes:
        checked: Losses whose graph was read.
        squashed: Of those, the ones that squash an input already squashed.
        loss: The loss that squashed it again (``"cross_entropy"``, ``"bce_with_logits"``)
            the first time, or None.
        squash: What squashed it first (``"softmax"``, ``"sigmoid"``), or None.
        first_step: The step of that loss, or None.
    """

    def __init__(self) -> None:
        self.checked = 0
        self.squashed = 0
        self.loss: str | None = None
        self.squash: str | None = None
        self.first_step: int | None = None

    def observe(self, values: Any, step: int) -> None:
        """Read the graph of each tensor among ``values`` (one tensor, or an iterable of
        logged values) that has one, while fewer than :data:`CHECKS` were read."""
        for value in [values] if isinstance(values, torch.Tensor) else values:
            if self.checked >= CHECKS:
                return
            if not isinstance(value, torch.Tensor) or value.grad_fn is None:
                continue
            self.checked += 1
            found = squashed_input(value)
            if found is not None:
                self.squashed += 1
                if self.first_step is None:
                    (self.loss, self.squash), self.first_step = found, step

    def meta(self) -> dict[str, int | str | None]:
        """The counts, for ``meta.json`` (``config.loss_graph``)."""
        return {
            "checked": self.checked,
            "squashed": self.squashed,
            "loss": self.loss,
            "squash": self.squash,
            "first_step": self.first_step,
        }
