"""Greedy layer-wise unsupervised pretraining of an MLP stack (Bengio et al. 2007).

Before deep nets could be trained end to end, the gradient reaching the first layers of a
sigmoid MLP was too small to move them: Hinton et al. (2006) and Bengio et al. (2007) trained
one layer at a time instead, each as an autoencoder of the layer below's output, so every
layer starts from weights that already carry information about the input. Fine-tuning
the whole stack with the supervised loss follows (the caller's training loop).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ._blocks import describe_children, segment
from ._common import UnsupportedModelError, copy_model

__all__ = ["Pretrained", "pretrain_layerwise"]


@dataclass
class Pretrained:
    """Result of :func:`pretrain_layerwise`.

    Attributes:
        model: The pretrained copy, ready for supervised fine-tuning (its output layer
            keeps its initial weights).
        layers: Names of the pretrained layers, bottom first.
        losses: Mean reconstruction loss (MSE) per epoch, one list per layer.
    """

    model: nn.Module
    layers: list[str] = field(default_factory=list)
    losses: list[list[float]] = field(default_factory=list)


def _inputs(batch: Any) -> torch.Tensor:
    x = batch[0] if isinstance(batch, (tuple, list)) else batch
    if not isinstance(x, torch.Tensor):
        raise TypeError(
            "expected `data` to yield tensors or (inputs, targets) tuples but got "
            f"{type(batch).__name__}"
        )
    return x


def _span(seq: nn.Sequential, start: int, stop: int) -> nn.Sequential:
    """``seq[start:stop]`` as a plain Sequential sharing the same modules.

    Slicing calls ``type(seq)(...)``, which fails for subclasses with another constructor.
    """
    return nn.Sequential(*list(seq)[start:stop])


def pretrain_layerwise(
    model: nn.Module,
    data: Iterable[Any],
    *,
    epochs: int = 5,
    lr: float = 1e-3,
    noise_std: float = 0.0,
) -> Pretrained:
    """Pretrain each hidden layer of a copy of an ``nn.Sequential`` MLP as an autoencoder.

    For each hidden unit (``Linear`` + its activation [+ norm, dropout]) in turn, bottom
    first, a new ``Linear(out, in)`` decoder is trained with the unit to reconstruct the
    unit's input (the frozen output of the layers below) under MSE, with Adam, for
    ``epochs`` passes over ``data``; the decoder is then thrown away. With
    ``noise_std > 0`` the unit sees Gaussian-corrupted inputs (a denoising autoencoder,
    Vincent et al. 2008). The output layer is left as it was.

    Args:
        model: An ``nn.Sequential`` of Linear layers and element-wise modules (a leading
            ``nn.Flatten`` is fine); it is not modified.
        data: Batches of inputs, or ``(inputs, targets)`` tuples (targets are ignored); a
            list or a DataLoader (re-iterated per epoch and layer), or a one-shot iterator
            (its batches are then kept in memory).
        epochs: Passes over ``data`` per layer.
        lr: Adam learning rate.
        noise_std: Std of the input corruption (0 = plain autoencoder).

    Raises:
        UnsupportedModelError: Not an ``nn.Sequential`` of at least two Linear units.

    Example:
        >>> mlp = nn.Sequential(nn.Linear(4, 8), nn.Sigmoid(), nn.Linear(8, 2))
        >>> res = pretrain_layerwise(mlp, [torch.randn(16, 4)], epochs=2)
        >>> res.layers, len(res.losses[0])
        (['0'], 2)
    """
    if not (isinstance(epochs, int) and epochs >= 1):
        raise ValueError(f"expected `epochs` to be an int >= 1 but got {epochs!r}")
    if not lr > 0:
        raise ValueError(f"expected `lr` > 0 but got {lr!r}")
    if not noise_std >= 0:
        raise ValueError(f"expected `noise_std` >= 0 but got {noise_std!r}")
    if not isinstance(model, nn.Sequential):
        raise UnsupportedModelError(
            f"layer-wise pretraining needs an nn.Sequential MLP but got {type(model).__name__}"
            "; pass its nn.Sequential of Linear layers (e.g. model.net)."
        )
    units = segment(model)
    if len(units) < 2 or not all(isinstance(model[u.start], nn.Linear) for u in units):
        raise UnsupportedModelError(
            f"layer-wise pretraining needs at least two nn.Linear layers in the nn.Sequential"
            f" (found: {describe_children(model)}). Supported: Linear layers with element-wise"
            " modules (activations, norms, dropout) between them."
        )
    # a one-shot iterator would be empty after the first layer: keep its batches
    batches = list(data) if iter(data) is data else data
    new = copy_model(model)
    result = Pretrained(model=new)
    was_training = new.training
    new.train()
    try:
        for u in units[:-1]:
            encoder = _span(new, u.start, u.stop)
            below = _span(new, 0, u.start)
            head = new[u.start]
            assert isinstance(head, nn.Linear)
            decoder = nn.Linear(
                head.out_features,
                head.in_features,
                device=head.weight.device,
                dtype=head.weight.dtype,
            )
            opt = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], lr=lr)
            per_epoch: list[float] = []
            for _ in range(epochs):
                total, count = 0.0, 0
                for batch in batches:
                    with torch.no_grad():
                        h = below(_inputs(batch))
                    noisy = h + noise_std * torch.randn_like(h) if noise_std > 0 else h
                    loss = nn.functional.mse_loss(decoder(encoder(noisy)), h)
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    total += float(loss.detach())
                    count += 1
                if count == 0:
                    raise ValueError("`data` yielded no batch")
                per_epoch.append(total / count)
            result.layers.append(str(list(new._modules)[u.start]))
            result.losses.append(per_epoch)
    finally:
        new.train(was_training)
    return result
