"""Outputs of the wrong kind on their way into the loss, seen in the loss's autograd graph.

``CrossEntropyLoss`` (``F.cross_entropy``) applies log-softmax to what it is given, and
``BCEWithLogitsLoss`` (``F.binary_cross_entropy_with_logits``) the sigmoid: both take logits.
Fed outputs that already went through a softmax (an ``nn.Softmax`` at the end of the model,
``softmax`` before the loss) or a sigmoid, they squash them again: the loss has a floor it
cannot go below and its gradient shrinks as the model grows confident (a classic mistake;
``diagnosis/probability_floor.py`` names its floor once the loss reaches it). ``NLLLoss``
(``F.nll_loss``) takes log-probabilities and only negates the target's entry: fed
probabilities (a softmax or sigmoid without the log) its loss is minus the target's
probability, stuck above -1 with a gradient that shrinks as the squash saturates; fed a
layer's raw outputs (no ``log_softmax``) it is minus the target's output, with no floor at
all: training pushes that output up without bound (another classic mistake); fed a
log-softmax over dimension 0, the batch (``F.log_softmax`` without ``dim`` picks it for a
3-D input such as an LM's (B, T, V) logits), each class is normalised across the examples,
not each example across the classes; and ``CrossEntropyLoss`` fed such a log-softmax over
dimension 0 does the same (its own log-softmax over the classes undoes one over the classes,
not that one).

The graph says each at the first step: the loss's ``LogSoftmaxBackward0`` node
(``cross_entropy``) or ``BinaryCrossEntropyWithLogitsBackward0`` node whose input is a
``SoftmaxBackward0`` or a ``SigmoidBackward0``; an ``NllLossBackward0`` (or ``2D``) node
whose input is one of those, a layer's output (a matrix product, convolution or embedding
lookup), or a ``LogSoftmaxBackward0`` whose saved ``dim`` is 0 of two or more (unless a
transpose lies between: a (C, N) layout has its classes first); each through nodes that only
reshape, select or cast (such as the view of an LM's logits). ``log(softmax(x))`` before
``NLLLoss`` is ``LogBackward0`` over the softmax: correct, and not matched, nor is any input
the walk does not know (a hand-written log-softmax, ``x - x.logsumexp(-1, keepdim=True)``,
is a subtraction); ``log_softmax`` before ``cross_entropy`` is idempotent, and not matched
either.

The graph is read from a loss the watch is handed (``w.log(loss=loss)``; the Lightning
callback passes the loss before backward): a walk from its ``grad_fn`` over at most
:data:`MAX_NODES` nodes, for the first :data:`CHECKS` losses with a graph, then never
again (measured: 3 us where the squash sits next to the loss, 44 us for a walk of all 64
nodes of a 50-layer MLP's graph that has none). No tensor is read there: the one number
read (:func:`product`: how many times its mean the logged loss is, from the numbers the loss
was scaled or divided by and, for a sum, its loss node's count) is read once, when the run's
metadata is first written. A loss logged after ``backward`` keeps its graph's shape but not
those numbers (``backward`` frees them): where it needs one, the multiple is unknown.
A loss logged as a float or detached has no graph: nothing is checked. Under
``torch.compile`` the watch runs its sampled steps eagerly (step 0 among them,
``compiled.py``), where the softmax is a node; at a compiled step it sits inside the
compiled function's one backward node: not seen, never misread (tested).

Example:
    >>> import torch, torch.nn.functional as F
    >>> x, y = torch.randn(4, 10, requires_grad=True), torch.tensor([0, 1, 2, 3])
    >>> wrong_input(F.cross_entropy(torch.softmax(x, -1), y))
    ('cross_entropy', 'softmax')
    >>> wrong_input(F.nll_loss(torch.nn.Linear(10, 10)(x), y))
    ('nll_loss', 'logits')
    >>> wrong_input(F.cross_entropy(x, y)) is None
    True
"""

from __future__ import annotations

