"""Insert normalisation layers after the linear/convolutional layers of sequential stacks.

BatchNorm (Ioffe & Szegedy 2015) or LayerNorm (Ba et al. 2016) goes between each weight
layer and the activation that follows it, so every activation sees inputs with zero mean
and unit variance whatever the weight scale: the derivative of a sigmoid or tanh stays
away from its flat tails and the gradient keeps its size through depth.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Literal

from torch import nn

from ._blocks import describe_children
from ._common import UnsupportedModelError, activation_types, copy_model

__all__ = ["insert_batchnorm", "insert_layernorm", "insert_norm"]

NormKind = Literal["batchnorm", "layernorm"]


def _norm_for(layer: nn.Module, kind: NormKind) -> nn.Module | None:
    """The norm module matching ``layer`` (same device and dtype), or None if unsupported."""
    if isinstance(layer, nn.Linear):
        n, dev, dt = layer.out_features, layer.weight.device, layer.weight.dtype
        if kind == "batchnorm":
            return nn.BatchNorm1d(n, device=dev, dtype=dt)
        return nn.LayerNorm(n, device=dev, dtype=dt)
    if isinstance(layer, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        c, dev, dt = layer.out_channels, layer.weight.device, layer.weight.dtype
        if kind == "layernorm":
            # LayerNorm over (C, *spatial) of a conv output = GroupNorm with one group
            return nn.GroupNorm(1, c, device=dev, dtype=dt)
        bn: type[nn.Module] = {
            nn.Conv1d: nn.BatchNorm1d,
            nn.Conv2d: nn.BatchNorm2d,
            nn.Conv3d: nn.BatchNorm3d,
        }[type(layer)]
        return bn(c, device=dev, dtype=dt)
    return None


def insert_norm(model: nn.Module, kind: NormKind = "batchnorm") -> nn.Module:
    """A copy of ``model`` with a norm layer after each weight layer that is followed by an
    activation in an ``nn.Sequential`` (nested Sequentials included).

    Linear -> BatchNorm1d or LayerNorm; Conv1d/2d/3d -> BatchNorm1d/2d/3d or GroupNorm(1, C)
    (LayerNorm over channels and space). A layer not followed by an activation (the output
    layer) or already followed by a norm gets none. Weights of the existing layers are
    copied unchanged; each norm adds ``2 * features`` parameters.

    Raises:
        UnsupportedModelError: No weight layer followed by an activation inside an
            ``nn.Sequential``; the message lists the module types found.

    Example:
        >>> m = insert_norm(nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1)))
        >>> [type(c).__name__ for c in m]
        ['Linear', 'BatchNorm1d', 'Tanh', 'Linear']
    """
    if kind not in ("batchnorm", "layernorm"):
        raise ValueError(f"expected `kind` to be 'batchnorm' or 'layernorm' but got {kind!r}")
    new = copy_model(model)
    inserted = 0
    # every Sequential, nested ones included (find_stacks stops at block-shaped ones)
    for seq in [m for m in new.modules() if isinstance(m, nn.Sequential)]:
        children = list(seq.named_children())
        out: OrderedDict[str, nn.Module] = OrderedDict()
        for i, (name, child) in enumerate(children):
            out[name] = child
            nxt = children[i + 1][1] if i + 1 < len(children) else None
            # only before an activation: that excludes the output layer and layers already
            # followed by a norm
            if nxt is None or not isinstance(nxt, activation_types()):
                continue
            norm = _norm_for(child, kind)
            if norm is None:
                continue
            out[_fresh_name(f"{name}_{kind}", children, out)] = norm
            inserted += 1
        seq._modules = out
    if inserted == 0:
        raise UnsupportedModelError(
            f"no place to insert {kind} in {type(model).__name__} (modules: "
            f"{describe_children(model)}). Supported: nn.Linear / nn.Conv1d-3d followed by an "
            "activation module inside an nn.Sequential; models that call layers in a custom "
            "forward need the norm added by hand."
        )
    return new


def _fresh_name(
    base: str, children: list[tuple[str, nn.Module]], out: OrderedDict[str, nn.Module]
) -> str:
    taken = {n for n, _ in children} | set(out)
    name, k = base, 1
    while name in taken:
        name, k = f"{base}{k}", k + 1
    return name


def insert_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with BatchNorm after each Linear/Conv that precedes an activation.

    See :func:`insert_norm`.

    Example:
        >>> m = insert_batchnorm(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1)))
    """
    return insert_norm(model, "batchnorm")


def insert_layernorm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with LayerNorm after each Linear (GroupNorm(1, C) after each Conv)
    that precedes an activation. See :func:`insert_norm`.

    Example:
        >>> m = insert_layernorm(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1)))
    """
    return insert_norm(model, "layernorm")
