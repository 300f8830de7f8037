"""A multi-layer perceptron as a plain ``nn.Sequential``, so generic transforms can edit it."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ...remedies.init import init_layer_
from .common import Activation, Init, Norm, Residual, make_activation, make_norm


@dataclass(frozen=True)
class MLPConfig:
    """Shape and initialisation of an :class:`MLP`."""

    # Number of Linear layers, the head included: 20 is deep enough for sigmoid to vanish.
    depth: int = 4
    # Hidden width: 64 keeps a 20-layer net at ~80k parameters, fast on 2 CPU cores.
    width: int = 64
    # The activation after every hidden Linear layer (a module, so hooks and swaps see it).
    activation: Activation = "relu"
    # "default" keeps PyTorch's init (Kaiming-uniform with a=sqrt(5), i.e. Var = 1/(3 fan_in)).
    init: Init = "default"
    # Normalisation between each hidden Linear and its activation (Ioffe & Szegedy, 2015).
    norm: Norm = "none"
    # Pre-activation skip connections around each width->width layer (He et al., 2016).
    residual: bool = False


class MLP(nn.Sequential):
    """``Linear -> [norm] -> act`` blocks, then a Linear head; ``depth`` Linear layers in all.

    Without ``residual`` the layers sit flat in the sequence (``0: Linear, 1: Sigmoid, ...``).
    With it, every hidden width->width layer becomes a pre-activation residual block
    ``x + Linear(act(norm(x)))`` (He et al., 2016, "Identity mappings"): the branch ends in a
    Linear layer, so it adds a zero-mean correction; a branch ending in ReLU would add a
    positive mean at every block and blow up the residual stream of a deep net.

    Example:
        >>> import torch
        >>> net = MLP(MLPConfig(depth=3, width=8), in_features=4, out_features=2)
        >>> net(torch.zeros(5, 4)).shape
        torch.Size([5, 2])
    """

    def __init__(self, config: MLPConfig, in_features: int, out_features: int) -> None:
        if config.depth < 1:
            raise ValueError(f"MLPConfig.depth={config.depth} must be >= 1")
        if config.width < 1:
            raise ValueError(f"MLPConfig.width={config.width} must be >= 1")
        layers: list[nn.Module] = []

        def norm_act() -> list[nn.Module]:
            norm = make_norm(config.norm, config.width)
            return ([norm] if norm is not None else []) + [make_activation(config.activation)]

        if config.depth == 1:
            layers.append(nn.Linear(in_features, out_features))
        elif config.residual:
            layers.append(nn.Linear(in_features, config.width))
            for _ in range(config.depth - 2):
                body = nn.Sequential(*norm_act(), nn.Linear(config.width, config.width))
                layers.append(Residual(body))
            layers.extend([*norm_act(), nn.Linear(config.width, out_features)])
        else:
            fan_in = in_features
            for _ in range(config.depth - 1):
                layers.extend([nn.Linear(fan_in, config.width), *norm_act()])
                fan_in = config.width
            layers.append(nn.Linear(fan_in, out_features))
        super().__init__(*layers)
        self.config = config
        for module in self.modules():
            if isinstance(module, nn.Linear):
                init_layer_(module, config.init)
