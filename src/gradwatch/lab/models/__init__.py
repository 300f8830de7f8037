"""Lab models: small, readable, configured by dataclasses.

``build_model(config, in_features, out_features)`` picks the class from the config's type.
"""

from __future__ import annotations

from torch import nn

from .cnn import CNN, CNNConfig
from .common import ACTIVATIONS, INITS, NORMS, Residual, make_activation
from .mlp import MLP, MLPConfig
from .recurrent import CELLS, RecurrentConfig, RecurrentNet
from .transformer import TransformerConfig, TransformerEncoder

ModelConfig = MLPConfig | RecurrentConfig | TransformerConfig | CNNConfig

#: model kind (the ``kind`` key of a config's ``[model]`` table) -> its config class.
MODEL_CONFIGS: dict[str, type[ModelConfig]] = {
    "mlp": MLPConfig,
    "recurrent": RecurrentConfig,
    "transformer": TransformerConfig,
    "cnn": CNNConfig,
}


def model_kind(config: ModelConfig) -> str:
    """The ``kind`` name of a model config, e.g. ``"mlp"``."""
    for kind, cls in MODEL_CONFIGS.items():
        if isinstance(config, cls):
            return kind
    raise TypeError(f"not a lab model config: {type(config).__name__}")


def build_model(config: ModelConfig, in_features: int, out_features: int) -> nn.Module:
    """A fresh model for ``config``; ``in_features`` is the channel count for a CNN.

    Example:
        >>> type(build_model(MLPConfig(depth=2, width=4), 3, 1)).__name__
        'MLP'
    """
    if isinstance(config, MLPConfig):
        return MLP(config, in_features, out_features)
    if isinstance(config, RecurrentConfig):
        return RecurrentNet(config, in_features, out_features)
    if isinstance(config, TransformerConfig):
        return TransformerEncoder(config, in_features, out_features)
    if isinstance(config, CNNConfig):
        return CNN(config, in_features, out_features)
    raise TypeError(f"not a lab model config: {type(config).__name__}")


__all__ = [
    "ACTIVATIONS",
    "CELLS",
    "CNN",
    "INITS",
    "MLP",
    "MODEL_CONFIGS",
    "NORMS",
    "CNNConfig",
    "MLPConfig",
    "ModelConfig",
    "RecurrentConfig",
    "RecurrentNet",
    "Residual",
    "TransformerConfig",
    "TransformerEncoder",
    "build_model",
    "make_activation",
    "model_kind",
]
