"""The layer table: what a "layer" is in a trace, in forward order, and the part it plays."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from typing import Any, Literal, cast

from .._activations import torch_equivalent

#: The part a layer plays in the model (see :attr:`LayerInfo.role`).
Role = Literal["weight", "norm", "embedding", "attention", "activation", "root"]
ROLES: tuple[str, ...] = ("weight", "norm", "embedding", "attention", "activation", "root")
#: Roles whose layers count as depth in depth comparisons (see ``Trace.path_columns``).
PATH_ROLES = frozenset({"weight", "attention"})

# Norm classes by name, so third-party ones count too: BatchNorm1d, LayerNorm, GroupNorm,
# RMSNorm, InstanceNorm2d, FrozenBatchNorm2d, HF's T5LayerNorm / LlamaRMSNorm, timm's
# LayerNorm2d.
_NORM_RE = re.compile(r"Norm([123][dD])?$")
# Embedding tables and the modules that own position / class tokens (HF ViTEmbeddings).
_EMBEDDING_RE = re.compile(r"Embedding(s|Bag)?$")


def role_of(type_name: str, name: str) -> Role:
    """The role of a layer from its class name and module name (see :attr:`LayerInfo.role`).

    The recorder refines this with ``isinstance`` checks; a trace written before roles were
    recorded gets its roles from here when loaded.

    Example:
        >>> role_of("LlamaRMSNorm", "model.norm"), role_of("Linear", ""), role_of("Conv2d", "c")
        ('norm', 'root', 'weight')
    """
    if name == "":
        return "root"
    if _NORM_RE.search(type_name):
        return "norm"
    if _EMBEDDING_RE.search(type_name):
        return "embedding"
    if type_name == "MultiheadAttention":
        return "attention"
    if type_name == "PReLU":
        return "activation"
    return "weight"


#: Prefixes wrappers put before every module name: ``torch.compile`` (``_orig_mod.``) and
#: DistributedDataParallel / DataParallel (``module.``). Names shown to people drop them.
WRAPPER_PREFIXES: tuple[str, ...] = ("_orig_mod.", "module.")


def layer_label(depth: int, name: str) -> str:
    """The one name of a layer shown to people: ``L<depth> <module name>``.

    Leading wrapper prefixes (``_orig_mod.``, ``module.``) are dropped, so the same layer
    reads the same wrapped or not (a user's own top-level module named ``module`` with
    children loses the prefix too); the root module (name ``""``) reads ``(root)``.

    Example:
        >>> layer_label(3, "_orig_mod.encoder.layer.1.attention.self.query")
        'L3 encoder.layer.1.attention.self.query'
    """
    stripped = True
    while stripped:
        stripped = False
        for prefix in WRAPPER_PREFIXES:
            if name.startswith(prefix) and len(name) > len(prefix):
                name, stripped = name[len(prefix) :], True
    return f"L{depth} {name or '(root)'}"


@dataclass(frozen=True)
class LayerInfo:
    """One recorded layer: a module that owns trainable parameters.

    Attributes:
        name: The module's name from ``model.named_modules()`` (``""`` for the root; shown
            as ``"(root)"`` by :attr:`display_name`).
        type: The module's class name, e.g. ``"Linear"``.
        depth: Position along the forward pass (0 = first used); the column of the layer in
            every matrix and the x axis of depth plots.
        num_params: Number of trainable scalar parameters the module owns directly.
        shapes: Parameter name -> shape, e.g. ``{"weight": [256, 256], "bias": [256]}``.
        activation: Class name of the activation that follows this layer in the forward pass
            as the model wrote it (``"Sigmoid"``, ``"NewGELUActivation"``), the function for
            a functional call (``"gelu"``), or ``None`` when none was recognised.
        recurrent: True for ``nn.RNN``/``nn.LSTM``/``nn.GRU``.
        role: What the layer is: ``"weight"`` (Linear, Conv, RNN, any other module with
            weights, including attention's q/k/v/out projections), ``"norm"`` (BatchNorm,
            LayerNorm, GroupNorm, RMSNorm, InstanceNorm and classes named ``...Norm``),
            ``"embedding"`` (embedding tables, modules owning position/class tokens),
            ``"attention"`` (``nn.MultiheadAttention``, which owns its projections),
            ``"activation"`` (PReLU) or ``"root"`` (parameters owned by the model itself,
            such as a ViT's ``cls_token``). Only ``"weight"`` and ``"attention"`` layers
            count as depth in depth comparisons.
        attention: Name of the innermost module around this layer whose class name says
            attention (``"h.0.attn"``), or the layer itself for ``nn.MultiheadAttention``;
            ``None`` outside attention.
        branch: Name of the innermost residual branch that contains the layer, or ``None``
            on the main path. A residual branch is the computation whose output is added to
            its own input (``x + f(x)``); it is named by the outermost module whose output
            is the added term (``"h.0.mlp"``), else by the closest module holding all its
            layers. The layers of a projection shortcut (ResNet's ``downsample``) form a
            branch of their own. Branches are parallel to the main path, not in series.
        activation_like: The torch activation class the activation computes (``"GELU"`` for
            ``NewGELUActivation``), which gives its kind and saturation bounds; ``None``
            when no activation was recognised.
        activation_source: How the activation was recognised: ``"class"`` (by its class
            name), ``"probe"`` (by its response to a probe input) or ``"functional"`` (a
            ``torch.nn.functional`` call found by ``torch.fx``); ``None`` when none was.
        out_numel: Elements of the gradients that reached the layer's output in the first
            training step (the whole batch; every call of a module run several times per
            step), or ``None`` when not seen (no activation hooks, traces that predate it).
            ``out_grad_norm`` sums over the same elements, so ``out_grad_norm /
            sqrt(out_numel)`` is the backward signal per element, whose depth profile does
            not depend on how many positions a layer's output has.
    """

    name: str
    type: str
    depth: int
    num_params: int
    shapes: dict[str, list[int]] = field(default_factory=dict)
    activation: str | None = None
    recurrent: bool = False
    # "" = not given: __post_init__ derives it from the class name (role_of), so a layer
    # built by hand (a test, Trace.from_arrays) gets the role a recorded one would.
    role: Role = field(default=cast(Role, ""))
    attention: str | None = None
    branch: str | None = None
    activation_like: str | None = None
    activation_source: str | None = None
    out_numel: int | None = None

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            object.__setattr__(self, "role", role_of(self.type, self.name))
        if self.activation_like is None and self.activation is not None:
            object.__setattr__(self, "activation_like", torch_equivalent(self.activation))

    @property
    def display_name(self) -> str:
        """The module name, ``"(root)"`` for parameters owned by the model itself."""
        return self.name or "(root)"

    @property
    def on_path(self) -> bool:
        """Whether the layer counts as depth in depth comparisons (weights, attention)."""
        return self.role in PATH_ROLES

    @property
    def label(self) -> str:
        """``L<depth> <name>``: how every view names this layer (see :func:`layer_label`)."""
        return layer_label(self.depth, self.name)

    def to_json(self) -> dict[str, Any]:
        # By hand, not dataclasses.asdict: its recursive deep copy cost ~80 us per layer,
        # and the live check writes the layer table at each check.
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["shapes"] = {k: list(v) for k, v in self.shapes.items()}
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LayerInfo:
        """A layer from its ``meta.json`` entry; fields a trace predates get their defaults
        (roles from the class name, ``activation_like`` from the activation table)."""
        name, type_name = str(data["name"]), str(data["type"])
        activation = data.get("activation")
        role = data.get("role")
        if role not in ROLES:
            role = role_of(type_name, name)
        like = data.get("activation_like")
        if like is None and activation is not None:
            like = torch_equivalent(str(activation))
        source = data.get("activation_source")
        if source is None and activation is not None:
            source = "class"
        return cls(
            name=name,
            type=type_name,
            depth=int(data["depth"]),
            num_params=int(data["num_params"]),
            shapes={str(k): [int(d) for d in v] for k, v in data.get("shapes", {}).items()},
            activation=activation,
            recurrent=bool(data.get("recurrent", False)),
            role=role,
            attention=data.get("attention"),
            branch=data.get("branch"),
            activation_like=like,
            activation_source=source,
            out_numel=None if data.get("out_numel") is None else int(data["out_numel"]),
        )