import math
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
#: Of those, the nodes that reorder dimensions: past one, dimension 0 of the source need not
#: be the loss input's first.
_REORDERING = frozenset({"TransposeBackward", "TBackward", "PermuteBackward"})
#: The loss nodes that check what they are given, by the loss they belong to: two squash their
#: input themselves (``cross_entropy``'s log-softmax, BCE with logits' sigmoid), ``nll_loss``
#: takes log-probabilities as they are (``cross_entropy`` is one over a log-softmax).
_LOSSES = {
    "LogSoftmaxBackward": "cross_entropy",
    "BinaryCrossEntropyWithLogitsBackward": "bce_with_logits",
    "NllLossBackward": "nll_loss",
    "NllLoss2DBackward": "nll_loss",
}
#: The losses that take log-probabilities, so that a layer's raw outputs are wrong too.
_TAKES_LOG_PROBABILITIES = frozenset({"nll_loss"})
#: The squashes whose outputs (probabilities, in [0, 1]) no such loss must be fed, by node.
_SQUASHES = {"SoftmaxBackward": "softmax", "SigmoidBackward": "sigmoid"}
#: Layers whose raw outputs are logits, not log-probabilities: only the unambiguous ones (a
#: matrix product, convolution or embedding lookup), so that an input of another kind is
#: never misread (a hand-written log-softmax is a subtraction, a log is ``LogBackward``).
_LAYER_OUTPUTS = frozenset(
    {"AddmmBackward", "MmBackward", "BmmBackward", "ConvolutionBackward", "EmbeddingBackward"}
)


def _kind(node: Any) -> str:
    return str(node.name()).rstrip("0123456789")


def _source(node: Any) -> tuple[Any, bool]:
    """The node that made ``node``'s first input, past nodes that only reshape or cast it;
    and whether one of those reordered its dimensions (:data:`_REORDERING`)."""
    reordered = False
    for _ in range(MAX_NODES):
        inputs = node.next_functions
        node = inputs[0][0] if inputs else None
        if node is None or _kind(node) not in _PASS_THROUGH:
            return node, reordered
        reordered = reordered or _kind(node) in _REORDERING
    return None, reordered


def _normalised_dim(node: Any) -> tuple[int, list[int]] | None:
    """A (log-)softmax ``node``'s dim, made non-negative, and its output's shape; read from
    private autograd attributes (its saved ``dim``, its output's shape, both kept after
    backward); None where this PyTorch lacks them."""
    try:
        dim, shape = int(node._saved_dim), list(node._input_metadata[0].shape)
    except (AttributeError, IndexError, RuntimeError, TypeError, ValueError):
        return None
    if dim >= 1 << 63:
        dim -= 1 << 64  # a negative dim is saved as an unsigned 64-bit int
    return (dim % len(shape), shape) if shape else None


def _over_first_dim(node: Any) -> bool:
    """Whether a (log-)softmax ``node`` normalised over dimension 0 of an output with two or
    more dimensions: the batch (or the time of a sequence-first layout), not the classes;
    False where that cannot be read (:func:`_normalised_dim`)."""
    read = _normalised_dim(node)
    return read is not None and len(read[1]) >= 2 and read[0] == 0


def _mismatch(loss: str, source: Any, reordered: bool) -> tuple[str, str] | None:
    """``(loss, what it was given)`` where a ``loss`` node whose input ``source`` made
    (:func:`_source`) is fed outputs of the wrong kind (:func:`wrong_input`), else None."""
    kind = _kind(source)
    if loss in _TAKES_LOG_PROBABILITIES and kind in _LAYER_OUTPUTS:
        return loss, "logits"
    if (
        loss in (*_TAKES_LOG_PROBABILITIES, "cross_entropy")  # (cross_entropy: a log-softmax
        and kind == "LogSoftmaxBackward"  # over its classes is idempotent, not over dim 0)
        and not reordered  # (a transposed (C, N) layout has its classes first)
        and _over_first_dim(source)
    ):
        return loss, "log_softmax_over_dim_0"
    given = _SQUASHES.get(kind)
    return None if given is None else (loss, given)


def _loss_kind(loss: str, node: Any, source: Any) -> tuple[str, int | None]:
    """The loss a ``loss`` node (its input made by ``source``) computes: ``nll_loss`` over a
    log-softmax is ``cross_entropy`` (what ``F.cross_entropy`` builds, or the same written
    out); and for cross-entropy the number of classes its log-softmax normalises over (None
    where that cannot be read)."""
    log_softmax = node if loss == "cross_entropy" else None
    if loss in _TAKES_LOG_PROBABILITIES and _kind(source) == "LogSoftmaxBackward":
        loss, log_softmax = "cross_entropy", source
    read = None if log_softmax is None else _normalised_dim(log_softmax)
    return loss, None if read is None else int(read[1][read[0]])


#: ``LossGraphProbe.observe``'s default ``measured``: the first graph read.
_FIRST = object()
#: A multiple of the mean, as the factors it is the product of: each a one-element tensor
#: (left where it lies: a count on an accelerator is read only by :func:`product`) and its
#: power, 1 or -1.
Factors = list[tuple[torch.Tensor, int]]


