"""The layer table: what a "layer" is in a trace, in forward order."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


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
