"""The layer table: what a "layer" is in a trace, in forward order."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

#: Prefixes wrappers put before every module name: ``torch.compile`` (``_orig_mod.``) and
#: DistributedDataParallel / DataParallel (``module.``). Names shown to people drop them.
WRAPPER_PREFIXES: tuple[str, ...] = ("_orig_mod.", "module.")


def layer_label(depth: int, name: str) -> str:
    """The one name of a layer shown to people: ``L<depth> <module name>``.

    Wrapper prefixes (``_orig_mod.``, ``module.``) are dropped and the root module (name
    ``""``) reads ``(root)``, so the same layer reads the same wrapped or not.

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
    if name in ("_orig_mod", "module"):
        name = ""  # the wrapped model itself
    return f"L{depth} {name or '(root)'}"


@dataclass(frozen=True)
class LayerInfo:
    """One recorded layer: a module that owns trainable parameters.

    Attributes:
        name: The module's name from ``model.named_modules()`` (``""`` for the root).
        type: The module's class name, e.g. ``"Linear"``.
        depth: Position along the forward pass (0 = first used); the depth axis of every
            rule and plot.
        num_params: Number of trainable scalar parameters the module owns directly.
        shapes: Parameter name -> shape, e.g. ``{"weight": [256, 256], "bias": [256]}``.
        activation: Class name of the activation module that follows this layer in the
            forward pass (``"Sigmoid"``, ``"ReLU"`` ...), or ``None`` when unknown.
        recurrent: True for ``nn.RNN``/``nn.LSTM``/``nn.GRU``.
    """

    name: str
    type: str
    depth: int
    num_params: int
    shapes: dict[str, list[int]] = field(default_factory=dict)
    activation: str | None = None
    recurrent: bool = False

    @property
    def label(self) -> str:
        """``L<depth> <name>``: how every view names this layer (see :func:`layer_label`)."""
        return layer_label(self.depth, self.name)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LayerInfo:
        return cls(
            name=str(data["name"]),
            type=str(data["type"]),
            depth=int(data["depth"]),
            num_params=int(data["num_params"]),
            shapes={str(k): [int(d) for d in v] for k, v in data.get("shapes", {}).items()},
            activation=data.get("activation"),
            recurrent=bool(data.get("recurrent", False)),
        )