def _saved(node: Any, name: str) -> Any:
    """A node's saved value ``name``, or None where it has none or backward freed it (saved
    tensors are freed by ``backward``: a loss logged after it keeps its numbers only)."""
    try:
        return getattr(node, name, None)
    except RuntimeError:
        return None


def _scale(node: Any) -> torch.Tensor | None:
    """The one number a multiplication or division ``node`` scales its first input by (a
    Python number is saved as a 0-d CPU tensor, a tensor divisor such as the HF Trainer's
    ``num_items_in_batch`` as itself), or None."""
    other = _saved(node, "_saved_other")
    return other.detach() if isinstance(other, torch.Tensor) and other.numel() == 1 else None


def _count(node: Any) -> torch.Tensor | None:
    """What a loss ``node`` reduced with "mean" divides its sum by: the total weight of the
    targets it does not ignore (``nll_loss``'s saved ``total_weight``), or its target's
    size (BCE with logits); None where neither can be read."""
    total = _saved(node, "_saved_total_weight")
    if isinstance(total, torch.Tensor):
        return total.detach()
    target = _saved(node, "_saved_target")
    return torch.tensor(float(target.numel())) if isinstance(target, torch.Tensor) else None


def mean_multiple(loss: torch.Tensor) -> Factors | None:
    """How many times its classification loss's mean over the examples ``loss`` is, as
    :data:`Factors`: walked from the loss past nodes that only reshape or cast it and through
    multiplications and divisions by one number (a loss scale, Lightning's division by
    ``accumulate_grad_batches``, the HF Trainer's sum over tokens divided by
    ``num_items_in_batch``) to the loss node, whose "sum" reduction multiplies by its count.
    None where the walk meets anything else first (an added term), the loss is reduced
    otherwise, or a number it needs was freed by ``backward``. No tensor is read.

    Example:
        >>> import torch, torch.nn.functional as F
        >>> x, y = torch.randn(4, 10, requires_grad=True), torch.tensor([0, 1, 2, 3])
        >>> product(mean_multiple(F.cross_entropy(x, y, reduction="sum") / 2))
        2.0
    """
    factors: Factors = []
    node = loss.grad_fn
    if node is not None and _kind(node) in _PASS_THROUGH:
        node, _ = _source(node)
    for _ in range(MAX_NODES):
        kind = None if node is None else _kind(node)
        if kind in _LOSSES:
            # (ATen's Reduction enum: 0 none, 1 mean, 2 sum.)
            reduction = _saved(node, "_saved_reduction")
            count = _count(node) if reduction == 2 else None
            if count is not None:
                factors.append((count, 1))
            return factors if reduction == 1 or count is not None else None
        scale = _scale(node) if kind in ("MulBackward", "DivBackward") else None
        if scale is None:
            return None
        factors.append((scale, 1 if kind == "MulBackward" else -1))
        node, _ = _source(node)
    return None


def product(factors: Factors | None, scale: float = 1.0) -> float | None:
    """``scale`` times the product of ``factors`` (read here: a host sync for any on an
    accelerator), or None for none or a product that is not a positive finite number."""
    if factors is None:
        return None
    value = scale
    for factor, power in factors:
        read = float(factor)
        value *= read**power if read != 0 else math.inf  # (no targets counted: unreadable)
    return value if math.isfinite(value) and value > 0 else None


def read_graph(
    loss: torch.Tensor,
) -> tuple[tuple[str, int | None] | None, tuple[str, str] | None]:
    """What ``loss``'s graph computes: the kind of the first loss node the walk meets from
    the loss (``"cross_entropy"``, ``"nll_loss"``, ``"bce_with_logits"``: the classification
    loss, whose untrained level ``diagnosis/trained_start.py`` knows) with its number of
    classes (cross-entropy only: an ``nll_loss`` over a log-softmax; a log-softmax feeding
    anything else, a KL divergence or a CTC loss, is none), and :func:`wrong_input`'s
    answer; ``(None, None)`` for a tensor without a graph."""
    root = loss.grad_fn
    if root is None:
        return None, None
    first: tuple[str, int | None] | None = None
    queue, seen = deque([root]), {root}
    while queue and len(seen) <= MAX_NODES:
        node = queue.popleft()
        kind = _LOSSES.get(_kind(node))
        source, reordered = (None, False) if kind is None else _source(node)
        if kind is not None and source is not None:  # a loss node: what made its input?
            if kind != "cross_entropy":  # (a log-softmax alone may feed a KL or CTC loss)
                first = first or _loss_kind(kind, node, source)
            found = _mismatch(kind, source, reordered)
            if found is not None:
                return first, found
        for child, _ in node.next_functions:
            if child is not None and child not in seen:
                seen.add(child)
                queue.append(child)
    return first, None


