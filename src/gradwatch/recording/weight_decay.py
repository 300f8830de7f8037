"""How much each layer's weights the optimizer's weight decay shrinks, per unit of learning rate.

Weight decay shrinks a weight by a known factor every step, whatever the loss does: AdamW's
decoupled decay (``weight_decay`` in ``torch.optim.AdamW``, or in Adam, NAdam and RAdam with
``decoupled_weight_decay=True``) multiplies it by ``1 - lr * wd``; SGD's L2 term adds ``wd *
w`` to the gradient, which momentum ``mu`` carries into a steady shrink of ``lr * wd / (1 -
mu)`` a step. So the shrink decay alone would have caused over a span of steps is
``exp(-sum(lr) * rate)``, ``rate`` the layer's decay per unit of the recorded learning rate:
``diagnosis/rules/collapsing_weights.py`` compares it with the shrink it measured, to say
whether the decay or the updates themselves took the weights down. Adam's, RMSprop's and
Adagrad's L2 term is divided by their running gradient scale: no rate is known there.

The rate of a layer is its largest parameter's group's ``weight_decay``, times that group's
learning rate over the largest group's (the recorder records the largest: layer-wise rates
keep their ratios), read once per flush (one pass over the optimizer's parameter ids).

Example:
    >>> import torch
    >>> from torch import nn
    >>> from gradwatch.recording.layers import LayerSet, find_layers
    >>> model = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))
    >>> opt = torch.optim.AdamW([{"params": model[0].parameters(), "weight_decay": 0.1},
    ...                          {"params": model[1].parameters(), "weight_decay": 0.0}])
    >>> decay_rates(opt, LayerSet(find_layers(model)[0]))
    {'form': 'decoupled', 'per_lr': {'0': 0.1}}
"""

from __future__ import annotations

import math
from typing import Any

import torch

from .layers import LayerSet
from .optimizers import group_rate

#: Optimizers whose ``weight_decay`` is decoupled (a shrink by ``lr * wd``) whatever their
#: flags; Adam, NAdam and RAdam are when ``decoupled_weight_decay`` is set.
_DECOUPLED = ("AdamW",)
_FLAGGED = ("Adam", "NAdam", "RAdam")


def _form(optimizer: Any) -> str | None:
    """``"decoupled"``, ``"sgd_l2"`` or None (no known rate) for ``optimizer``'s decay."""
    name = type(optimizer).__name__
    groups = getattr(optimizer, "param_groups", ())
    if name in _DECOUPLED:
        return "decoupled"
    if name in _FLAGGED and groups and all(g.get("decoupled_weight_decay") for g in groups):
        return "decoupled"
    return "sgd_l2" if isinstance(optimizer, torch.optim.SGD) else None


def _number(value: object) -> float:
    """A group's setting as a float; 0 where it is absent or not a finite number (a
    hand-made group's odd value must not stop a flush)."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, RuntimeError):
        return 0.0
    return number if math.isfinite(number) else 0.0


def decay_rates(optimizer: Any, layers: LayerSet) -> dict[str, Any]:
    """``{"form", "per_lr"}``: the optimizer's form of decay (:func:`_form`) and, by layer
    name, each layer's decay per unit of the recorded (largest) learning rate, for the
    layers it decays; ``per_lr`` is empty where the form is unknown, a rate is a tensor
    on an accelerator (reading it would sync) or nothing decays."""
    form = _form(optimizer)
    groups = list(getattr(optimizer, "param_groups", ()))
    read = [group_rate(g) for g in groups]
    rates = [r for r in read if isinstance(r, float)]
    if form is None or not groups or len(rates) < len(read) or not max(rates) > 0:
        return {"form": form, "per_lr": {}}
    top = max(rates)
    group_of = {id(p): i for i, g in enumerate(groups) for p in g["params"]}
    largest: dict[int, torch.nn.Parameter] = {}
    for param, layer in zip(layers.params, layers.param_owner, strict=True):
        if layer not in largest or param.numel() > largest[layer].numel():
            largest[layer] = param
    per_lr = {}
    for layer, param in largest.items():
        g = group_of.get(id(param))
        if g is None:
            continue
        group = groups[g]
        decay, momentum = _number(group.get("weight_decay")), _number(group.get("momentum"))
        rate = decay * rates[g] / top
        if form == "sgd_l2":
            rate = rate / (1.0 - momentum) if momentum < 1 else 0.0
        if rate > 0 and math.isfinite(rate):
            per_lr[layers.specs[layer].name] = float(f"{rate:.6g}")
    return {"form": form, "per_lr": per_lr}