def wrong_input(loss: torch.Tensor) -> tuple[str, str] | None:
    """``(loss kind, given)`` where ``loss``'s graph applies a loss to outputs of the wrong
    kind: a loss that squashes its input (``"cross_entropy"``, ``"bce_with_logits"``) given
    outputs already squashed (``"softmax"``, ``"sigmoid"``), or ``"nll_loss"`` given
    probabilities (``"softmax"``, ``"sigmoid"``), a layer's raw outputs (``"logits"``) or
    a log-softmax over the batch (``"log_softmax_over_dim_0"``) instead of log-probabilities
    over the classes; or ``"cross_entropy"`` given such a log-softmax over the batch (its own
    over the classes undoes one over the classes, not that one). None otherwise, and for a
    tensor without a graph."""
    return read_graph(loss)[1]


class LossGraphProbe:
    """Reads the graphs of the first :data:`CHECKS` losses handed to it.

    Attributes:
        checked: Losses whose graph was read.
        mismatched: Of those, the ones that apply a loss to outputs of the wrong kind
            (:func:`wrong_input`).
        loss: The loss given them (``"cross_entropy"``, ``"bce_with_logits"``,
            ``"nll_loss"``) the first time, or None.
        given: What it was given (``"softmax"``, ``"sigmoid"``, ``"logits"``,
            ``"log_softmax_over_dim_0"``), or None.
        first_step: The step of that loss, or None.
        kind: The classification loss the first graph read computes (:func:`read_graph`),
            or None.
        classes: The number of classes of that loss, for cross-entropy, or None.
        multiple: How many times that first loss's mean over its examples the loss logged
            for its step is (:func:`mean_multiple`, times the ``scale`` it was handed with),
            or None where that cannot be read; read from the device once, when first asked.
    """

    def __init__(self) -> None:
        self.kind: str | None = None
        self.classes: int | None = None
        self.checked = 0
        self.mismatched = 0
        self.loss: str | None = None
        self.given: str | None = None
        self.first_step: int | None = None
        self._measured = False  # whether the loss's own graph was read
        self._factors: Factors | None = None
        self._scale = 1.0
        self._multiple: float | None = None

    @property
    def multiple(self) -> float | None:
        if self._factors is not None:  # (read once: a host sync for a count on a device)
            self._multiple, self._factors = product(self._factors, self._scale), None
        return self._multiple

    def observe(
        self, values: Any, step: int, scale: float | None = 1.0, *, measured: Any = _FIRST
    ) -> None:
        """Read the graph of each tensor among ``values`` (one tensor, or an iterable of
        logged values) that has one, while fewer than :data:`CHECKS` were read.
        ``measured``: the one among them that is the loss the loss rules read (logged as
        ``loss``), whose kind and multiple are read, once (by default the first graph
        read; None: none of them); an auxiliary loss logged beside it is only checked for
        outputs of the wrong kind. ``scale``: how many times that loss the step's logged
        loss is (a framework that divides the loss backward runs from by its accumulation
        steps, or adds up its micro-batches' shares, logs a multiple of it); None where that
        is unknown (the loss logged is another tensor than this one)."""
        for value in [values] if isinstance(values, torch.Tensor) else values:
            if self.checked >= CHECKS:
                return
            if not isinstance(value, torch.Tensor) or value.grad_fn is None:
                continue
            kind, found = read_graph(value)
            if not self._measured and (value is measured or measured is _FIRST):
                self._measured = True
                self.kind, self.classes = kind or (None, None)
                self._factors = None if scale is None else mean_multiple(value)
                self._scale = 1.0 if scale is None else scale
            self.checked += 1
            if found is not None:
                self.mismatched += 1
                if self.first_step is None:
                    (self.loss, self.given), self.first_step = found, step

    def meta(self) -> dict[str, int | float | str | None]:
        """The counts, for ``meta.json`` (``config.loss_graph``)."""
        multiple = self.multiple
        return {
            "checked": self.checked,
            "mismatched": self.mismatched,
            "loss": self.loss,
            "given": self.given,
            "first_step": self.first_step,
            "kind": self.kind,
            "classes": self.classes,
            "multiple": None if multiple is None else float(f"{multiple:.6g}"),
        }
